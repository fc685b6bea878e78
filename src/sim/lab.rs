//! A study: every row (policy × sweep point) and every oracle multiplier, run on every seed's trace,
//! in parallel over the machine's cores. Results are collected in job order, so they never depend on
//! which thread ran what; only the wall-clock timings (kept apart) do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::engine::{MarketSettings, RunOutput, simulate};
use super::error::SimError;
use super::inputs::{Fleet, Trace};
use super::metrics::Metrics;
use super::oracle::{self, OracleRuns};
use super::progress::Progress;
use super::strategy::{PricingFactory, TimeoutFactory};

/// One row of the report: a pricing policy with one point of the sweep.
pub struct Row {
    /// Unique display name, e.g. `pricing-demand [max_multiplier=2]`.
    pub name: String,
    /// `builtin`, or the module's path as given.
    pub policy: String,
    pub sha256: Option<String>,
    /// The sweep point: pricing config keys and values this row sets.
    pub settings: Vec<(String, String)>,
    /// The module's answers depend on earlier calls: it runs on a fresh instance per decision.
    pub stateful: bool,
    pub factory: Arc<dyn PricingFactory>,
}

pub struct Study {
    pub fleet: Arc<Fleet>,
    /// One trace per seed.
    pub traces: Vec<Arc<Trace>>,
    pub settings: MarketSettings,
    pub rows: Vec<Row>,
    pub timeout: Arc<dyn TimeoutFactory>,
    pub oracle: bool,
    /// Worker threads; `None` = one per core.
    pub threads: Option<usize>,
}

/// A row's runs, one per seed.
pub struct RowRuns {
    pub runs: Vec<RunOutput>,
    pub metrics: Vec<Metrics>,
    /// Wall-clock time of each run (timing.json only).
    pub wall: Vec<Duration>,
}

pub struct Outcome {
    pub rows: Vec<RowRuns>,
    pub oracle: Option<OracleRuns>,
    pub wall: Duration,
}

#[derive(Clone, Copy)]
enum Job {
    Row { row: usize, seed: usize },
    Oracle { point: usize, seed: usize },
}

enum Done {
    Row(RunOutput, Duration),
    Oracle(Metrics),
}

impl Study {
    pub fn seeds(&self) -> usize {
        self.traces.len()
    }

    /// Runs everything; fails only if a strategy cannot be instantiated.
    pub fn run(&self, progress: &Progress) -> Result<Outcome, SimError> {
        let started = Instant::now();
        let grid = if self.oracle {
            oracle::grid()
        } else {
            Vec::new()
        };
        let mut jobs = Vec::new();
        for seed in 0..self.seeds() {
            jobs.extend((0..self.rows.len()).map(|row| Job::Row { row, seed }));
        }
        for seed in 0..self.seeds() {
            jobs.extend((0..grid.len()).map(|point| Job::Oracle { point, seed }));
        }
        progress.start(jobs.len() as u64);
        let run_job = |job: &Job| -> Result<Done, SimError> {
            let done = match *job {
                Job::Row { row, seed } => {
                    let row = &self.rows[row];
                    let t = Instant::now();
                    let output = self.run_one(row.factory.as_ref(), seed).map_err(|reason| {
                        SimError::Policy {
                            name: row.name.clone(),
                            reason,
                        }
                    })?;
                    Done::Row(output, t.elapsed())
                }
                Job::Oracle { point, seed } => {
                    let output = self.run_one(&grid[point], seed).map_err(SimError::usage)?;
                    Done::Oracle(Metrics::of(&output))
                }
            };
            progress.inc();
            Ok(done)
        };
        let results: Vec<Result<Done, SimError>> = match self.threads {
            Some(n) => rayon::ThreadPoolBuilder::new()
                .num_threads(n.max(1))
                .build()
                .map_err(|e| SimError::usage(format!("cannot start {n} threads: {e}")))?
                .install(|| jobs.par_iter().map(run_job).collect()),
            None => jobs.par_iter().map(run_job).collect(),
        };
        progress.finish();

        let seeds = self.seeds();
        let mut rows: Vec<RowRuns> = (0..self.rows.len())
            .map(|_| RowRuns {
                runs: Vec::with_capacity(seeds),
                metrics: Vec::with_capacity(seeds),
                wall: Vec::with_capacity(seeds),
            })
            .collect();
        let mut oracle_metrics = vec![Vec::with_capacity(seeds); grid.len()];
        for (job, result) in jobs.iter().zip(results) {
            match (job, result?) {
                (Job::Row { row, .. }, Done::Row(output, wall)) => {
                    let r = &mut rows[*row];
                    r.metrics.push(Metrics::of(&output));
                    r.runs.push(output);
                    r.wall.push(wall);
                }
                (Job::Oracle { point, .. }, Done::Oracle(metrics)) => {
                    oracle_metrics[*point].push(metrics);
                }
                _ => unreachable!("each job answers with its own kind"),
            }
        }
        Ok(Outcome {
            rows,
            oracle: self.oracle.then_some(OracleRuns {
                grid,
                metrics: oracle_metrics,
            }),
            wall: started.elapsed(),
        })
    }

    fn run_one(&self, factory: &dyn PricingFactory, seed: usize) -> Result<RunOutput, String> {
        let mut pricing = factory.build()?;
        let mut timeout = self.timeout.build()?;
        Ok(simulate(
            &self.fleet,
            &self.traces[seed],
            self.settings,
            pricing.as_mut(),
            timeout.as_mut(),
        ))
    }
}
