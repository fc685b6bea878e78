//! Synthetic demand: `gpu-market simulate generate`, and the traces behind `--seeds N` when the demand
//! is generated (or the bootstrap resamples of a given trace).
//!
//! Arrivals form a Poisson process at `rate` requests/hour modulated by a daily cycle (±50 %, peak at
//! 15:00 UTC, averaging 1 over a day) and one demand surge (×3 for 4 hours, or a sixth of a shorter
//! horizon, starting somewhere in the middle half); it is drawn by thinning a process at the peak rate.
//! Models are drawn by the fleet's mix (GPU counts), durations are log-normal (median 2 h, σ 0.75,
//! within 0.05-48 h) and the most a client pays per hour is log-normal around 1.25 × the model's
//! average asking price (σ 0.3). Every draw comes from one ChaCha8 generator: the same seed gives the
//! same bytes.

use std::fmt::Write as _;
use std::path::Path;

use rand::distr::weighted::WeightedIndex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, LogNormal};

use super::error::SimError;
use super::inputs::{DEMAND_COLUMNS, Fleet, Trace, parse_demand};

const DAILY_AMPLITUDE: f64 = 0.5;
const PEAK_HOUR: f64 = 15.0;
const SURGE_FACTOR: f64 = 3.0;
const SURGE_HOURS: f64 = 4.0;
const DURATION_MEDIAN_HOURS: f64 = 2.0;
const DURATION_SIGMA: f64 = 0.75;
const WILLINGNESS_MEDIAN: f64 = 1.25;
const WILLINGNESS_SIGMA: f64 = 0.3;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DemandSpec {
    pub hours: f64,
    /// Requests per hour before the daily cycle and the surge.
    pub rate: f64,
}

impl DemandSpec {
    pub fn validate(&self) -> Result<(), SimError> {
        if !(self.hours > 0.0 && self.hours <= 24.0 * 366.0) {
            return Err(SimError::usage("--hours must be in (0, 8784]"));
        }
        if !(self.rate > 0.0 && self.rate <= 100_000.0) {
            return Err(SimError::usage(
                "--rate must be in (0, 100000] requests per hour",
            ));
        }
        Ok(())
    }
}

/// The random generator of run `index` for base seed `seed`: independent streams of one key.
pub fn rng_for(seed: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    rng
}

/// A demand trace as CSV text.
pub fn generate_csv(fleet: &Fleet, spec: DemandSpec, rng: &mut ChaCha8Rng) -> String {
    let mut out = DEMAND_COLUMNS.join(",");
    out.push('\n');
    let horizon = spec.hours * 3_600.0;
    let surge_len = (SURGE_HOURS * 3_600.0).min(horizon / 6.0);
    let surge_start = horizon * rng.random_range(0.25..0.75);
    let peak = spec.rate / 3_600.0 * (1.0 + DAILY_AMPLITUDE) * SURGE_FACTOR;
    let intensity = |t: f64| {
        let hour = (t / 3_600.0) % 24.0;
        let daily =
            1.0 + DAILY_AMPLITUDE * (std::f64::consts::TAU * (hour - PEAK_HOUR + 6.0) / 24.0).sin();
        let surge = if (surge_start..surge_start + surge_len).contains(&t) {
            SURGE_FACTOR
        } else {
            1.0
        };
        spec.rate / 3_600.0 * daily * surge
    };
    let weights: Vec<usize> = fleet.models.iter().map(|m| m.gpus.len()).collect();
    // A fleet always has GPUs (checked when read), so the weights are valid.
    let Ok(mix) = WeightedIndex::new(&weights) else {
        return out;
    };
    let (Ok(gaps), Ok(durations), Ok(willingness)) = (
        Exp::new(peak),
        LogNormal::new(DURATION_MEDIAN_HOURS.ln(), DURATION_SIGMA),
        LogNormal::new(WILLINGNESS_MEDIAN.ln(), WILLINGNESS_SIGMA),
    ) else {
        return out;
    };
    let mut t = 0.0;
    loop {
        t += gaps.sample(rng);
        if t >= horizon {
            break;
        }
        if rng.random::<f64>() * peak >= intensity(t) {
            continue;
        }
        let model = &fleet.models[mix.sample(rng)];
        let hours = durations.sample(rng).clamp(0.05, 48.0);
        let max_price = model.average_asking.as_units() * willingness.sample(rng);
        let _ = writeln!(
            out,
            "{},{},{:.2},{:.4}",
            t.floor() as i64,
            csv_field(&model.name),
            hours,
            max_price
        );
    }
    out
}

/// A generated trace, parsed exactly as the same text read from a file would be.
pub fn generate_trace(
    fleet: &Fleet,
    spec: DemandSpec,
    seed: u64,
    index: u64,
) -> Result<Trace, SimError> {
    let text = generate_csv(fleet, spec, &mut rng_for(seed, index));
    parse_demand(Path::new("<generated>"), &text, fleet)
}

/// A bootstrap resample: as many requests as the trace, drawn with replacement, in arrival order.
pub fn resample(trace: &Trace, seed: u64, index: u64) -> Trace {
    let mut rng = rng_for(seed, index);
    let n = trace.requests.len();
    if n == 0 {
        return trace.clone();
    }
    let mut picks: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
    // Requests are in arrival order, so sorting the indices sorts by arrival, ties by position.
    picks.sort_unstable();
    Trace {
        filters: trace.filters.clone(),
        requests: picks.into_iter().map(|i| trace.requests[i]).collect(),
    }
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::inputs::parse_fleet;

    fn fleet() -> Fleet {
        parse_fleet(
            Path::new("f.csv"),
            "model,memory_gb,region,base_price,count\nRTX 4090,24,,1.0,6\nA100,80,,2.5,2\n",
        )
        .unwrap()
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let spec = DemandSpec {
            hours: 48.0,
            rate: 10.0,
        };
        let a = generate_csv(&fleet(), spec, &mut rng_for(7, 0));
        assert_eq!(a, generate_csv(&fleet(), spec, &mut rng_for(7, 0)));
        assert_ne!(a, generate_csv(&fleet(), spec, &mut rng_for(8, 0)));
        assert_ne!(a, generate_csv(&fleet(), spec, &mut rng_for(7, 1)));
        let rows = a.lines().count() - 1;
        // 480 expected before the surge adds some; Poisson noise is ~±22.
        assert!((400..700).contains(&rows), "{rows} requests");
        assert!(parse_demand(Path::new("g.csv"), &a, &fleet()).is_ok());
    }

    #[test]
    fn resamples_keep_size_and_order() {
        let trace = generate_trace(
            &fleet(),
            DemandSpec {
                hours: 24.0,
                rate: 5.0,
            },
            1,
            0,
        )
        .unwrap();
        let again = resample(&trace, 3, 1);
        assert_eq!(again.requests.len(), trace.requests.len());
        assert!(
            again
                .requests
                .windows(2)
                .all(|w| w[0].arrival <= w[1].arrival)
        );
        assert_eq!(again, resample(&trace, 3, 1));
    }
}
