//! The GPU registry: miners register GPUs, clients browse them, heartbeats keep them online.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::model_match::{capability_pattern, like_pattern, model_key};
use super::time::{now_micros, rfc3339, rfc3339_opt};
use super::{Market, Money, Principal, ids};
use crate::config::Role;
use crate::error::{Error, Result};
use crate::store::bookings::{self, BookingRow};
use crate::store::gpus::{self, GpuQuery, GpuRow};

pub const MAX_PRICE_UNITS: f64 = 10_000.0;
pub const MAX_MEMORY_GB: f64 = 4_096.0;
pub const MAX_MODEL_CHARS: usize = 128;
const MAX_TEXT_CHARS: usize = 2_000;
const MAX_CAPABILITIES: usize = 64;

/// A GPU as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GpuView {
    pub id: String,
    pub miner_id: String,
    pub model: String,
    pub memory_gb: f64,
    pub cuda_version: Option<String>,
    pub cuda_cores: Option<i64>,
    pub compute_capability: Option<String>,
    pub region: Option<String>,
    pub description: Option<String>,
    pub capabilities: Vec<String>,
    /// The miner's asking price, AITBC per hour.
    #[schema(value_type = f64)]
    pub price_per_hour: Money,
    /// The pricing policy's quote for a one-hour booking now.
    #[schema(value_type = f64)]
    pub current_price: Money,
    pub status: String,
    pub average_rating: f64,
    pub total_reviews: i64,
    pub total_bookings: i64,
    pub last_heartbeat: Option<String>,
    pub created_at: String,
    /// Present in details while the GPU is booked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_booking: Option<CurrentBooking>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CurrentBooking {
    pub booking_id: String,
    pub client_id: String,
    pub duration_hours: f64,
    #[schema(value_type = f64)]
    pub total_cost: Money,
    pub start_time: String,
    pub end_time: String,
}

impl From<&BookingRow> for CurrentBooking {
    fn from(b: &BookingRow) -> Self {
        Self {
            booking_id: b.id.clone(),
            client_id: b.client_id.clone(),
            duration_hours: b.duration_hours,
            total_cost: Money::from_micros(b.total_micro),
            start_time: rfc3339(b.start_at),
            end_time: rfc3339(b.end_at),
        }
    }
}

impl From<GpuRow> for GpuView {
    fn from(row: GpuRow) -> Self {
        let average_rating = if row.rating_count == 0 {
            0.0
        } else {
            row.rating_sum as f64 / row.rating_count as f64
        };
        Self {
            capabilities: serde_json::from_str(&row.capabilities).unwrap_or_default(),
            id: row.id,
            miner_id: row.miner_id,
            model: row.model,
            memory_gb: row.memory_gb,
            cuda_version: row.cuda_version,
            cuda_cores: row.cuda_cores,
            compute_capability: row.compute_capability,
            region: row.region,
            description: row.description,
            price_per_hour: Money::from_micros(row.price_micro),
            current_price: Money::from_micros(row.current_price_micro),
            status: row.status,
            average_rating,
            total_reviews: row.rating_count,
            total_bookings: row.total_bookings,
            last_heartbeat: rfc3339_opt(row.last_heartbeat),
            created_at: rfc3339(row.created_at),
            current_booking: None,
        }
    }
}

/// A registration, after the API layer merged the field spellings of old and new clients.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    pub model: String,
    pub memory_gb: Option<f64>,
    pub cuda_version: Option<String>,
    pub cuda_cores: Option<i64>,
    pub compute_capability: Option<String>,
    pub region: Option<String>,
    pub description: Option<String>,
    pub capabilities: Vec<String>,
    pub price_per_hour: Option<f64>,
    /// Whom to register for; only an admin may register for someone else.
    pub miner_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Registered {
    pub gpu_id: String,
    pub status: &'static str,
    #[schema(value_type = f64)]
    pub price_per_hour: Money,
    pub message: String,
}

fn check_text(field: &str, value: &Option<String>) -> Result<()> {
    match value {
        Some(text) if text.chars().count() > MAX_TEXT_CHARS => Err(Error::bad_request(format!(
            "{field} must be at most {MAX_TEXT_CHARS} characters"
        ))),
        _ => Ok(()),
    }
}

/// Validates an asking price: more than 0 and at most 10 000 AITBC per hour.
pub fn parse_price(field: &str, units: f64) -> Result<Money> {
    match Money::from_units(units) {
        Some(price) if price > Money::ZERO && units <= MAX_PRICE_UNITS => Ok(price),
        _ => Err(Error::bad_request(format!(
            "{field} must be greater than 0 and at most {MAX_PRICE_UNITS}"
        ))),
    }
}

pub async fn register(
    market: &Market,
    caller: &Principal,
    registration: Registration,
) -> Result<Registered> {
    if !caller.has(Role::Miner) && !caller.is_admin() {
        return Err(Error::forbidden("registering a GPU needs the miner role"));
    }
    let model = registration.model.trim().to_owned();
    if model.is_empty() || model.chars().count() > MAX_MODEL_CHARS {
        return Err(Error::bad_request(format!(
            "name must be 1 to {MAX_MODEL_CHARS} characters"
        )));
    }
    let memory_gb = registration.memory_gb.unwrap_or(0.0);
    if !memory_gb.is_finite() || !(0.0..=MAX_MEMORY_GB).contains(&memory_gb) {
        return Err(Error::bad_request(format!(
            "memory_gb must be between 0 and {MAX_MEMORY_GB}"
        )));
    }
    if matches!(registration.cuda_cores, Some(cores) if cores < 0) {
        return Err(Error::bad_request("cuda_cores must not be negative"));
    }
    for (field, value) in [
        ("description", &registration.description),
        ("region", &registration.region),
        ("cuda_version", &registration.cuda_version),
        ("compute_capability", &registration.compute_capability),
    ] {
        check_text(field, value)?;
    }
    if registration.capabilities.len() > MAX_CAPABILITIES
        || registration
            .capabilities
            .iter()
            .any(|c| c.is_empty() || c.chars().count() > MAX_MODEL_CHARS)
    {
        return Err(Error::bad_request(format!(
            "capabilities must be at most {MAX_CAPABILITIES} non-empty names of at most {MAX_MODEL_CHARS} characters"
        )));
    }
    // The aitbc client sends the literal `default` when its user named no miner: for a miner registering
    // its own GPU that means itself; an admin registers for whoever is named.
    let miner_id = match registration.miner_id.filter(|id| !id.trim().is_empty()) {
        Some(id) if caller.is_admin() => id,
        Some(id) if id == caller.id || id == "default" => caller.id.clone(),
        Some(_) => {
            return Err(Error::forbidden(
                "only an admin can register a GPU for another miner",
            ));
        }
        None => caller.id.clone(),
    };
    let key = model_key(&model);
    let price = match registration.price_per_hour {
        Some(units) => parse_price("price_per_hour", units)?,
        None => super::pricing::recommended_price(market, &like_pattern(&key))
            .await?
            .ok_or_else(|| {
                Error::bad_request(format!(
                    "price_per_hour is missing and the market has no {model} GPUs to recommend a price from"
                ))
            })?,
    };
    let now = now_micros();
    let mut row = GpuRow {
        id: ids::new_id("gpu"),
        miner_id,
        model_key: key.clone(),
        model,
        memory_gb,
        cuda_version: registration.cuda_version,
        cuda_cores: registration.cuda_cores,
        compute_capability: registration.compute_capability,
        region: registration.region.filter(|r| !r.trim().is_empty()),
        description: registration.description,
        capabilities: serde_json::to_string(&registration.capabilities)
            .unwrap_or_else(|_| "[]".into()),
        price_micro: price.micros(),
        current_price_micro: price.micros(),
        status: "available".to_owned(),
        total_bookings: 0,
        rating_sum: 0,
        rating_count: 0,
        last_heartbeat: None,
        created_at: now,
    };
    let quote = super::pricing::quote_for(market, &row, 1.0, now).await?;
    row.current_price_micro = quote.price.micros();
    gpus::insert(&market.store, &row).await?;
    market.prices.mark_dirty(&key);
    tracing::info!(gpu_id = %row.id, miner_id = %row.miner_id, model = %row.model, price = %price, "GPU registered");
    Ok(Registered {
        message: format!("GPU {} registered", row.model),
        gpu_id: row.id,
        status: "registered",
        price_per_hour: price,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum SortKey {
    Price,
    Memory,
    Rating,
    #[default]
    Created,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    Asc,
    Desc,
}

#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub available: Option<bool>,
    pub model: Option<String>,
    pub memory_min: Option<f64>,
    pub price_max: Option<f64>,
    pub region: Option<String>,
    pub status: Option<String>,
    pub miner_id: Option<String>,
    pub capability: Option<String>,
    pub sort: SortKey,
    pub order: Option<SortOrder>,
    pub limit: i64,
    pub offset: i64,
}

pub const GPU_STATUSES: [&str; 3] = ["available", "booked", "offline"];

/// Parses a GPU status filter into the static string the store binds.
pub fn parse_status(status: &str) -> Result<&'static str> {
    GPU_STATUSES
        .iter()
        .find(|s| s.eq_ignore_ascii_case(status))
        .copied()
        .ok_or_else(|| {
            Error::bad_request(format!("status must be one of {}", GPU_STATUSES.join(", ")))
        })
}

fn order_by(sort: SortKey, order: Option<SortOrder>) -> &'static str {
    use SortKey::*;
    use SortOrder::*;
    // Each key has its natural direction; ties always break on id so pages are stable.
    match (sort, order) {
        (Price, None | Some(Asc)) => "current_price_micro ASC, id ASC",
        (Price, Some(Desc)) => "current_price_micro DESC, id ASC",
        (Memory, None | Some(Desc)) => "memory_gb DESC, id ASC",
        (Memory, Some(Asc)) => "memory_gb ASC, id ASC",
        (Rating, None | Some(Desc)) => {
            "CASE WHEN rating_count = 0 THEN 0 ELSE rating_sum * 1.0 / rating_count END DESC, rating_count DESC, id ASC"
        }
        (Rating, Some(Asc)) => {
            "CASE WHEN rating_count = 0 THEN 0 ELSE rating_sum * 1.0 / rating_count END ASC, rating_count ASC, id ASC"
        }
        (Created, None | Some(Asc)) => "created_at ASC, id ASC",
        (Created, Some(Desc)) => "created_at DESC, id DESC",
    }
}

pub async fn list(market: &Market, filter: ListFilter) -> Result<Vec<GpuView>> {
    let mut query = GpuQuery {
        model_like: filter
            .model
            .as_deref()
            .filter(|m| !m.is_empty())
            .map(like_pattern),
        capability_like: filter
            .capability
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(capability_pattern),
        memory_min: filter.memory_min,
        region: filter.region.filter(|r| !r.is_empty()),
        miner_id: filter.miner_id.filter(|m| !m.is_empty()),
        order_by: order_by(filter.sort, filter.order),
        limit: filter.limit,
        offset: filter.offset,
        ..GpuQuery::default()
    };
    if let Some(price_max) = filter.price_max {
        let price = Money::from_units(price_max)
            .ok_or_else(|| Error::bad_request("price_max must be a number"))?;
        query.price_max_micro = Some(price.micros());
    }
    if let Some(status) = filter.status.as_deref().filter(|s| !s.is_empty()) {
        query.statuses.push(parse_status(status)?);
    }
    match filter.available {
        Some(true) => query.statuses.push("available"),
        Some(false) => query.exclude_status = Some("available"),
        None => {}
    }
    let rows = gpus::list(&market.store, &query).await?;
    Ok(rows.into_iter().map(GpuView::from).collect())
}

pub async fn details(market: &Market, gpu_id: &str) -> Result<GpuView> {
    let row = find(market, gpu_id).await?;
    let booked = row.status == "booked";
    let mut view = GpuView::from(row);
    if booked {
        view.current_booking = bookings::active_for_gpu(&market.store, gpu_id)
            .await?
            .as_ref()
            .map(CurrentBooking::from);
    }
    Ok(view)
}

pub async fn find(market: &Market, gpu_id: &str) -> Result<GpuRow> {
    gpus::get(&market.store, gpu_id)
        .await?
        .ok_or_else(|| Error::not_found(format!("GPU {gpu_id} not found")))
}

fn require_owner(caller: &Principal, gpu: &GpuRow, action: &str) -> Result<()> {
    if caller.is_admin() || (caller.has(Role::Miner) && caller.id == gpu.miner_id) {
        Ok(())
    } else {
        Err(Error::forbidden(format!(
            "only the GPU's miner or an admin can {action} it"
        )))
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Removed {
    pub gpu_id: String,
    pub status: &'static str,
    pub message: String,
}

pub async fn remove(market: &Market, caller: &Principal, gpu_id: &str) -> Result<Removed> {
    let gpu = find(market, gpu_id).await?;
    require_owner(caller, &gpu, "delete")?;
    if !gpus::soft_delete(&market.store, gpu_id, now_micros()).await? {
        // Gone between the two statements, or booked: tell which.
        find(market, gpu_id).await?;
        return Err(Error::conflict(format!(
            "GPU {gpu_id} is booked; release it before deleting it"
        )));
    }
    market.prices.mark_dirty(&gpu.model_key);
    tracing::info!(gpu_id, by = %caller.id, "GPU deleted");
    Ok(Removed {
        gpu_id: gpu_id.to_owned(),
        status: "deleted",
        message: format!("GPU {gpu_id} deleted"),
    })
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HeartbeatAck {
    pub gpu_id: String,
    pub status: String,
    pub last_heartbeat: String,
}

pub async fn heartbeat(market: &Market, caller: &Principal, gpu_id: &str) -> Result<HeartbeatAck> {
    let gpu = find(market, gpu_id).await?;
    require_owner(caller, &gpu, "send heartbeats for")?;
    let now = now_micros();
    let status = gpus::heartbeat(&market.store, gpu_id, now)
        .await?
        .ok_or_else(|| Error::not_found(format!("GPU {gpu_id} not found")))?;
    if gpu.status == "offline" && status == "available" {
        tracing::info!(gpu_id, "GPU back online");
        market.prices.mark_dirty(&gpu.model_key);
    }
    Ok(HeartbeatAck {
        gpu_id: gpu_id.to_owned(),
        status,
        last_heartbeat: rfc3339(now),
    })
}
