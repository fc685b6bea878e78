//! Comparing a candidate policy with the live one, from the decision log: the shadow report (each
//! shadow answer beside the served one), the canary report (the two arms side by side), and
//! `policy replay` (a module run over logged inputs). One [`Comparison`] shape for all three.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::DecisionRole;
use crate::store::decisions::{ArmDecision, Compared};

/// Two prices agree when they are the same to the micro-AITBC (the unit money is kept in).
const PRICE_TOLERANCE: f64 = 1e-6;

/// How a candidate's answers compare with the live module's on the same inputs.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Comparison {
    /// Inputs both answered.
    pub decisions: u64,
    /// Share of them on which both gave the same price (to the micro-AITBC) or verdict.
    pub agreement_rate: Option<f64>,
    /// The candidate's failures (answered by the fallback), by kind: trap, out_of_fuel, deadline...
    pub candidate_failures: BTreeMap<String, u64>,
    /// The live module's own fallbacks on those inputs.
    pub live_fallbacks: u64,
    /// Pricing only: how the prices differ.
    pub prices: Option<PriceDifference>,
    /// Booking timeout and moderation: live verdict → candidate verdict → count (`extend:30` counts
    /// as `extend`).
    pub confusion: Option<BTreeMap<String, BTreeMap<String, u64>>>,
}

/// Candidate price minus live price, per decision, and what it would have made on the bookings
/// that happened (price × booked hours).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct PriceDifference {
    pub mean_difference: f64,
    pub mean_abs_difference: f64,
    pub p95_abs_difference: f64,
    pub max_abs_difference: f64,
    /// Served decisions that became bookings.
    pub booked_decisions: u64,
    pub live_revenue: f64,
    pub candidate_revenue: f64,
    /// candidate_revenue − live_revenue.
    pub revenue_difference: f64,
}

/// Compares `(live, candidate, booked hours)` triples.
pub fn compare<'a>(
    pairs: impl IntoIterator<Item = (&'a Compared, &'a Compared, Option<f64>)>,
) -> Comparison {
    let mut report = Comparison::default();
    let mut agreed = 0u64;
    let mut differences = Vec::new();
    let mut prices = PriceDifference::default();
    let mut confusion: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (live, candidate, booked_hours) in pairs {
        report.decisions += 1;
        if live.fallback {
            report.live_fallbacks += 1;
        }
        if let Some(kind) = &candidate.failure_kind {
            *report.candidate_failures.entry(kind.clone()).or_default() += 1;
        }
        match (live.price, candidate.price) {
            (Some(live_price), Some(candidate_price)) => {
                let difference = candidate_price - live_price;
                if difference.abs() <= PRICE_TOLERANCE {
                    agreed += 1;
                }
                differences.push(difference);
                if let Some(hours) = booked_hours {
                    prices.booked_decisions += 1;
                    prices.live_revenue += live_price * hours;
                    prices.candidate_revenue += candidate_price * hours;
                }
            }
            _ => {
                let word = |c: &Compared| verdict_kind(c.verdict.as_deref());
                if live.verdict == candidate.verdict {
                    agreed += 1;
                }
                *confusion
                    .entry(word(live))
                    .or_default()
                    .entry(word(candidate))
                    .or_default() += 1;
            }
        }
    }
    if report.decisions > 0 {
        report.agreement_rate = Some(agreed as f64 / report.decisions as f64);
    }
    if !differences.is_empty() {
        let n = differences.len() as f64;
        let mut absolute: Vec<f64> = differences.iter().map(|d| d.abs()).collect();
        absolute.sort_by(f64::total_cmp);
        prices.mean_difference = differences.iter().sum::<f64>() / n;
        prices.mean_abs_difference = absolute.iter().sum::<f64>() / n;
        prices.max_abs_difference = absolute.last().copied().unwrap_or_default();
        prices.p95_abs_difference = percentile(&absolute, 0.95);
        prices.revenue_difference = prices.candidate_revenue - prices.live_revenue;
        report.prices = Some(prices);
    }
    if !confusion.is_empty() {
        report.confusion = Some(confusion);
    }
    report
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn verdict_kind(verdict: Option<&str>) -> String {
    let verdict = verdict.unwrap_or("none");
    verdict.split(':').next().unwrap_or(verdict).to_owned()
}

/// One arm of a canary: its decisions as served.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ArmReport {
    /// The module versions that answered in this arm (normally one).
    pub module_sha256: Vec<String>,
    pub decisions: u64,
    pub fallbacks: u64,
    pub failure_rate: Option<f64>,
    pub failures: BTreeMap<String, u64>,
    /// Pricing: the mean and 95th-percentile price, and revenue on the bookings that happened.
    pub mean_price: Option<f64>,
    pub p95_price: Option<f64>,
    pub booked_decisions: u64,
    pub revenue: f64,
    /// Booking timeout and moderation: decisions by verdict.
    pub verdicts: BTreeMap<String, u64>,
}

/// The canary report: the live arm and the candidate's arm over the same period.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ArmsReport {
    pub live: ArmReport,
    pub canary: ArmReport,
}

pub fn arms(decisions: &[ArmDecision]) -> ArmsReport {
    let arm = |role: DecisionRole| {
        let mut report = ArmReport::default();
        let mut prices = Vec::new();
        for d in decisions.iter().filter(|d| d.role == role) {
            report.decisions += 1;
            if let Some(sha) = &d.module_sha256
                && !report.module_sha256.contains(sha)
            {
                report.module_sha256.push(sha.clone());
            }
            if d.decision.fallback {
                report.fallbacks += 1;
            }
            if let Some(kind) = &d.decision.failure_kind {
                *report.failures.entry(kind.clone()).or_default() += 1;
            }
            match d.decision.price {
                Some(price) => {
                    prices.push(price);
                    if let Some(hours) = d.booked_hours {
                        report.booked_decisions += 1;
                        report.revenue += price * hours;
                    }
                }
                None => {
                    *report
                        .verdicts
                        .entry(verdict_kind(d.decision.verdict.as_deref()))
                        .or_default() += 1
                }
            }
        }
        if report.decisions > 0 {
            let failed: u64 = report.failures.values().sum();
            report.failure_rate = Some(failed as f64 / report.decisions as f64);
        }
        if !prices.is_empty() {
            report.mean_price = Some(prices.iter().sum::<f64>() / prices.len() as f64);
            prices.sort_by(f64::total_cmp);
            report.p95_price = Some(percentile(&prices, 0.95));
        }
        report
    };
    ArmsReport {
        live: arm(DecisionRole::Live),
        canary: arm(DecisionRole::Canary),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(p: f64) -> Compared {
        Compared {
            price: Some(p),
            verdict: None,
            fallback: false,
            failure_kind: None,
        }
    }

    fn verdict(v: &str) -> Compared {
        Compared {
            price: None,
            verdict: Some(v.to_owned()),
            fallback: false,
            failure_kind: None,
        }
    }

    #[test]
    fn prices_agree_to_the_micro_and_revenue_counts_booked_hours() {
        let (a, b, c, d) = (price(1.0), price(1.0000001), price(2.0), price(3.0));
        let report = compare([(&a, &b, None), (&c, &d, Some(2.0))]);
        assert_eq!(report.decisions, 2);
        assert_eq!(report.agreement_rate, Some(0.5));
        let prices = report.prices.unwrap();
        assert!((prices.max_abs_difference - 1.0).abs() < 1e-9);
        assert_eq!(prices.booked_decisions, 1);
        assert!((prices.revenue_difference - 2.0).abs() < 1e-9);
    }

    #[test]
    fn verdicts_make_a_confusion_table() {
        let (keep, extend, extend_more) =
            (verdict("keep"), verdict("extend:30"), verdict("extend:60"));
        let report = compare([
            (&keep, &extend, None),
            (&extend, &extend_more, None),
            (&keep, &keep, None),
        ]);
        assert_eq!(report.agreement_rate, Some(1.0 / 3.0));
        let table = report.confusion.unwrap();
        assert_eq!(table["keep"]["extend"], 1);
        assert_eq!(table["keep"]["keep"], 1);
        assert_eq!(table["extend"]["extend"], 1);
    }
}
