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

use crate::policy::{MarketFacts, PricingRequest};

use super::inputs::{Fleet, Request, Trace};
use super::rules::{
    self, ActiveBooking, BOOKING_RATE_WINDOW_SECONDS, MICROS_PER_SECOND, Money,
    RECENT_PRICE_POINTS, SweepOutcome,
};
use super::strategy::{Priced, PricingStrategy, TimeoutStrategy};

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
    booking: ActiveBooking,
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
    /// Wake-ups of the sweeper: (time, GPU, booking sequence number).
    sweeps: BinaryHeap<Reverse<(i64, u32, u64)>>,
    occupied: Vec<i64>,
    next_hour: usize,
    next_seq: u64,
    history: Vec<Vec<Money>>,
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
        sweeps: BinaryHeap::new(),
        occupied: vec![0; hours],
        next_hour: 0,
        next_seq: 0,
        history: fleet
            .models
            .iter()
            .map(|m| vec![m.average_asking; RECENT_PRICE_POINTS])
            .collect(),
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
        // The GPU is alive: it heartbeats until its booking ends.
        let request = rules::timeout_request(&live.booking, now, Some(now));
        let (decision, _fuel) = self.timeout.decide(&request);
        self.out.timeout_calls += 1;
        if decision.source.fallback {
            self.out.timeout_fallbacks += 1;
        }
        let seq = live.seq;
        match rules::sweep_outcome(&live.booking, &decision, now, self.settings.max_extensions) {
            SweepOutcome::Keep => {
                let next = ceil_to_second(live.booking.end).max(now + MICROS_PER_SECOND);
                self.sweeps.push(Reverse((next, gpu as u32, seq)));
            }
            SweepOutcome::Complete { charged } | SweepOutcome::Expire { charged } => {
                self.out.revenue = Money::from_micros(self.out.revenue.micros() + charged.micros());
                self.free(gpu, now);
            }
            SweepOutcome::Extend { new_end, new_total } => {
                let added = new_total.micros() - live.booking.total.micros();
                live.booking.end = new_end;
                live.booking.total = new_total;
                live.booking.extensions += 1;
                self.out.extensions += 1;
                self.sweeps
                    .push(Reverse((ceil_to_second(new_end), gpu as u32, seq)));
                if let Some(h) = self.hour_of(now) {
                    let revenue = &mut self.out.hours[h].revenue;
                    *revenue = Money::from_micros(revenue.micros() + added);
                }
            }
            SweepOutcome::Grace { until } => {
                live.booking.grace_until = Some(until);
                live.booking.extensions += 1;
                self.out.extensions += 1;
                self.sweeps
                    .push(Reverse((ceil_to_second(until), gpu as u32, seq)));
            }
        }
    }

    fn free(&mut self, gpu: usize, now: i64) {
        let Some(live) = self.active[gpu].take() else {
            return;
        };
        self.booked[live.model] -= 1;
        // Spread the occupied time over the hours of the horizon it covers.
        let mut t = live.booking.start;
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

    /// The facts a policy sees about `model` at `now`.
    fn facts(&mut self, model: usize, now: i64) -> MarketFacts {
        if let Some(facts) = &self.facts[model] {
            return facts.clone();
        }
        let since = now - BOOKING_RATE_WINDOW_SECONDS * MICROS_PER_SECOND;
        let starts = &mut self.recent_starts[model];
        while starts.front().is_some_and(|&s| s < since) {
            starts.pop_front();
        }
        let interval = self.settings.history_interval_secs;
        let buckets = (rules::history_bucket(now.div_euclid(MICROS_PER_SECOND), interval)
            - rules::history_bucket(self.settings.start_unix, interval))
            / interval
            + 1;
        let points = (buckets.max(1) as usize).min(RECENT_PRICE_POINTS);
        let total = self.fleet.models[model].gpus.len() as u32;
        let booked = self.booked[model];
        let facts = rules::market_facts(
            total,
            total - booked,
            booked,
            starts.len() as u32,
            &self.history[model][..points],
        );
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
        let mut requests = std::mem::take(&mut self.requests);
        requests.clear();
        let fleet = self.fleet;
        for i in 0..self.candidates.len() {
            let gpu = &fleet.gpus[self.candidates[i] as usize];
            let facts = self.facts(gpu.model, now);
            requests.push(rules::pricing_request(
                gpu.facts.clone(),
                facts,
                request.duration_hours,
                now,
            ));
        }
        self.answers.clear();
        self.pricing.quote_all(&requests, &mut self.answers);
        self.requests = requests;

        let mut best: Option<(Money, usize)> = None;
        for (i, answer) in self.answers.iter().enumerate() {
            let g = self.candidates[i] as usize;
            let accepted = rules::accept_quote(self.fleet.gpus[g].asking, &answer.quote);
            self.out.pricing_calls += 1;
            self.out.fuel_total += u128::from(answer.fuel);
            self.out.fuel_max = self.out.fuel_max.max(answer.fuel);
            if accepted.fallback {
                self.out.pricing_fallbacks += 1;
            }
            self.current_price[g] = accepted.price;
            self.current_multiplier[g] = accepted.multiplier;
            if best.is_none_or(|(price, _)| accepted.price < price) {
                best = Some((accepted.price, g));
            }
        }
        match best {
            Some((price, gpu)) if price <= request.max_price => {
                self.book(request, gpu, price, now, hour)
            }
            _ => self.lose(request),
        }
    }

    fn lose(&mut self, request: &Request) {
        self.out.lost_value =
            Money::from_micros(self.out.lost_value.micros() + request.value().micros());
    }

    fn book(&mut self, request: &Request, gpu: usize, price: Money, now: i64, hour: Option<usize>) {
        let total = rules::booking_total(price, request.duration_seconds);
        let model = self.fleet.gpus[gpu].model;
        let seq = self.next_seq;
        self.next_seq += 1;
        let booking = ActiveBooking {
            id: format!("bk-{seq}"),
            gpu_id: self.fleet.gpus[gpu].facts.gpu_id.clone(),
            start: now,
            end: now + request.duration_seconds * MICROS_PER_SECOND,
            price,
            total,
            extensions: 0,
            grace_until: None,
        };
        self.sweeps
            .push(Reverse((ceil_to_second(booking.end), gpu as u32, seq)));
        self.active[gpu] = Some(Live {
            booking,
            model,
            seq,
        });
        self.booked[model] += 1;
        self.recent_starts[model].push_back(now);
        self.out.served += 1;
        self.out.booked_prices.push(price);
        self.out.consumer_surplus = Money::from_micros(
            self.out.consumer_surplus.micros() + request.value().micros() - total.micros(),
        );
        if let Some(h) = hour {
            let point = &mut self.out.hours[h];
            point.served += 1;
            point.revenue = Money::from_micros(point.revenue.micros() + total.micros());
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
