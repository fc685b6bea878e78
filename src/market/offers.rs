//! The older coordinator's marketplace views (offers, stats, bids), computed from the live registry:
//! every GPU in the catalogue is an offer of one unit of capacity at its current price.

use serde::Serialize;
use utoipa::ToSchema;

use super::registry::parse_price;
use super::{Market, Principal};
use crate::config::Role;
use crate::domain::{BidId, BidStatus, Gpu, GpuId, GpuStatus, Money, PrincipalId, Timestamp};
use crate::error::{Error, Result};
use crate::store::bids::{self, NewBid};
use crate::store::{GpuFilter, GpuOrder, Page, gpus};

const MAX_OFFERS: i64 = 10_000;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OfferView {
    pub id: GpuId,
    pub provider: PrincipalId,
    pub capacity: i64,
    pub price: Money,
    pub sla: String,
    /// `open` (available), `reserved` (booked) or `offline`.
    pub status: &'static str,
    pub created_at: Timestamp,
    pub gpu_model: String,
    pub gpu_memory_gb: f64,
    pub gpu_count: i64,
    pub cuda_version: Option<String>,
    pub price_per_hour: Money,
    pub region: Option<String>,
    pub attributes: serde_json::Value,
}

impl From<Gpu> for OfferView {
    fn from(gpu: Gpu) -> Self {
        let status = match gpu.status {
            GpuStatus::Available => "open",
            GpuStatus::Booked => "reserved",
            GpuStatus::Offline => "offline",
        };
        Self {
            status,
            attributes: serde_json::json!({
                "gpu_id": gpu.id,
                "capabilities": gpu.capabilities.0,
                "compute_capability": gpu.compute_capability,
                "cuda_cores": gpu.cuda_cores,
            }),
            id: gpu.id,
            provider: gpu.miner_id,
            capacity: 1,
            price: gpu.current_price,
            sla: "best-effort".to_owned(),
            created_at: gpu.created_at,
            gpu_model: gpu.model,
            gpu_memory_gb: gpu.memory_gb,
            gpu_count: 1,
            cuda_version: gpu.cuda_version,
            price_per_hour: gpu.asking_price,
            region: gpu.region,
        }
    }
}

pub async fn offers(
    market: &Market,
    miner_id: Option<String>,
    page: Page,
) -> Result<Vec<OfferView>> {
    let filter = GpuFilter {
        miner_id: miner_id.filter(|m| !m.is_empty()).map(PrincipalId::from),
        ..GpuFilter::default()
    };
    let page = Page {
        limit: page.limit.min(MAX_OFFERS),
        ..page
    };
    Ok(
        gpus::list(&market.store, &filter, GpuOrder::CreatedAsc, page)
            .await?
            .into_iter()
            .map(OfferView::from)
            .collect(),
    )
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarketStats {
    pub total_offers: i64,
    /// GPUs available to book now.
    pub open_capacity: i64,
    /// Average current price of the available GPUs (of all GPUs when none is available).
    pub average_price: Money,
    /// Open (pending) bids: cancelled ones do not count.
    pub active_bids: i64,
}

pub async fn stats(market: &Market) -> Result<MarketStats> {
    let counts = gpus::status_counts(&market.store, None).await?;
    let rows = gpus::list(
        &market.store,
        &GpuFilter::default(),
        GpuOrder::Id,
        Page::first(MAX_OFFERS),
    )
    .await?;
    let available: Vec<Money> = rows
        .iter()
        .filter(|g| g.status == GpuStatus::Available)
        .map(|g| g.current_price)
        .collect();
    let average_price = if available.is_empty() {
        Money::average(rows.iter().map(|g| g.current_price))
    } else {
        Money::average(available)
    };
    Ok(MarketStats {
        total_offers: counts.total,
        open_capacity: counts.available,
        average_price,
        active_bids: bids::count_pending(&market.store).await?,
    })
}

/// A bid as the API parsed it.
#[derive(Debug, Clone)]
pub struct BidRequest {
    pub provider: Option<String>,
    pub gpu_model: Option<String>,
    pub capacity: i64,
    pub price: f64,
    pub notes: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BidAccepted {
    pub id: BidId,
}

pub async fn place_bid(
    market: &Market,
    caller: &Principal,
    bid: BidRequest,
) -> Result<BidAccepted> {
    caller.require(Role::Client, "placing a bid")?;
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
    let new = NewBid {
        id: BidId::generate(),
        client_id: caller.id.clone(),
        provider: bid.provider,
        gpu_model: bid.gpu_model,
        capacity: bid.capacity,
        price,
        notes: bid.notes,
        created_at: Timestamp::now(),
    };
    bids::insert(&market.store, &new).await?;
    Ok(BidAccepted { id: new.id })
}

/// A bid as its owner (or an admin) sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BidView {
    pub id: BidId,
    pub client_id: PrincipalId,
    pub provider: Option<String>,
    pub gpu_model: Option<String>,
    pub capacity: i64,
    pub price: Money,
    pub notes: Option<String>,
    /// `pending` (open), `accepted` or `cancelled`.
    pub status: BidStatus,
    pub created_at: Timestamp,
}

impl From<bids::Bid> for BidView {
    fn from(bid: bids::Bid) -> Self {
        Self {
            id: bid.id,
            client_id: bid.client_id,
            provider: bid.provider,
            gpu_model: bid.gpu_model,
            capacity: bid.capacity,
            price: bid.price,
            notes: bid.notes,
            status: bid.status,
            created_at: bid.created_at,
        }
    }
}

/// Bids newest first: the caller's own, or everyone's for an admin.
pub async fn list_bids(
    market: &Market,
    caller: &Principal,
    status: Option<&str>,
    page: Page,
) -> Result<Vec<BidView>> {
    let status = status.map(str::parse::<BidStatus>).transpose()?;
    let owner = (!caller.is_admin()).then_some(&caller.id);
    let rows = bids::list(&market.store, owner, status, page).await?;
    Ok(rows.into_iter().map(BidView::from).collect())
}

/// Withdraws an open bid: its client or an admin (403 otherwise); 404 unknown, 409 not open.
pub async fn cancel_bid(market: &Market, caller: &Principal, id: &BidId) -> Result<BidView> {
    let bid = bids::get(&market.store, id)
        .await?
        .ok_or_else(|| Error::not_found(format!("bid {id} not found")))?;
    if bid.client_id != caller.id && !caller.is_admin() {
        return Err(Error::forbidden(
            "only the bid's client or an admin can cancel it",
        ));
    }
    if !bids::cancel(&market.store, id).await? {
        let status = bids::get(&market.store, id)
            .await?
            .map_or(bid.status, |b| b.status);
        return Err(Error::conflict(format!(
            "bid {id} is {status} and cannot be cancelled"
        )));
    }
    tracing::info!(bid_id = %id, by = %caller.id, "bid cancelled");
    Ok(BidView {
        status: BidStatus::Cancelled,
        ..BidView::from(bid)
    })
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SyncReport {
    pub status: &'static str,
    pub offers: i64,
    pub open_capacity: i64,
}

/// Recomputes every current price now, so the offers reflect the registry and pricing policy exactly.
pub async fn sync(market: &Market, caller: &Principal) -> Result<SyncReport> {
    caller.require_admin()?;
    super::price_refresh::refresh_all(market).await?;
    let counts = gpus::status_counts(&market.store, None).await?;
    Ok(SyncReport {
        status: "synced",
        offers: counts.total,
        open_capacity: counts.available,
    })
}
