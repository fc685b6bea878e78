//! Small statistics over seeds: means, 95 % confidence intervals (Student's t), percentiles.

use serde::Serialize;

/// A mean with its 95 % confidence interval over `n` runs (low = high = mean when n < 2).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub mean: f64,
    pub low: f64,
    pub high: f64,
    /// Half the interval's width.
    pub half_width: f64,
    pub std_dev: f64,
}

impl Interval {
    pub fn of(values: &[f64]) -> Self {
        let n = values.len();
        let mean = mean(values);
        if n < 2 {
            return Self {
                mean,
                low: mean,
                high: mean,
                half_width: 0.0,
                std_dev: 0.0,
            };
        }
        let std_dev = std_dev(values);
        let half_width = t_975(n - 1) * std_dev / (n as f64).sqrt();
        Self {
            mean,
            low: mean - half_width,
            high: mean + half_width,
            half_width,
            std_dev,
        }
    }
}

pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// Sample standard deviation (n − 1); 0 for fewer than two values.
pub fn std_dev(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let m = mean(values);
    let ss: f64 = values.iter().map(|v| (v - m) * (v - m)).sum();
    (ss / (values.len() - 1) as f64).sqrt()
}

/// The nearest-rank percentile `p` (0-100) of sorted values.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The 97.5 % quantile of Student's t with `df` degrees of freedom (two-sided 95 %).
pub fn t_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => TABLE[df - 1],
        _ => {
            // Cornish-Fisher expansion around the normal quantile; within 1e-3 for df > 30.
            let z: f64 = 1.959_964;
            let d = df as f64;
            z + (z.powi(3) + z) / (4.0 * d)
                + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * d * d)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_of_known_values() {
        let i = Interval::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(i.mean, 2.5);
        let sd = (5.0f64 / 3.0).sqrt();
        assert!((i.half_width - 3.182 * sd / 2.0).abs() < 1e-12);
        assert_eq!(Interval::of(&[7.0]).half_width, 0.0);
    }

    #[test]
    fn t_quantiles_join_the_table() {
        assert!((t_975(31) - 2.040).abs() < 2e-3, "{}", t_975(31));
        assert!((t_975(120) - 1.980).abs() < 1e-3);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<i64> = (1..=20).collect();
        assert_eq!(percentile(&v, 95.0), Some(19));
        assert_eq!(percentile(&v, 50.0), Some(10));
        assert_eq!(percentile::<i64>(&[], 50.0), None);
    }
}
