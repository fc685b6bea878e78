//! The catalogue: GPUs as clients see them, and the search over them.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::Market;
use super::registry::find;
use crate::domain::{
    Booking, BookingId, Gpu, GpuId, GpuStatus, ModelFilter, Money, PrincipalId, Timestamp,
};
use crate::error::{Error, Result};
use crate::store::{GpuFilter, GpuOrder, Matching, Page, bookings, gpus};

/// Page size of a listing unless asked otherwise, and the most one page may hold.
pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 500;

/// A GPU as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GpuView {
    pub id: GpuId,
    pub miner_id: PrincipalId,
    pub model: String,
    pub memory_gb: f64,
    pub cuda_version: Option<String>,
    pub cuda_cores: Option<i64>,
    pub compute_capability: Option<String>,
    pub region: Option<String>,
    pub description: Option<String>,
    pub capabilities: Vec<String>,
    /// The miner's asking price, AITBC per hour.
    pub price_per_hour: Money,
    /// The pricing policy's quote for a one-hour booking now.
    pub current_price: Money,
    pub status: GpuStatus,
    pub average_rating: f64,
    pub total_reviews: i64,
    pub total_bookings: i64,
    pub last_heartbeat: Option<Timestamp>,
    pub created_at: Timestamp,
    /// Present in details while the GPU is booked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_booking: Option<CurrentBooking>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CurrentBooking {
    pub booking_id: BookingId,
    pub client_id: PrincipalId,
    pub duration_hours: f64,
    pub total_cost: Money,
    pub start_time: Timestamp,
    pub end_time: Timestamp,
}

impl From<&Booking> for CurrentBooking {
    fn from(b: &Booking) -> Self {
        Self {
            booking_id: b.id.clone(),
            client_id: b.client_id.clone(),
            duration_hours: b.duration.hours(),
            total_cost: b.total,
            start_time: b.start_at,
            end_time: b.end_at,
        }
    }
}

impl From<Gpu> for GpuView {
    fn from(gpu: Gpu) -> Self {
        Self {
            average_rating: gpu.average_rating(),
            capabilities: gpu.capabilities.0,
            id: gpu.id,
            miner_id: gpu.miner_id,
            model: gpu.model,
            memory_gb: gpu.memory_gb,
            cuda_version: gpu.cuda_version,
            cuda_cores: gpu.cuda_cores,
            compute_capability: gpu.compute_capability,
            region: gpu.region,
            description: gpu.description,
            price_per_hour: gpu.asking_price,
            current_price: gpu.current_price,
            status: gpu.status,
            total_reviews: gpu.rating_count,
            total_bookings: gpu.total_bookings,
            last_heartbeat: gpu.last_heartbeat,
            created_at: gpu.created_at,
            current_booking: None,
        }
    }
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

/// Each key has its natural direction when none is asked for.
fn order_of(sort: SortKey, order: Option<SortOrder>) -> GpuOrder {
    use SortKey::*;
    use SortOrder::*;
    match (sort, order) {
        (Price, None | Some(Asc)) => GpuOrder::CurrentPriceAsc,
        (Price, Some(Desc)) => GpuOrder::CurrentPriceDesc,
        (Memory, None | Some(Desc)) => GpuOrder::MemoryDesc,
        (Memory, Some(Asc)) => GpuOrder::MemoryAsc,
        (Rating, None | Some(Desc)) => GpuOrder::RatingDesc,
        (Rating, Some(Asc)) => GpuOrder::RatingAsc,
        (Created, None | Some(Asc)) => GpuOrder::CreatedAsc,
        (Created, Some(Desc)) => GpuOrder::CreatedDesc,
    }
}

/// A catalogue search, as the query string gives it. Validated and turned into the store's typed
/// filter by [`list`]; there is no other layer between the two.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CatalogueQuery {
    /// true: available only; false: everything not available.
    pub available: Option<bool>,
    /// Case-insensitive; `*` and `?` wildcards; plain text is a substring; spaces and dashes ignored.
    pub model: Option<String>,
    #[param(minimum = 0)]
    pub memory_min: Option<f64>,
    /// On `current_price`.
    #[param(minimum = 0)]
    pub price_max: Option<f64>,
    pub region: Option<String>,
    /// available, booked or offline (any case).
    #[param(schema_with = GpuStatus::filter_schema)]
    pub status: Option<String>,
    pub miner_id: Option<String>,
    pub capability: Option<String>,
    #[param(value_type = Option<SortKey>, inline)]
    pub sort: Option<SortKey>,
    #[param(value_type = Option<SortOrder>, inline)]
    pub order: Option<SortOrder>,
    /// Default 100.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// Reads a paging window and checks it against its range (out of range is a 400).
pub fn page(limit: Option<i64>, offset: Option<i64>, default: i64, max: i64) -> Result<Page> {
    let limit = match limit {
        None => default,
        Some(limit) if (1..=max).contains(&limit) => limit,
        Some(_) => {
            return Err(Error::bad_request(format!(
                "limit must be between 1 and {max}"
            )));
        }
    };
    let offset = match offset {
        None => 0,
        Some(offset) if offset >= 0 => offset,
        Some(_) => return Err(Error::bad_request("offset must not be negative")),
    };
    Ok(Page { limit, offset })
}

/// Empty text means "no filter", as the aitbc client sends unset options.
fn given(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.is_empty())
}

impl CatalogueQuery {
    fn into_filter(self) -> Result<(GpuFilter, GpuOrder, Page)> {
        if self.memory_min.is_some_and(|m| !m.is_finite() || m < 0.0) {
            return Err(Error::bad_request("memory_min must not be negative"));
        }
        let current_price_max = match self.price_max {
            None => None,
            Some(p) if !p.is_finite() || p < 0.0 => {
                return Err(Error::bad_request("price_max must not be negative"));
            }
            // Above any price the market can hold, a cap caps nothing.
            Some(p) => Some(
                Money::from_units(p.min(1e12))
                    .ok_or_else(|| Error::bad_request("price_max must be a number"))?,
            ),
        };
        let page = page(self.limit, self.offset, DEFAULT_LIMIT, MAX_LIMIT)?;
        let model = given(self.model).map(|m| ModelFilter::parse(&m));
        let matching = match (model, given(self.capability)) {
            (None, None) => Matching::Any,
            (Some(model), None) => Matching::Model(model),
            (None, Some(capability)) => Matching::Capability(capability),
            (Some(model), Some(capability)) => Matching::Both(model, capability),
        };
        let mut statuses = Vec::new();
        if let Some(status) = given(self.status) {
            statuses.push(status.parse::<GpuStatus>()?);
        }
        let mut exclude_status = None;
        match self.available {
            Some(true) => statuses.push(GpuStatus::Available),
            Some(false) => exclude_status = Some(GpuStatus::Available),
            None => {}
        }
        let filter = GpuFilter {
            matching,
            statuses,
            exclude_status,
            memory_min: self.memory_min,
            current_price_max,
            region: given(self.region),
            miner_id: given(self.miner_id).map(PrincipalId::from),
        };
        Ok((
            filter,
            order_of(self.sort.unwrap_or_default(), self.order),
            page,
        ))
    }
}

pub async fn list(market: &Market, query: CatalogueQuery) -> Result<Vec<GpuView>> {
    let (filter, order, page) = query.into_filter()?;
    let rows = gpus::list(&market.store, &filter, order, page).await?;
    Ok(rows.into_iter().map(GpuView::from).collect())
}

pub async fn details(market: &Market, gpu_id: &GpuId) -> Result<GpuView> {
    let gpu = find(market, gpu_id).await?;
    let booked = gpu.status == GpuStatus::Booked;
    let mut view = GpuView::from(gpu);
    if booked {
        view.current_booking = bookings::active_for_gpu(&market.store, gpu_id)
            .await?
            .as_ref()
            .map(CurrentBooking::from);
    }
    Ok(view)
}
