//! The two CSV inputs, checked whole before anything runs: a fleet of GPUs and a demand trace.
//!
//! - fleet: `model,memory_gb,region,base_price,count` (asking price in AITBC/h, `region` may be empty);
//! - demand: `arrival_seconds,model,duration_hours,max_price` (seconds since the trace starts,
//!   ascending; `model` is a list filter, `*` = any GPU; `max_price` in AITBC/h).
//!
//! Every bad cell is reported with its file, line and column (up to [`MAX_ERRORS`] of them).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use csv::StringRecord;

use super::error::{InputError, SimError};
use crate::domain::{BookingDuration, ModelFilter, Money, model_key};
use crate::policy::GpuFacts;

const MICROS_PER_SECOND: i64 = 1_000_000;

/// Errors reported from one file before giving up on it.
pub const MAX_ERRORS: usize = 20;
/// Largest fleet the simulator takes (the market's own bound on one model's GPUs).
const MAX_GPUS: u64 = 100_000;

pub const FLEET_COLUMNS: [&str; 5] = ["model", "memory_gb", "region", "base_price", "count"];
pub const DEMAND_COLUMNS: [&str; 4] = ["arrival_seconds", "model", "duration_hours", "max_price"];

/// One simulated GPU.
#[derive(Debug, Clone, PartialEq)]
pub struct Gpu {
    /// Index into [`Fleet::models`].
    pub model: usize,
    /// What a policy sees; `gpu_id` is `gpu-NNNN` in fleet order, so ids sort like the fleet file.
    pub facts: GpuFacts,
    pub asking: Money,
}

/// GPUs of one model (one model key: spellings that the market treats as one model share it).
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub name: String,
    /// The market's key for the model (spellings ignored).
    pub key: String,
    pub gpus: Vec<u32>,
    /// The average asking price of the model's GPUs: what the price history records per bucket.
    pub average_asking: Money,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    pub gpus: Vec<Gpu>,
    pub models: Vec<Model>,
}

impl Fleet {
    /// Builds a fleet from `(model, memory_gb, region, asking price, count)` rows.
    pub fn from_rows(rows: &[(String, f64, Option<String>, Money, u32)]) -> Self {
        let total: u64 = rows.iter().map(|r| u64::from(r.4)).sum();
        let width = total.max(1).to_string().len().max(4);
        let mut gpus = Vec::new();
        let mut models: Vec<Model> = Vec::new();
        let mut by_key: HashMap<String, usize> = HashMap::new();
        for (name, memory_gb, region, asking, count) in rows {
            let key = model_key(name);
            let index = *by_key.entry(key.clone()).or_insert_with(|| {
                models.push(Model {
                    name: name.clone(),
                    key,
                    gpus: Vec::new(),
                    average_asking: Money::ZERO,
                });
                models.len() - 1
            });
            for _ in 0..*count {
                let id = gpus.len();
                models[index].gpus.push(id as u32);
                gpus.push(Gpu {
                    model: index,
                    facts: GpuFacts {
                        gpu_id: format!("gpu-{id:0width$}"),
                        model: name.clone(),
                        memory_gb: *memory_gb,
                        region: region.clone(),
                        base_price: asking.as_units(),
                    },
                    asking: *asking,
                });
            }
        }
        for model in &mut models {
            model.average_asking =
                Money::average(model.gpus.iter().map(|&g| gpus[g as usize].asking));
        }
        Self { gpus, models }
    }

    /// The GPUs a request's `model` filter matches, in id order.
    pub fn matching(&self, filter: &str) -> Vec<u32> {
        let filter = ModelFilter::parse(filter);
        self.gpus
            .iter()
            .enumerate()
            .filter(|(_, gpu)| filter.matches(&gpu.facts.model))
            .map(|(i, _)| i as u32)
            .collect()
    }
}

/// A distinct `model` filter of a trace and the GPUs it matches.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterMatch {
    pub text: String,
    /// Matching GPUs in id order.
    pub by_id: Vec<u32>,
    /// The same GPUs by asking price, then id: the order in which a constant multiplier quotes them.
    pub by_asking: Vec<u32>,
}

/// One request of a demand trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    /// Microseconds since the trace starts.
    pub arrival: i64,
    /// Index into [`Trace::filters`].
    pub filter: u32,
    /// As written in the trace: what the client asks for and the policy sees.
    pub duration_hours: f64,
    pub duration: BookingDuration,
    pub max_price: Money,
}

impl Request {
    /// What the client would have paid at most: `max_price` × duration.
    pub fn value(&self) -> Money {
        self.max_price.pro_rata(self.duration.seconds(), 3_600)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub filters: Arc<Vec<FilterMatch>>,
    pub requests: Vec<Request>,
}

impl Trace {
    /// Resolves filters against the fleet; `rows` are `(arrival µs, filter, hours, duration, max price)`.
    pub fn build(fleet: &Fleet, rows: Vec<(i64, String, f64, BookingDuration, Money)>) -> Self {
        let mut index: HashMap<String, u32> = HashMap::new();
        let mut filters = Vec::new();
        let requests = rows
            .into_iter()
            .map(|(arrival, text, hours, duration, max_price)| {
                let filter = *index.entry(text.clone()).or_insert_with(|| {
                    let by_id = fleet.matching(&text);
                    let mut by_asking = by_id.clone();
                    by_asking.sort_by_key(|&g| (fleet.gpus[g as usize].asking, g));
                    filters.push(FilterMatch {
                        text,
                        by_id,
                        by_asking,
                    });
                    (filters.len() - 1) as u32
                });
                Request {
                    arrival,
                    filter,
                    duration_hours: hours,
                    duration,
                    max_price,
                }
            })
            .collect();
        Self {
            filters: Arc::new(filters),
            requests,
        }
    }

    /// Filters that match no GPU of the fleet: their requests are always lost.
    pub fn unmatched_filters(&self) -> Vec<&str> {
        self.filters
            .iter()
            .filter(|f| f.by_id.is_empty())
            .map(|f| f.text.as_str())
            .collect()
    }

    /// The end of the last whole hour that contains an arrival, in seconds since the start.
    pub fn covered_hours(&self) -> u32 {
        let last = self.requests.last().map_or(0, |r| r.arrival);
        u32::try_from(last / (3_600 * MICROS_PER_SECOND) + 1).unwrap_or(u32::MAX)
    }
}

/// Reads and checks a fleet file.
pub fn read_fleet(path: &Path) -> Result<Fleet, SimError> {
    let text = read(path)?;
    parse_fleet(path, &text)
}

pub fn parse_fleet(path: &Path, text: &str) -> Result<Fleet, SimError> {
    let mut table = Table::new(path, text, &FLEET_COLUMNS)?;
    let mut rows = Vec::new();
    let mut total = 0u64;
    while let Some((line, record)) = table.next_record() {
        let mut row = table.row(line, record);
        let model = row.cell("model", |s| non_empty(s).map(str::to_owned));
        let memory = row.cell("memory_gb", |s| {
            number(s).and_then(|v| {
                (v >= 0.0)
                    .then_some(v)
                    .ok_or_else(|| "must not be negative".to_owned())
            })
        });
        let region = row.cell("region", |s| Ok((!s.is_empty()).then(|| s.to_owned())));
        let price = row.cell("base_price", price);
        let count = row.cell("count", |s| {
            s.parse::<u32>()
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| format!("{s:?} is not a whole number of GPUs (1 or more)"))
        });
        if let (Some(model), Some(memory), Some(region), Some(price), Some(count)) =
            (model, memory, region, price, count)
        {
            total += u64::from(count);
            if total > MAX_GPUS {
                row.fail("count", format!("the fleet has more than {MAX_GPUS} GPUs"));
            }
            rows.push((model, memory, region, price, count));
        }
        let errors = row.errors;
        table.errors.extend(errors);
        if total > MAX_GPUS {
            break;
        }
    }
    if table.errors.is_empty() && rows.is_empty() {
        table.errors.push(InputError {
            file: path.to_owned(),
            line: 1,
            column: None,
            message: "the fleet has no GPUs".into(),
        });
    }
    table.finish()?;
    Ok(Fleet::from_rows(&rows))
}

/// Reads and checks a demand trace against a fleet.
pub fn read_demand(path: &Path, fleet: &Fleet) -> Result<Trace, SimError> {
    let text = read(path)?;
    parse_demand(path, &text, fleet)
}

pub fn parse_demand(path: &Path, text: &str, fleet: &Fleet) -> Result<Trace, SimError> {
    let mut table = Table::new(path, text, &DEMAND_COLUMNS)?;
    let mut rows = Vec::new();
    let mut previous = 0i64;
    while let Some((line, record)) = table.next_record() {
        let mut row = table.row(line, record);
        let arrival = row.cell("arrival_seconds", |s| {
            number(s).and_then(|v| {
                if !(0.0..=1e11).contains(&v) {
                    return Err("must be between 0 and 1e11 seconds".to_owned());
                }
                let micros = (v * MICROS_PER_SECOND as f64).round() as i64;
                if micros < previous {
                    return Err(format!(
                        "{s} comes before the previous row's arrival: rows must be in ascending order"
                    ));
                }
                Ok(micros)
            })
        });
        if let Some(arrival) = arrival {
            previous = arrival;
        }
        let model = row.cell("model", |s| non_empty(s).map(str::to_owned));
        let duration = row.cell("duration_hours", |s| {
            let hours = number(s)?;
            BookingDuration::from_hours(hours)
                .map(|duration| (hours, duration))
                .map_err(|e| e.to_string())
        });
        let max_price = row.cell("max_price", |s| {
            number(s).and_then(|v| {
                Money::from_units(v)
                    .filter(|m| *m >= Money::ZERO)
                    .ok_or_else(|| format!("{s:?} is not a price (AITBC per hour, 0 or more)"))
            })
        });
        if let (Some(arrival), Some(model), Some((hours, duration)), Some(max_price)) =
            (arrival, model, duration, max_price)
        {
            rows.push((arrival, model, hours, duration, max_price));
        }
        let errors = row.errors;
        table.errors.extend(errors);
    }
    table.finish()?;
    Ok(Trace::build(fleet, rows))
}

fn read(path: &Path) -> Result<String, SimError> {
    std::fs::read_to_string(path).map_err(|source| SimError::Read {
        path: path.to_owned(),
        source,
    })
}

fn non_empty(s: &str) -> Result<&str, String> {
    if s.is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(s)
    }
}

fn number(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("{s:?} is not a number"))
}

fn price(s: &str) -> Result<Money, String> {
    number(s).and_then(|v| {
        Money::from_units(v)
            .filter(|m| *m > Money::ZERO)
            .ok_or_else(|| format!("{s:?} is not a positive price (AITBC per hour)"))
    })
}

/// A CSV file being read: the header's column positions and the errors found so far.
struct Table<'a> {
    path: PathBuf,
    columns: HashMap<&'static str, usize>,
    records: csv::StringRecordsIntoIter<&'a [u8]>,
    errors: Vec<InputError>,
}

/// One data row and where it is.
struct Row<'t> {
    path: &'t Path,
    line: u64,
    record: StringRecord,
    columns: &'t HashMap<&'static str, usize>,
    errors: Vec<InputError>,
}

impl<'a> Table<'a> {
    fn new(path: &Path, text: &'a str, expected: &[&'static str]) -> Result<Self, SimError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::All)
            .comment(Some(b'#'))
            .from_reader(text.as_bytes());
        let header_error = |message: String| {
            SimError::Input(vec![InputError {
                file: path.to_owned(),
                line: 1,
                column: None,
                message,
            }])
        };
        let header = reader
            .headers()
            .map_err(|e| header_error(format!("cannot read the header row: {e}")))?
            .clone();
        let mut columns = HashMap::new();
        for (i, name) in header.iter().enumerate() {
            let name = name.to_ascii_lowercase();
            match expected.iter().find(|e| **e == name) {
                Some(known) if columns.insert(*known, i).is_some() => {
                    return Err(header_error(format!("column {name} appears twice")));
                }
                Some(_) => {}
                None => {
                    return Err(header_error(format!(
                        "unknown column {name:?}; the header must be {}",
                        expected.join(",")
                    )));
                }
            }
        }
        if let Some(missing) = expected.iter().find(|e| !columns.contains_key(*e)) {
            return Err(header_error(format!(
                "column {missing} is missing; the header must be {}",
                expected.join(",")
            )));
        }
        Ok(Self {
            path: path.to_owned(),
            columns,
            records: reader.into_records(),
            errors: Vec::new(),
        })
    }

    fn row(&self, line: u64, record: StringRecord) -> Row<'_> {
        Row {
            path: &self.path,
            line,
            record,
            columns: &self.columns,
            errors: Vec::new(),
        }
    }

    /// The next well-formed record and its line; malformed ones are recorded as errors and skipped.
    fn next_record(&mut self) -> Option<(u64, StringRecord)> {
        loop {
            if self.errors.len() >= MAX_ERRORS {
                return None;
            }
            match self.records.next()? {
                Ok(record) => {
                    let line = record.position().map_or(0, csv::Position::line);
                    return Some((line, record));
                }
                Err(err) => {
                    let line = err.position().map_or(0, csv::Position::line);
                    let message = match err.kind() {
                        csv::ErrorKind::UnequalLengths {
                            expected_len, len, ..
                        } => format!("has {len} fields, the header has {expected_len}"),
                        _ => err.to_string(),
                    };
                    self.errors.push(InputError {
                        file: self.path.clone(),
                        line,
                        column: None,
                        message,
                    });
                }
            }
        }
    }

    fn finish(self) -> Result<(), SimError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(SimError::Input(self.errors))
        }
    }
}

impl Row<'_> {
    fn fail(&mut self, column: &str, message: String) {
        self.errors.push(InputError {
            file: self.path.to_owned(),
            line: self.line,
            column: Some(column.to_owned()),
            message,
        });
    }

    /// Parses one cell; a bad one is recorded (file, line, column) and gives `None`.
    fn cell<T>(
        &mut self,
        column: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let text = self.columns.get(column).and_then(|&i| self.record.get(i))?;
        match parse(text) {
            Ok(value) => Some(value),
            Err(message) => {
                self.fail(column, message);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLEET: &str =
        "model,memory_gb,region,base_price,count\nRTX 4090,24,eu,1.0,2\nA100,80,,2.5,1\n";

    #[test]
    fn a_fleet_expands_into_gpus_grouped_by_model() {
        let fleet = parse_fleet(Path::new("f.csv"), FLEET).unwrap();
        assert_eq!(fleet.gpus.len(), 3);
        assert_eq!(fleet.models.len(), 2);
        assert_eq!(fleet.gpus[0].facts.gpu_id, "gpu-0000");
        assert_eq!(fleet.gpus[2].facts.region, None);
        assert_eq!(
            fleet.models[1].average_asking,
            Money::from_micros(2_500_000)
        );
    }

    #[test]
    fn bad_cells_name_line_and_column() {
        let text =
            "model,memory_gb,region,base_price,count\nRTX 4090,24,eu,abc,2\nA100,80,,2.5,0\n";
        let err = parse_fleet(Path::new("f.csv"), text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("f.csv: line 2, column base_price"), "{err}");
        assert!(err.contains("f.csv: line 3, column count"), "{err}");
    }

    #[test]
    fn demand_must_be_ascending_and_filters_resolve() {
        let fleet = parse_fleet(Path::new("f.csv"), FLEET).unwrap();
        let trace = parse_demand(
            Path::new("d.csv"),
            "arrival_seconds,model,duration_hours,max_price\n0,rtx-4090,1,2\n10,*,0.5,3\n",
            &fleet,
        )
        .unwrap();
        assert_eq!(trace.filters[0].by_id, vec![0, 1]);
        assert_eq!(trace.filters[1].by_asking, vec![0, 1, 2]);
        let err = parse_demand(
            Path::new("d.csv"),
            "arrival_seconds,model,duration_hours,max_price\n10,*,1,2\n5,*,1,2\n",
            &fleet,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 3, column arrival_seconds"), "{err}");
    }
}
