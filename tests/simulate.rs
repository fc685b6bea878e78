//! The backtesting lab on traces small enough to check by hand, and its promises: the oracle never
//! loses to the built-in price, the same inputs give the same report.json byte for byte, a bad row is
//! named by file, line and column, a failing policy is named before anything runs, a trapping one is
//! counted and the run goes on.

use std::path::{Path, PathBuf};

use gpu_market::sim::engine::{MarketSettings, RunOutput, simulate};
use gpu_market::sim::inputs::{Fleet, Trace, parse_demand, parse_fleet};
use gpu_market::sim::metrics::Metrics;
use gpu_market::sim::strategy::{Builtin, PricingFactory};
use gpu_market::sim::wasm::PricingModule;
use gpu_market::sim::{SimError, cli::Args, run_study};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Two GPUs: A at 1.00/h and B at 2.00/h.
const FLEET: &str = "model,memory_gb,region,base_price,count\nA,24,,1.00,1\nB,80,,2.00,1\n";

/// Five requests over two hours; see each test for the hand computation.
const TRACE: &str = "arrival_seconds,model,duration_hours,max_price
0,A,2,1.5
600,A,1,3
1200,*,1,1.5
3600,*,1,2.5
7200,*,0.5,5
";

fn tiny() -> (Fleet, Trace) {
    let fleet = parse_fleet(Path::new("fleet.csv"), FLEET).unwrap();
    let trace = parse_demand(Path::new("demand.csv"), TRACE, &fleet).unwrap();
    (fleet, trace)
}

fn settings(trace: &Trace) -> MarketSettings {
    MarketSettings {
        // Monday 2026-01-05 00:00 UTC.
        start_unix: 1_767_571_200,
        horizon_hours: trace.covered_hours(),
        history_interval_secs: 300,
        max_extensions: 3,
    }
}

fn run(factory: &dyn PricingFactory) -> (RunOutput, Metrics) {
    let (fleet, trace) = tiny();
    let mut pricing = factory.build().unwrap();
    let output = simulate(
        &fleet,
        &trace,
        settings(&trace),
        pricing.as_mut(),
        &mut Builtin,
    );
    let metrics = Metrics::of(&output);
    (output, metrics)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn builtin_on_a_tiny_trace_matches_the_hand_computation() {
    // Asking prices. 0 s: A free, 1.00 ≤ 1.5 → booked 2 h (2.00; surplus 0.5 × 2 = 1.00).
    // 600 s: A busy, nothing else matches → lost (3 × 1 = 3.00).
    // 1200 s: only B free, 2.00 > 1.5 → lost (1.5 × 1 = 1.50).
    // 3600 s: B free, 2.00 ≤ 2.5 → booked 1 h (2.00; surplus 0.50), ends at 7200 s.
    // 7200 s: both bookings end first; A is cheapest → booked 0.5 h (0.50; surplus 4 × 0.5 = 2.00).
    let (output, m) = run(&Builtin);
    assert_eq!(output.arrived, 5);
    assert_eq!(output.served, 3);
    assert!(close(m.revenue, 4.5), "{m:?}");
    assert!(close(m.fill_rate, 0.6));
    assert!(close(m.lost_value, 4.5));
    assert!(close(m.consumer_surplus, 3.5));
    // Horizon: 3 h × 2 GPUs = 6 GPU-h; booked A 2.5 h + B 1 h.
    assert_eq!(output.horizon_hours, 3);
    assert!(close(m.utilization, 3.5 / 6.0), "{}", m.utilization);
    assert!(close(m.revenue_per_gpu_hour, 4.5 / 6.0));
    assert!(close(m.mean_price, 4.0 / 3.0));
    assert!(close(m.median_price, 1.0));
    assert!(close(m.p95_price, 2.0));
    // The built-in price ranks GPUs as their asking prices do: one quote per arrival with a free GPU.
    assert_eq!(m.policy_calls, 4.0);
    assert_eq!(m.fallbacks, 0.0);
    // Three bookings, each ended by the sweeper after consulting the timeout policy once.
    assert_eq!(m.timeout_calls, 3.0);
    let hours: Vec<u32> = output.hours.iter().map(|h| h.arrivals).collect();
    assert_eq!(hours, vec![3, 1, 1]);
}

#[test]
fn a_flat_wasm_policy_on_the_tiny_trace_matches_the_hand_computation() {
    // pricing-flat quotes asking × 1.5: A 1.50, B 3.00.
    // 0 s: A 1.50 ≤ 1.5 → booked 2 h (3.00; surplus 0). 600 s: A busy → lost (3.00).
    // 1200 s: B 3.00 > 1.5 → lost (1.50). 3600 s: B 3.00 > 2.5 → lost (2.50).
    // 7200 s: A 1.50, B 3.00 → A booked 0.5 h (0.75; surplus 3.5 × 0.5 = 1.75).
    let module = PricingModule::load(&repo("tests/fixtures/pricing-flat.wasm"), None).unwrap();
    assert!(module.stateful().is_none());
    let (output, m) = run(module.with_settings(&[]).unwrap().as_ref());
    assert_eq!(output.served, 2);
    assert!(close(m.revenue, 3.75), "{m:?}");
    assert!(close(m.fill_rate, 0.4));
    assert!(close(m.lost_value, 7.0));
    assert!(close(m.consumer_surplus, 1.75));
    assert!(close(m.utilization, 2.5 / 6.0));
    assert!(close(m.mean_price, 1.5));
    // Every free matching GPU is quoted: 1 + 0 + 1 + 1 + 2.
    assert_eq!(m.policy_calls, 5.0);
    assert_eq!(m.fallbacks, 0.0);
    assert!(m.fuel_mean > 0.0 && m.fuel_max >= m.fuel_mean);
}

#[test]
fn a_policy_that_traps_mid_run_is_counted_and_the_run_goes_on() {
    // The panic fixture answers the asking price, but traps for the GPU id "gpu_hostile".
    let (mut fleet, _) = tiny();
    fleet.gpus[1].facts.gpu_id = "gpu_hostile".into();
    let trace = parse_demand(Path::new("demand.csv"), TRACE, &fleet).unwrap();
    let module = PricingModule::load(&repo("tests/fixtures/panic.wasm"), None).unwrap();
    let mut pricing = module.with_settings(&[]).unwrap().build().unwrap();
    let output = simulate(
        &fleet,
        &trace,
        settings(&trace),
        pricing.as_mut(),
        &mut Builtin,
    );
    let m = Metrics::of(&output);
    // The fallback is the asking price, so the market behaves as with the built-in price.
    assert_eq!(output.arrived, 5);
    assert!(close(m.revenue, 4.5), "{m:?}");
    assert!(m.fallbacks >= 2.0, "{m:?}");
}

#[test]
fn a_module_that_keeps_state_is_flagged_and_run_as_the_server_runs_it() {
    // The fixture's multiplier creeps up with every call on one instance; on a fresh instance per
    // decision (the server's way) it always answers the asking price.
    let module = PricingModule::load(&repo("tests/fixtures/stateful.wasm"), None).unwrap();
    assert!(module.stateful().is_some());
    let (_, m) = run(module.with_settings(&[]).unwrap().as_ref());
    assert!(close(m.revenue, 4.5), "{m:?}");
    assert!(close(m.mean_price, 4.0 / 3.0));
}

fn study(extra: &[&str], out: &Path) -> Result<(), SimError> {
    let mut words = vec![
        "simulate".to_owned(),
        "--fleet".into(),
        repo("examples/fleet.csv").display().to_string(),
        "--quiet".into(),
        "--out".into(),
        out.display().to_string(),
    ];
    words.extend(extra.iter().map(|s| s.to_string()));
    let args = Args::try_parse_from(words).unwrap();
    let config = repo("policies/policies.toml");
    run_study(&args.run, Some(&config))
}

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

#[test]
fn same_inputs_give_a_byte_identical_report_and_the_oracle_never_loses_to_builtin() {
    let dir = tempfile::tempdir().unwrap();
    let demand = repo("policies/pricing-demand.wasm").display().to_string();
    let args = [
        "--hours", "36", "--rate", "5", "--seeds", "3", "--seed", "42", "--policy", "builtin",
        "--policy", &demand,
    ];
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    study(&args, &a).unwrap();
    study(&[&args[..], &["--threads", "1"]].concat(), &b).unwrap();
    let text = std::fs::read(a.join("report.json")).unwrap();
    assert_eq!(text, std::fs::read(b.join("report.json")).unwrap());
    for file in [
        "report.md",
        "report.html",
        "timeseries.csv",
        "timing.json",
        "price.svg",
    ] {
        assert!(a.join(file).is_file(), "{file} missing");
    }

    let r = report(&a);
    let builtin = &r["policies"][0];
    assert_eq!(builtin["name"], "builtin");
    let builtin_revenue = builtin["metrics"]["revenue"].as_f64().unwrap();
    let oracle_revenue = r["oracle"]["revenue"].as_f64().unwrap();
    assert!(
        oracle_revenue >= builtin_revenue,
        "{oracle_revenue} < {builtin_revenue}"
    );
    assert!(builtin["regret"]["mean"].as_f64().unwrap() >= 0.0);
    let m = r["oracle"]["multiplier"].as_f64().unwrap();
    assert!((0.5..=3.0).contains(&m));
    // With three seeds: intervals, and the paired comparison in words.
    assert!(builtin["ci95"]["revenue"]["half_width"].is_number());
    let summary = r["comparisons"][0]["summary"].as_str().unwrap();
    assert!(summary.starts_with("pricing-demand earns "), "{summary}");
    assert!(summary.contains("than builtin over 3 seeds"), "{summary}");
}

#[test]
fn a_sweep_makes_one_row_per_value() {
    let dir = tempfile::tempdir().unwrap();
    let demand = repo("policies/pricing-demand.wasm").display().to_string();
    let trace = repo("examples/demand.csv").display().to_string();
    let args = [
        "--demand",
        &trace,
        "--policy",
        &demand,
        "--set",
        "max_multiplier=1.2,2.5",
        "--no-oracle",
    ];
    study(&args, dir.path()).unwrap();
    let r = report(dir.path());
    let names: Vec<&str> = r["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "pricing-demand [max_multiplier=1.2]",
            "pricing-demand [max_multiplier=2.5]"
        ]
    );
    assert_eq!(r["policies"][0]["settings"]["max_multiplier"], "1.2");
    assert!(r["oracle"].is_null());
}

#[test]
fn bad_rows_are_named_by_file_line_and_column_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("demand.csv");
    std::fs::write(
        &trace,
        "arrival_seconds,model,duration_hours,max_price\n0,RTX 4090,1,2\n10,RTX 4090,-1,2\n20,A100,1\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let err = study(
        &[
            "--demand",
            &trace.display().to_string(),
            "--policy",
            "builtin",
        ],
        &out,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("demand.csv: line 3, column duration_hours"),
        "{err}"
    );
    assert!(err.contains("demand.csv: line 4: has 3 fields"), "{err}");
    assert!(!out.exists(), "nothing may run after a bad row");
}

#[test]
fn a_policy_failing_its_checks_is_named_with_the_reason_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let bad = repo("tests/fixtures/wasi-import.wasm")
        .display()
        .to_string();
    let trace = repo("examples/demand.csv").display().to_string();
    let err = study(
        &["--demand", &trace, "--policy", "builtin", "--policy", &bad],
        &out,
    )
    .unwrap_err();
    assert!(matches!(err, SimError::Policy { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("wasi-import.wasm"), "{text}");
    assert!(
        text.contains("imports wasi:"),
        "the reason is named: {text}"
    );
    assert!(!out.exists());
}
