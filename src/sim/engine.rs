//! One simulated run: a demand trace replayed against one pricing strategy on a simulated clock.
//!
//! At each arrival the request books the free matching GPU with the lowest quote (ties: the lower GPU
//! id), if that quote is within its `max_price`; otherwise it is lost. Quotes see the market facts the
//! server computes (same functions) from the simulated state. A booking ends at the first whole second
//! at or after its end, as the sweeper would see it: the booking-timeout strategy is consulted and its
//! answer applied by the sweeper's rule (complete, extend, grace). A GPU whose booking ends at `t` is
//! free for a request arriving at `t`. No draw is random here: the same trace gives the same run.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use crate::domain::{
    Booking, BookingId, BookingStatus, ModelSample, Money, OrderId, PricedBy, PrincipalId,
    StatusCounts, Timestamp,
};
use crate::market::rules::facts::{RECENT_PRICE_POINTS, booking_rate_since, market_facts};
use crate::market::rules::history::{bucket_of, combine, recent_prices, samples_for_bucket};
use crate::market::rules::pricing::{accept_quote, booking_total, pricing_request};
use crate::market::rules::sweep::{SweepOutcome, in_grace, sweep_outcome, timeout_request};
use crate::policy::{MarketFacts, PriceState, PricingRequest};

use super::inputs::{Fleet, Request, Trace};
use super::strategy::{Priced, PricingStrategy, TimeoutStrategy};

const MICROS_PER_SECOND: i64 = 1_000_000;
const HOUR: i64 = 3_600 * MICROS_PER_SECOND;

/// The market settings a run shares with the server's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarketSettings {
    /// The simulated clock at the trace's second 0 (unix seconds): sets time of day and weekday.
    pub start_unix: i64,
    /// Hours over which utilization and the time series are measured.
    pub horizon_hours: u32,
    /// `pricing.history_interval_seconds`: spacing of the recent-price points.
    pub history_interval_secs: i64,
    /// `booking.max_extensions`.
    pub max_extensions: u32,
}

/// One simulated hour.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HourPoint {
    /// Average current price over the fleet at the end of the hour (each GPU's last quote; its asking
    /// price before its first), AITBC/h.
    pub price: f64,
    /// The same average of the current multipliers.
    pub multiplier: f64,
    /// Booked GPU-time / fleet GPU-time within the hour.
    pub utilization: f64,
    /// Bookings and extensions made within the hour.
    pub revenue: Money,
    pub arrivals: u32,
    pub served: u32,
}

/// What a run produced; everything here is deterministic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunOutput {
    pub arrived: u64,
    pub served: u64,
    pub revenue: Money,
    pub lost_value: Money,
    pub consumer_surplus: Money,
    /// Booked GPU-microseconds within the horizon.
    pub booked_micros: i128,
    pub gpus: u32,
    pub horizon_hours: u32,
    /// Price per hour of every booking, in booking order.
    pub booked_prices: Vec<Money>,
    pub hours: Vec<HourPoint>,
    pub pricing_calls: u64,
    pub pricing_fallbacks: u64,
    pub fuel_total: u128,
    pub fuel_max: u64,
    pub timeout_calls: u64,
    pub timeout_fallbacks: u64,
    pub extensions: u64,
}

struct Live {
    booking: Booking,
    model: usize,
    seq: u64,
}

struct Run<'a> {
    fleet: &'a Fleet,
    trace: &'a Trace,
    settings: MarketSettings,
    pricing: &'a mut dyn PricingStrategy,
    timeout: &'a mut dyn TimeoutStrategy,
    start: i64,
    active: Vec<Option<Live>>,
    booked: Vec<u32>,
    recent_starts: Vec<VecDeque<i64>>,
    current_price: Vec<Money>,
    current_multiplier: Vec<f64>,
    /// Per GPU, the pricing guardrails' state after its last quote. The simulation remembers every
    /// quote, as the runtime's memory did before the server kept booked quotes only (issue 12); the
    /// figures of earlier reports stay comparable.
    price_state: Vec<Option<PriceState>>,
    /// Wake-ups of the sweeper: (time, GPU, booking sequence number).
    sweeps: BinaryHeap<Reverse<(i64, u32, u64)>>,
    occupied: Vec<i64>,
    next_hour: usize,
    next_seq: u64,
    /// Per model, the price-history samples recorded so far (the newest `RECENT_PRICE_POINTS`).
    history: Vec<VecDeque<ModelSample>>,
    /// The bucket the history was last recorded for, and the recent prices per model it gives.
    history_bucket: Option<i64>,
    recent: Vec<Vec<f64>>,
    // Buffers reused between arrivals.
    facts: Vec<Option<MarketFacts>>,
    requests: Vec<PricingRequest>,
    candidates: Vec<u32>,
    answers: Vec<Priced>,
    out: RunOutput,
}

/// Replays `trace` on `fleet` with the given strategies.
pub fn simulate(
    fleet: &Fleet,
    trace: &Trace,
    settings: MarketSettings,
    pricing: &mut dyn PricingStrategy,
    timeout: &mut dyn TimeoutStrategy,
) -> RunOutput {
    let models = fleet.models.len();
    let hours = settings.horizon_hours as usize;
    let mut run = Run {
        fleet,
        trace,
        settings,
        pricing,
        timeout,
        start: settings.start_unix.saturating_mul(MICROS_PER_SECOND),
        active: (0..fleet.gpus.len()).map(|_| None).collect(),
        booked: vec![0; models],
        recent_starts: vec![VecDeque::new(); models],
        current_price: fleet.gpus.iter().map(|g| g.asking).collect(),
        current_multiplier: vec![1.0; fleet.gpus.len()],
        price_state: vec![None; fleet.gpus.len()],
        sweeps: BinaryHeap::new(),
        occupied: vec![0; hours],
        next_hour: 0,
        next_seq: 0,
        history: vec![VecDeque::new(); models],
        history_bucket: None,
        recent: vec![Vec::new(); models],
        facts: vec![None; models],
        requests: Vec::new(),
        candidates: Vec::new(),
        answers: Vec::new(),
        out: RunOutput {
            gpus: fleet.gpus.len() as u32,
            horizon_hours: settings.horizon_hours,
            hours: vec![HourPoint::default(); hours],
            ..RunOutput::default()
        },
    };
    for request in &trace.requests {
        let now = run.start + request.arrival;
        run.sweep_until(now);
        run.close_hours_until(now);
        run.arrive(request, now);
    }
    run.sweep_until(i64::MAX);
    run.close_hours_until(i64::MAX);
    run.finish()
}

fn ceil_to_second(t: i64) -> i64 {
    t.div_euclid(MICROS_PER_SECOND) * MICROS_PER_SECOND
        + if t.rem_euclid(MICROS_PER_SECOND) == 0 {
            0
        } else {
            MICROS_PER_SECOND
        }
}

impl Run<'_> {
    fn hour_of(&self, t: i64) -> Option<usize> {
        let h = (t - self.start).div_euclid(HOUR);
        (0..self.out.hours.len() as i64)
            .contains(&h)
            .then_some(h as usize)
    }

    /// Records the price index of every hour that ended by `now`.
    fn close_hours_until(&mut self, now: i64) {
        let n = self.current_price.len().max(1);
        while self.next_hour < self.out.hours.len()
            && self.start + (self.next_hour as i64 + 1) * HOUR <= now
        {
            let sum: i128 = self
                .current_price
                .iter()
                .map(|p| i128::from(p.micros()))
                .sum();
            let point = &mut self.out.hours[self.next_hour];
            point.price = sum as f64 / n as f64 / 1e6;
            point.multiplier = self.current_multiplier.iter().sum::<f64>() / n as f64;
            self.next_hour += 1;
        }
    }

    fn sweep_until(&mut self, now: i64) {
        while let Some(&Reverse((at, gpu, seq))) = self.sweeps.peek() {
            if at > now {
                break;
            }
            self.sweeps.pop();
            let current = self.active[gpu as usize]
                .as_ref()
                .is_some_and(|live| live.seq == seq);
            if current {
                self.sweep(gpu as usize, at);
            }
        }
    }

    /// The sweeper's visit to the booking on `gpu` at `now`.
    fn sweep(&mut self, gpu: usize, now: i64) {
        let Some(live) = self.active[gpu].as_mut() else {
            return;
        };
        let now = Timestamp::from_micros(now);
        if in_grace(&live.booking, now) {
            return;
        }
        // The GPU is alive: it heartbeats until its booking ends.
        let request = timeout_request(&live.booking, Some(now), now);
        let (decision, _fuel) = self.timeout.decide(&request);
        self.out.timeout_calls += 1;
        if decision.source.fallback {
            self.out.timeout_fallbacks += 1;
        }
        let seq = live.seq;
        match sweep_outcome(&live.booking, &decision, now, self.settings.max_extensions) {
            SweepOutcome::Keep => {
                // The sweeper looks again on its next tick.
                let next = ceil_to_second(live.booking.end_at.micros())
                    .max(now.micros() + MICROS_PER_SECOND);
                self.sweeps.push(Reverse((next, gpu as u32, seq)));
            }
            SweepOutcome::End { settlement, .. } => {
                self.out.revenue = self.out.revenue.saturating_add(settlement.charged);
                self.free(gpu, now.micros());
            }
            SweepOutcome::Extend {
                new_end, new_total, ..
            } => {
                let added = new_total.saturating_sub(live.booking.total);
                live.booking.end_at = new_end;
                live.booking.total = new_total;
                live.booking.extensions += 1;
                self.out.extensions += 1;
                self.sweeps
                    .push(Reverse((ceil_to_second(new_end.micros()), gpu as u32, seq)));
                if let Some(h) = self.hour_of(now.micros()) {
                    let revenue = &mut self.out.hours[h].revenue;
                    *revenue = revenue.saturating_add(added);
                }
            }
            SweepOutcome::Grace { until, .. } => {
                live.booking.grace_until = Some(until);
                live.booking.extensions += 1;
                self.out.extensions += 1;
                self.sweeps
                    .push(Reverse((ceil_to_second(until.micros()), gpu as u32, seq)));
            }
        }
    }

    fn free(&mut self, gpu: usize, now: i64) {
        let Some(live) = self.active[gpu].take() else {
            return;
        };
        self.booked[live.model] -= 1;
        // Spread the occupied time over the hours of the horizon it covers.
        let mut t = live.booking.start_at.micros();
        while t < now {
            let Some(h) = self.hour_of(t) else {
                break;
            };
            let hour_end = self.start + (h as i64 + 1) * HOUR;
            let until = hour_end.min(now);
            self.occupied[h] += until - t;
            t = until;
        }
    }

    /// Records the price history up to `now` as the server's timer does: one sample per model and
    /// bucket, from the first bucket of the run on.
    fn record_history(&mut self, now: Timestamp) {
        let interval = self.settings.history_interval_secs;
        let current = bucket_of(now, interval);
        // Asking prices do not change during a run, so every bucket's samples are alike: once
        // RECENT_PRICE_POINTS of them are recorded, the recent prices stay as they are.
        let full = self.history.iter().all(|h| h.len() >= RECENT_PRICE_POINTS);
        let first = match self.history_bucket {
            Some(last) if last >= current => return,
            Some(_) if full => {
                self.history_bucket = Some(current);
                return;
            }
            // Only the newest points are ever seen: skip buckets that would fall out anyway.
            Some(last) => (last + interval).max(current - interval * RECENT_PRICE_POINTS as i64),
            None => bucket_of(
                Timestamp::from_unix_seconds(self.settings.start_unix),
                interval,
            )
            .max(current - interval * RECENT_PRICE_POINTS as i64),
        };
        let fleet = self.fleet;
        let mut bucket = first;
        while bucket <= current {
            let gpus = fleet.gpus.iter().map(|g| {
                let model = &fleet.models[g.model];
                (model.key.as_str(), g.facts.model.as_str(), g.asking)
            });
            for sample in samples_for_bucket(gpus, bucket) {
                if let Some(m) = fleet.models.iter().position(|m| m.key == sample.model_key) {
                    let history = &mut self.history[m];
                    history.push_back(sample);
                    while history.len() > RECENT_PRICE_POINTS {
                        history.pop_front();
                    }
                }
            }
            bucket += interval;
        }
        for (recent, history) in self.recent.iter_mut().zip(&self.history) {
            let samples: Vec<ModelSample> = history.iter().cloned().collect();
            *recent = recent_prices(&combine(&samples, RECENT_PRICE_POINTS));
        }
        self.history_bucket = Some(current);
    }

    /// The facts a policy sees about `model` at `now`.
    fn facts(&mut self, model: usize, now: i64) -> MarketFacts {
        if let Some(facts) = &self.facts[model] {
            return facts.clone();
        }
        let since = booking_rate_since(Timestamp::from_micros(now)).micros();
        let starts = &mut self.recent_starts[model];
        while starts.front().is_some_and(|&s| s < since) {
            starts.pop_front();
        }
        let total = self.fleet.models[model].gpus.len() as i64;
        let booked = i64::from(self.booked[model]);
        let counts = StatusCounts {
            total,
            available: total - booked,
            booked,
            offline: 0,
        };
        let facts = market_facts(counts, starts.len() as i64, self.recent[model].clone());
        self.facts[model] = Some(facts.clone());
        facts
    }

    fn arrive(&mut self, request: &Request, now: i64) {
        self.out.arrived += 1;
        let hour = self.hour_of(now);
        if let Some(h) = hour {
            self.out.hours[h].arrivals += 1;
        }
        let trace = self.trace;
        let filter = &trace.filters[request.filter as usize];
        self.candidates.clear();
        if self.pricing.constant_multiplier().is_some() {
            // Quotes rank GPUs as their asking prices do: only the cheapest free one needs a quote.
            if let Some(&g) = filter
                .by_asking
                .iter()
                .find(|&&g| self.active[g as usize].is_none())
            {
                self.candidates.push(g);
            }
        } else {
            let active = &self.active;
            self.candidates.extend(
                filter
                    .by_id
                    .iter()
                    .copied()
                    .filter(|&g| active[g as usize].is_none()),
            );
        }
        if self.candidates.is_empty() {
            self.lose(request);
            return;
        }
        self.facts.iter_mut().for_each(|f| *f = None);
        self.record_history(Timestamp::from_micros(now));
        let mut requests = std::mem::take(&mut self.requests);
        requests.clear();
        let fleet = self.fleet;
        for i in 0..self.candidates.len() {
            let g = self.candidates[i] as usize;
            let gpu = &fleet.gpus[g];
            let facts = self.facts(gpu.model, now);
            requests.push(pricing_request(
                gpu.facts.clone(),
                facts,
                request.duration_hours,
                Timestamp::from_micros(now),
                self.price_state[g],
            ));
        }
        self.answers.clear();
        self.pricing.quote_all(&requests, &mut self.answers);
        self.requests = requests;

        let mut best: Option<(Money, f64, bool, usize)> = None;
        for (i, answer) in self.answers.drain(..).enumerate() {
            let g = self.candidates[i] as usize;
            self.out.pricing_calls += 1;
            self.out.fuel_total += u128::from(answer.fuel);
            self.out.fuel_max = self.out.fuel_max.max(answer.fuel);
            if let Some(state) = answer.quote.state {
                self.price_state[g] = Some(state);
            }
            let accepted = accept_quote(self.fleet.gpus[g].asking, answer.quote);
            if accepted.source.fallback {
                self.out.pricing_fallbacks += 1;
            }
            self.current_price[g] = accepted.price;
            self.current_multiplier[g] = accepted.multiplier;
            if best.is_none_or(|(price, ..)| accepted.price < price) {
                best = Some((
                    accepted.price,
                    accepted.multiplier,
                    accepted.source.fallback,
                    g,
                ));
            }
        }
        match best {
            Some((price, multiplier, fallback, gpu)) if price <= request.max_price => {
                let priced_by = PricedBy::from_fallback(fallback);
                self.book(request, gpu, (price, multiplier, priced_by), now, hour)
            }
            _ => self.lose(request),
        }
    }

    fn lose(&mut self, request: &Request) {
        self.out.lost_value = self.out.lost_value.saturating_add(request.value());
    }

    fn book(
        &mut self,
        request: &Request,
        gpu: usize,
        (price, multiplier, priced_by): (Money, f64, PricedBy),
        now: i64,
        hour: Option<usize>,
    ) {
        let total = booking_total(price, request.duration);
        let facts = &self.fleet.gpus[gpu].facts;
        let model = self.fleet.gpus[gpu].model;
        let seq = self.next_seq;
        self.next_seq += 1;
        let start = Timestamp::from_micros(now);
        let booking = Booking {
            id: BookingId::from(format!("bk_{seq}")),
            order_id: OrderId::from(format!("ord_{seq}")),
            gpu_id: facts.gpu_id.as_str().into(),
            gpu_model: facts.model.clone(),
            miner_id: PrincipalId::from("miner"),
            client_id: PrincipalId::from("client"),
            job_id: None,
            duration: request.duration,
            price_per_hour: price,
            total,
            refund: None,
            charged: None,
            status: BookingStatus::Active,
            multiplier,
            policy: String::new(),
            priced_by,
            extensions: 0,
            grace_until: None,
            start_at: start,
            end_at: start.plus_seconds(request.duration.seconds()),
            created_at: start,
            ended_at: None,
            end_reason: None,
            pricing_decision: None,
            timeout_decision: None,
        };
        self.sweeps.push(Reverse((
            ceil_to_second(booking.end_at.micros()),
            gpu as u32,
            seq,
        )));
        self.active[gpu] = Some(Live {
            booking,
            model,
            seq,
        });
        self.booked[model] += 1;
        self.recent_starts[model].push_back(now);
        self.out.served += 1;
        self.out.booked_prices.push(price);
        self.out.consumer_surplus = self
            .out
            .consumer_surplus
            .saturating_add(request.value().saturating_sub(total));
        if let Some(h) = hour {
            let point = &mut self.out.hours[h];
            point.served += 1;
            point.revenue = point.revenue.saturating_add(total);
        }
    }

    fn finish(mut self) -> RunOutput {
        let gpus = self.current_price.len().max(1) as f64;
        for (point, occupied) in self.out.hours.iter_mut().zip(&self.occupied) {
            point.utilization = *occupied as f64 / (gpus * HOUR as f64);
        }
        self.out.booked_micros = self.occupied.iter().map(|&o| i128::from(o)).sum();
        self.out
    }
}
