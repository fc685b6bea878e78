//! The oracle: the best constant multiplier in hindsight. Every multiplier of the grid (0.50 to 3.00
//! in steps of 0.05, applied to asking prices) is simulated exactly like a policy on every seed; the
//! oracle is the one with the highest mean revenue, and a policy's regret is the oracle's revenue minus
//! its own, seed by seed.

use super::metrics::Metrics;
use super::stats::mean;
use super::strategy::Constant;

/// The grid in hundredths: 50, 55, ..., 300.
pub fn grid() -> Vec<Constant> {
    (50..=300)
        .step_by(5)
        .map(|percent| Constant { percent })
        .collect()
}

/// Every grid point's runs, seed by seed.
#[derive(Debug, Clone, PartialEq)]
pub struct OracleRuns {
    pub grid: Vec<Constant>,
    /// `[grid point][seed]`.
    pub metrics: Vec<Vec<Metrics>>,
}

impl OracleRuns {
    /// The grid point with the highest mean revenue; the lower multiplier wins a tie.
    pub fn best(&self) -> usize {
        let mut best = 0;
        let mut best_revenue = f64::NEG_INFINITY;
        for (i, runs) in self.metrics.iter().enumerate() {
            let revenue = mean(&runs.iter().map(|m| m.revenue).collect::<Vec<_>>());
            if revenue > best_revenue {
                best = i;
                best_revenue = revenue;
            }
        }
        best
    }

    /// The best point's revenue on each seed.
    pub fn revenue_per_seed(&self) -> Vec<f64> {
        self.metrics
            .get(self.best())
            .map(|runs| runs.iter().map(|m| m.revenue).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_runs_from_half_to_three_in_twentieths() {
        let g = grid();
        assert_eq!(g.len(), 51);
        assert_eq!(g[0].multiplier(), 0.5);
        assert_eq!(g[10].multiplier(), 1.0);
        assert_eq!(g[50].multiplier(), 3.0);
    }
}
