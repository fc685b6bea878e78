//! The older coordinator's marketplace views (offers, stats, bids), computed from the live registry:
//! every GPU in the catalogue is an offer of one unit of capacity at its current price.

use serde::Serialize;
use utoipa::ToSchema;

use super::registry::parse_price;
use super::time::{now_micros, rfc3339};
use super::{Market, Money, Principal, ids};
use crate::config::Role;
use crate::error::{Error, Result};
use crate::store::bids::{self, BidRow};
use crate::store::gpus::{self, GpuQuery, GpuRow};

const MAX_OFFERS: i64 = 10_000;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OfferView {
    pub id: String,
    pub provider: String,
    pub capacity: i64,
    #[schema(value_type = f64)]
    pub price: Money,
    pub sla: String,
    /// `open` (available), `reserved` (booked) or `offline`.
    pub status: String,
    pub created_at: String,
    pub gpu_model: String,
    pub gpu_memory_gb: f64,
    pub gpu_count: i64,
    pub cuda_version: Option<String>,
    #[schema(value_type = f64)]
    pub price_per_hour: Money,
    pub region: Option<String>,
    pub attributes: serde_json::Value,
}

impl From<GpuRow> for OfferView {
    fn from(gpu: GpuRow) -> Self {
        let status = match gpu.status.as_str() {
            "available" => "open",
            "booked" => "reserved",
            other => other,
        };
        let capabilities: Vec<String> = serde_json::from_str(&gpu.capabilities).unwrap_or_default();
        Self {
            status: status.to_owned(),
            attributes: serde_json::json!({
                "gpu_id": gpu.id,
                "capabilities": capabilities,
                "compute_capability": gpu.compute_capability,
                "cuda_cores": gpu.cuda_cores,
            }),
            id: gpu.id,
            provider: gpu.miner_id,
            capacity: 1,
            price: Money::from_micros(gpu.current_price_micro),
            sla: "best-effort".to_owned(),
            created_at: rfc3339(gpu.created_at),
            gpu_model: gpu.model,
            gpu_memory_gb: gpu.memory_gb,
            gpu_count: 1,
            cuda_version: gpu.cuda_version,
            price_per_hour: Money::from_micros(gpu.price_micro),
            region: gpu.region,
        }
    }
}

pub async fn offers(
    market: &Market,
    miner_id: Option<String>,
    limit: i64,
    offset: i64,
) -> Result<Vec<OfferView>> {
    let query = GpuQuery {
        miner_id: miner_id.filter(|m| !m.is_empty()),
        order_by: "created_at ASC, id ASC",
        limit: limit.min(MAX_OFFERS),
        offset,
        ..GpuQuery::default()
    };
    Ok(gpus::list(&market.store, &query)
        .await?
        .into_iter()
        .map(OfferView::from)
        .collect())
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarketStats {
    pub total_offers: i64,
    /// GPUs available to book now.
    pub open_capacity: i64,
    /// Average current price of the available GPUs (of all GPUs when none is available).
    #[schema(value_type = f64)]
    pub average_price: Money,
    pub active_bids: i64,
}

pub async fn stats(market: &Market) -> Result<MarketStats> {
    let counts = gpus::status_counts(&market.store, None).await?;
    let rows = gpus::list(
        &market.store,
        &GpuQuery {
            order_by: "id ASC",
            limit: MAX_OFFERS,
            ..GpuQuery::default()
        },
    )
    .await?;
    let available: Vec<i64> = rows
        .iter()
        .filter(|g| g.status == "available")
        .map(|g| g.current_price_micro)
        .collect();
    let prices = if available.is_empty() {
        rows.iter().map(|g| g.current_price_micro).collect()
    } else {
        available
    };
    let average = if prices.is_empty() {
        0
    } else {
        let sum: i128 = prices.iter().map(|&p| i128::from(p)).sum();
        let n = prices.len() as i128;
        ((sum + n / 2) / n) as i64
    };
    Ok(MarketStats {
        total_offers: counts.total,
        open_capacity: counts.available,
        average_price: Money::from_micros(average),
        active_bids: bids::count_pending(&market.store).await?,
    })
}

#[derive(Debug, Clone)]
pub struct NewBid {
    pub provider: Option<String>,
    pub gpu_model: Option<String>,
    pub capacity: i64,
    pub price: f64,
    pub notes: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BidAccepted {
    pub id: String,
}

pub async fn place_bid(market: &Market, caller: &Principal, bid: NewBid) -> Result<BidAccepted> {
    if !caller.has(Role::Client) && !caller.is_admin() {
        return Err(Error::forbidden("placing a bid needs the client role"));
    }
    if !(1..=10_000).contains(&bid.capacity) {
        return Err(Error::bad_request("capacity must be between 1 and 10000"));
    }
    let price = parse_price("price", bid.price)?;
    if bid
        .notes
        .as_ref()
        .is_some_and(|n| n.chars().count() > 2_000)
    {
        return Err(Error::bad_request("notes must be at most 2000 characters"));
    }
    let row = BidRow {
        id: ids::new_id("bid"),
        client_id: caller.id.clone(),
        provider: bid.provider,
        gpu_model: bid.gpu_model,
        capacity: bid.capacity,
        price_micro: price.micros(),
        notes: bid.notes,
        status: "pending".to_owned(),
        created_at: now_micros(),
    };
    bids::insert(&market.store, &row).await?;
    Ok(BidAccepted { id: row.id })
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SyncReport {
    pub status: &'static str,
    pub offers: i64,
    pub open_capacity: i64,
}

/// Recomputes every current price now, so the offers reflect the registry and pricing policy exactly.
pub async fn sync(market: &Market, caller: &Principal) -> Result<SyncReport> {
    caller.require(Role::Admin)?;
    super::pricing::refresh_all(market).await?;
    let counts = gpus::status_counts(&market.store, None).await?;
    Ok(SyncReport {
        status: "synced",
        offers: counts.total,
        open_capacity: counts.available,
    })
}
