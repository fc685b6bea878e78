//! The figures of one run, derived from its [`RunOutput`]. All of them are deterministic; timings live
//! apart (see `timing.json`).

use serde::Serialize;

use super::engine::RunOutput;
use super::stats::{percentile, std_dev};

/// Declares [`Metrics`] with its fields in report order, and their names for tables and intervals.
macro_rules! metrics {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// The figures of one run (or their means over seeds). Money in AITBC.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
        pub struct Metrics {
            $( $(#[$doc])* pub $name: f64, )*
        }

        impl Metrics {
            pub const NAMES: &'static [&'static str] = &[$(stringify!($name)),*];

            pub fn values(&self) -> Vec<f64> {
                vec![$(self.$name),*]
            }

            pub fn from_values(values: &[f64]) -> Self {
                let mut it = values.iter().copied();
                Self { $($name: it.next().unwrap_or(0.0),)* }
            }
        }
    };
}

metrics! {
    /// Σ charged: quoted price per hour × booked hours, extensions included.
    revenue,
    /// Revenue / (GPUs × horizon hours).
    revenue_per_gpu_hour,
    /// Booked GPU-hours / available GPU-hours within the horizon.
    utilization,
    /// Served / arrived.
    fill_rate,
    arrived,
    served,
    lost_requests,
    /// Σ max_price × duration of the lost requests.
    lost_value,
    /// Σ (max_price − price) × duration of the served requests.
    consumer_surplus,
    /// Price per hour of the bookings: mean, median, 95th percentile.
    mean_price,
    median_price,
    p95_price,
    /// Standard deviation of the hour-to-hour change of the fleet's average current price.
    price_volatility,
    /// Pricing decisions asked for, and how many came from the fallback.
    policy_calls,
    fallbacks,
    /// Fuel per pricing decision (WebAssembly only; 0 for native strategies).
    fuel_mean,
    fuel_max,
    /// Booking-timeout decisions, their fallbacks, and extensions or grace periods granted.
    timeout_calls,
    timeout_fallbacks,
    extensions,
}

impl Metrics {
    pub fn of(run: &RunOutput) -> Self {
        let mut prices: Vec<f64> = run.booked_prices.iter().map(|p| p.as_units()).collect();
        let mean_price = super::stats::mean(&prices);
        prices.sort_by(f64::total_cmp);
        let gpu_hours = f64::from(run.gpus) * f64::from(run.horizon_hours);
        let changes: Vec<f64> = run
            .hours
            .windows(2)
            .map(|w| w[1].price - w[0].price)
            .collect();
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        let revenue = run.revenue.as_units();
        Self {
            revenue,
            revenue_per_gpu_hour: ratio(revenue, gpu_hours),
            utilization: ratio(run.booked_micros as f64 / 3.6e9, gpu_hours),
            fill_rate: ratio(run.served as f64, run.arrived as f64),
            arrived: run.arrived as f64,
            served: run.served as f64,
            lost_requests: (run.arrived - run.served) as f64,
            lost_value: run.lost_value.as_units(),
            consumer_surplus: run.consumer_surplus.as_units(),
            mean_price,
            median_price: percentile(&prices, 50.0).unwrap_or(0.0),
            p95_price: percentile(&prices, 95.0).unwrap_or(0.0),
            price_volatility: std_dev(&changes),
            policy_calls: run.pricing_calls as f64,
            fallbacks: run.pricing_fallbacks as f64,
            fuel_mean: ratio(run.fuel_total as f64, run.pricing_calls as f64),
            fuel_max: run.fuel_max as f64,
            timeout_calls: run.timeout_calls as f64,
            timeout_fallbacks: run.timeout_fallbacks as f64,
            extensions: run.extensions as f64,
        }
    }
}
