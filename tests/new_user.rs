//! The installed binary as a new user meets it, outside the source tree: `gpu-market serve` in an
//! empty directory serves on the default policies embedded in the binary, `gpu-market policy init`
//! writes them out, and a start-up error names each cause once.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_gpu-market");

fn shipped(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("policies")
            .join(name),
    )
    .expect("a shipped policy file")
}

/// The binary with none of the caller's `GPU_MARKET_*` settings, run in `dir`.
fn command(dir: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(BIN);
    command.current_dir(dir);
    for (name, _) in std::env::vars() {
        if name.starts_with("GPU_MARKET_") {
            command.env_remove(name);
        }
    }
    command.env_remove("RUST_LOG");
    command
}

fn run(dir: &Path, args: &[&str]) -> Output {
    command(dir).args(args).output().expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().unwrap().port()
}

/// Stops the child on every path out of the test.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn serve_in_an_empty_directory_runs_on_the_embedded_default_policies() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("serve.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = Child(
        command(dir.path())
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("gpu-market serve starts"),
    );
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    loop {
        if let Ok(response) = client.get(format!("{base}/health")).send().await
            && response.status().is_success()
        {
            break;
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!(
                "serve exited with {status}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "serve did not answer: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Local mode: the admin view is open to loopback callers.
    let slots: serde_json::Value = client
        .get(format!("{base}/v1/admin/policies"))
        .header("X-Api-Key", "")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let served: Vec<(String, String)> = slots
        .as_array()
        .expect("a list of slots")
        .iter()
        .map(|s| {
            (
                s["slot"].as_str().unwrap_or_default().to_owned(),
                s["policy"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for (slot, module) in [
        ("pricing", "pricing-demand.wasm@"),
        ("booking-timeout", "booking-timeout-grace.wasm@"),
        ("review-moderation", "review-moderation-basic.wasm@"),
    ] {
        assert!(
            served
                .iter()
                .any(|(s, p)| s == slot && p.starts_with(module)),
            "{slot} should serve {module}: {slots}"
        );
    }
    assert!(
        slots
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["last_error"].is_null()),
        "{slots}"
    );

    // The default database was created in the working directory, and it books through the policy.
    let gpu: serde_json::Value = client
        .post(format!("{base}/v1/marketplace/gpu/register"))
        .header("X-Api-Key", "")
        .json(&serde_json::json!({ "gpu": { "name": "RTX 4090", "price_per_hour": 0.5 } }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let gpu_id = gpu["gpu_id"].as_str().expect("registered");
    let booking: serde_json::Value = client
        .post(format!("{base}/v1/marketplace/gpu/{gpu_id}/book"))
        .header("X-Api-Key", "")
        .json(&serde_json::json!({ "duration_hours": 1.0 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        booking["pricing"]["policy"]
            .as_str()
            .is_some_and(|p| p.starts_with("pricing-demand.wasm@")),
        "{booking}"
    );
    assert!(dir.path().join("data").join("gpu-market.db").exists());
    // Nothing was written where the policies were expected; the log says what is served instead.
    assert!(!dir.path().join("policies").exists());
    drop(child);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("embedded") && log.contains("gpu-market policy init policies"),
        "{log}"
    );
}

#[test]
fn policy_init_writes_the_defaults_and_overwrites_only_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("my-policies");
    let first = run(dir.path(), &["policy", "init", "my-policies"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    for name in [
        "policies.toml",
        "pricing-demand.wasm",
        "pricing-scarcity.wasm",
        "booking-timeout-grace.wasm",
        "review-moderation-basic.wasm",
    ] {
        assert_eq!(
            std::fs::read(target.join(name)).unwrap(),
            shipped(name),
            "{name}"
        );
    }

    // An edited file is kept: without --force nothing is written and the exit code says so.
    std::fs::write(target.join("policies.toml"), "# mine\n").unwrap();
    std::fs::remove_file(target.join("pricing-scarcity.wasm")).unwrap();
    let again = run(dir.path(), &["policy", "init", "my-policies"]);
    assert!(!again.status.success());
    let stderr = text(&again.stderr);
    assert!(
        stderr.contains("already exists") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(target.join("policies.toml")).unwrap(),
        "# mine\n"
    );
    assert!(!target.join("pricing-scarcity.wasm").exists());

    let forced = run(dir.path(), &["policy", "init", "my-policies", "--force"]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    assert_eq!(
        std::fs::read(target.join("policies.toml")).unwrap(),
        shipped("policies.toml")
    );
    assert!(target.join("pricing-scarcity.wasm").exists());

    // What init wrote is what `policy check` accepts.
    let check = run(
        dir.path(),
        &[
            "policy",
            "check",
            "my-policies/pricing-demand.wasm",
            "--slot",
            "pricing",
            "--policies",
            "my-policies",
        ],
    );
    assert!(check.status.success(), "{}", text(&check.stdout));
}

#[test]
fn a_start_up_error_names_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the database file should be: SQLite cannot open it.
    let url = format!("sqlite://{}?mode=rwc", dir.path().display());
    let output = command(dir.path())
        .args(["migrate", "--database-url", &url])
        .env("GPU_MARKET_DATABASE__CONNECT_TIMEOUT_MS", "200")
        .output()
        .expect("the binary runs");
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    let cause = "unable to open database file";
    assert_eq!(stderr.matches(cause).count(), 1, "{stderr}");
    assert!(stderr.contains("cannot open database"), "{stderr}");

    // A policies directory whose policies.toml is not TOML.
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("policies.toml"), "[pricing\n").unwrap();
    let db = format!("sqlite://{}/market.db", dir.path().display());
    let output = run(
        dir.path(),
        &["serve", "--bind", "127.0.0.1:0", "--database-url", &db],
    );
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("gpu-market: cannot load policies from"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("policies.toml").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("unclosed table").count(), 1, "{stderr}");
}
