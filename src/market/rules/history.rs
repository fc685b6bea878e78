//! Price history: per model and time bucket, the average asking price of its GPUs. Policies see the
//! latest buckets as `recent_prices`; the pricing endpoint shows them as `price_history`.

use std::collections::BTreeMap;

use crate::domain::{ModelSample, Money, PricePoint, Timestamp};

/// The bucket (unix seconds, a multiple of `interval_seconds`) that `now` falls in.
pub fn bucket_of(now: Timestamp, interval_seconds: i64) -> i64 {
    let interval = interval_seconds.max(1);
    now.unix_seconds().div_euclid(interval) * interval
}

/// The samples of `bucket`: per model key, the average asking price of its GPUs.
/// `gpus` yields (model key, model name, asking price).
pub fn samples_for_bucket<'a>(
    gpus: impl IntoIterator<Item = (&'a str, &'a str, Money)>,
    bucket: i64,
) -> Vec<ModelSample> {
    let mut models: BTreeMap<&str, (&str, Vec<Money>)> = BTreeMap::new();
    for (key, model, price) in gpus {
        let entry = models.entry(key).or_insert((model, Vec::new()));
        // The lexically first spelling names the model, whatever order the GPUs came in.
        entry.0 = entry.0.min(model);
        entry.1.push(price);
    }
    models
        .into_iter()
        .map(|(key, (model, prices))| ModelSample {
            model_key: key.to_owned(),
            bucket,
            model: model.to_owned(),
            gpu_count: prices.len() as i64,
            average_price: Money::average(prices),
        })
        .collect()
}

/// Samples of one or more models combined per bucket, weighted by GPU count: the newest `points`
/// buckets, oldest first.
pub fn combine(samples: &[ModelSample], points: usize) -> Vec<PricePoint> {
    let mut buckets: BTreeMap<i64, (i128, i128)> = BTreeMap::new();
    for sample in samples {
        let entry = buckets.entry(sample.bucket).or_default();
        entry.0 += sample.average_price.micros() as i128 * sample.gpu_count as i128;
        entry.1 += sample.gpu_count as i128;
    }
    let mut combined: Vec<PricePoint> = buckets
        .into_iter()
        .rev()
        .take(points)
        .map(|(bucket, (weighted, count))| PricePoint {
            bucket,
            average_price: if count == 0 {
                Money::ZERO
            } else {
                Money::from_micros(((weighted + count / 2) / count) as i64)
            },
        })
        .collect();
    combined.reverse();
    combined
}

/// The history as a policy sees it: AITBC per hour, oldest first.
pub fn recent_prices(points: &[PricePoint]) -> Vec<f64> {
    points.iter().map(|p| p.average_price.as_units()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(micros: i64) -> Money {
        Money::from_micros(micros)
    }

    #[test]
    fn buckets_align_to_the_interval() {
        assert_eq!(bucket_of(Timestamp::from_unix_seconds(1_000), 300), 900);
        assert_eq!(bucket_of(Timestamp::from_unix_seconds(900), 300), 900);
    }

    #[test]
    fn a_bucket_averages_each_model() {
        let gpus = [
            ("rtx4090", "RTX 4090", m(1)),
            ("a100", "A100", m(5)),
            ("rtx4090", "RTX-4090", m(2)),
        ];
        let samples = samples_for_bucket(gpus, 600);
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[1].model_key, "rtx4090");
        assert_eq!(samples[1].model, "RTX 4090");
        assert_eq!(samples[1].average_price, m(2));
        assert_eq!(samples[1].gpu_count, 2);
    }

    #[test]
    fn models_combine_weighted_newest_kept_oldest_first() {
        let sample = |key: &str, bucket, price, count| ModelSample {
            model_key: key.into(),
            bucket,
            model: key.into(),
            average_price: m(price),
            gpu_count: count,
        };
        let samples = [
            sample("a", 0, 100, 1),
            sample("a", 300, 100, 1),
            sample("b", 300, 400, 3),
            sample("a", 600, 50, 1),
        ];
        let points = combine(&samples, 2);
        assert_eq!(
            points,
            vec![
                PricePoint {
                    bucket: 300,
                    average_price: m(325)
                },
                PricePoint {
                    bucket: 600,
                    average_price: m(50)
                },
            ]
        );
    }
}
