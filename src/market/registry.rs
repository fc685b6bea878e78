//! The GPU registry: miners register GPUs, remove them, and heartbeats keep them online.

use serde::Serialize;
use utoipa::ToSchema;

use super::model_pricing::recommended_price;
use super::quote::quote_for;
use super::{Market, Principal};
use crate::config::Role;
use crate::domain::{
    Capabilities, Gpu, GpuId, GpuStatus, Money, PrincipalId, Timestamp, model_key,
};
use crate::error::{Error, Result};
use crate::store::gpus;

pub const MAX_PRICE_UNITS: f64 = 10_000.0;
/// One micro-AITBC, the smallest amount money can hold.
pub const MIN_PRICE_UNITS: f64 = 0.000_001;
pub const MAX_MEMORY_GB: f64 = 4_096.0;
pub const MAX_MODEL_CHARS: usize = 128;
const MAX_TEXT_CHARS: usize = 2_000;
const MAX_CAPABILITIES: usize = 64;

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
    pub gpu_id: GpuId,
    pub status: &'static str,
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

/// Validates an asking price: at least one micro-AITBC and at most 10 000 AITBC per hour.
pub fn parse_price(field: &str, units: f64) -> Result<Money> {
    match Money::from_units(units) {
        Some(price) if (MIN_PRICE_UNITS..=MAX_PRICE_UNITS).contains(&units) => Ok(price),
        _ => Err(Error::bad_request(format!(
            "{field} must be greater than 0 and at most {MAX_PRICE_UNITS}"
        ))),
    }
}

/// A model name: 1-128 characters, not only spaces.
pub fn check_model_name(field: &str, model: &str) -> Result<()> {
    let model = model.trim();
    if model.is_empty() || model.chars().count() > MAX_MODEL_CHARS {
        return Err(Error::bad_request(format!(
            "{field} must be 1 to {MAX_MODEL_CHARS} characters"
        )));
    }
    Ok(())
}

/// Memory in GB: 0 to 4096.
pub fn check_memory(field: &str, memory_gb: f64) -> Result<()> {
    if !memory_gb.is_finite() || !(0.0..=MAX_MEMORY_GB).contains(&memory_gb) {
        return Err(Error::bad_request(format!(
            "{field} must be between 0 and {MAX_MEMORY_GB}"
        )));
    }
    Ok(())
}

fn check_registration(registration: &Registration) -> Result<()> {
    check_model_name("name", &registration.model)?;
    check_memory("memory_gb", registration.memory_gb.unwrap_or(0.0))?;
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
    Ok(())
}

pub async fn register(
    market: &Market,
    caller: &Principal,
    registration: Registration,
) -> Result<Registered> {
    caller.require(Role::Miner, "registering a GPU")?;
    check_registration(&registration)?;
    // The aitbc client sends the literal `default` when its user named no miner: for a miner registering
    // its own GPU that means itself; an admin registers for whoever is named.
    let miner_id = match registration.miner_id.filter(|id| !id.trim().is_empty()) {
        Some(id) if caller.is_admin() => PrincipalId::from(id),
        Some(id) if caller.id == *id.as_str() || id == "default" => caller.id.clone(),
        Some(_) => {
            return Err(Error::forbidden(
                "only an admin can register a GPU for another miner",
            ));
        }
        None => caller.id.clone(),
    };
    let model = registration.model.trim().to_owned();
    let key = model_key(&model);
    let price = match registration.price_per_hour {
        Some(units) => parse_price("price_per_hour", units)?,
        None => recommended_price(market, &key).await?.ok_or_else(|| {
            Error::bad_request(format!(
                "price_per_hour is missing and the market has no {model} GPUs to recommend a price from"
            ))
        })?,
    };
    let now = Timestamp::now();
    let mut gpu = Gpu {
        id: GpuId::generate(),
        miner_id,
        model_key: key.clone(),
        model,
        memory_gb: registration.memory_gb.unwrap_or(0.0),
        cuda_version: registration.cuda_version,
        cuda_cores: registration.cuda_cores,
        compute_capability: registration.compute_capability,
        region: registration.region.filter(|r| !r.trim().is_empty()),
        description: registration.description,
        capabilities: Capabilities(registration.capabilities),
        asking_price: price,
        current_price: price,
        status: GpuStatus::Available,
        total_bookings: 0,
        rating_sum: 0,
        rating_count: 0,
        last_heartbeat: None,
        created_at: now,
    };
    gpu.current_price = quote_for(market, &gpu, 1.0, now).await?.price;
    gpus::insert(&market.store, &gpu).await?;
    market.model_changed(&key);
    tracing::info!(gpu_id = %gpu.id, miner_id = %gpu.miner_id, model = %gpu.model, price = %price, "GPU registered");
    Ok(Registered {
        message: format!("GPU {} registered", gpu.model),
        gpu_id: gpu.id,
        status: "registered",
        price_per_hour: price,
    })
}

pub async fn find(market: &Market, gpu_id: &GpuId) -> Result<Gpu> {
    gpus::get(&market.store, gpu_id)
        .await?
        .ok_or_else(|| Error::not_found(format!("GPU {gpu_id} not found")))
}

fn require_owner(caller: &Principal, gpu: &Gpu, action: &str) -> Result<()> {
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
    pub gpu_id: GpuId,
    pub status: &'static str,
    pub message: String,
}

pub async fn remove(market: &Market, caller: &Principal, gpu_id: &GpuId) -> Result<Removed> {
    let gpu = find(market, gpu_id).await?;
    require_owner(caller, &gpu, "delete")?;
    if !gpus::soft_delete(&market.store, gpu_id, Timestamp::now()).await? {
        // Gone between the two statements, or booked: tell which.
        find(market, gpu_id).await?;
        return Err(Error::conflict(format!(
            "GPU {gpu_id} is booked; release it before deleting it"
        )));
    }
    market.model_changed(&gpu.model_key);
    tracing::info!(%gpu_id, by = %caller.id, "GPU deleted");
    Ok(Removed {
        gpu_id: gpu_id.clone(),
        status: "deleted",
        message: format!("GPU {gpu_id} deleted"),
    })
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HeartbeatAck {
    pub gpu_id: GpuId,
    pub status: GpuStatus,
    pub last_heartbeat: Timestamp,
}

pub async fn heartbeat(
    market: &Market,
    caller: &Principal,
    gpu_id: &GpuId,
) -> Result<HeartbeatAck> {
    let gpu = find(market, gpu_id).await?;
    require_owner(caller, &gpu, "send heartbeats for")?;
    let now = Timestamp::now();
    let status = gpus::heartbeat(&market.store, gpu_id, now)
        .await?
        .ok_or_else(|| Error::not_found(format!("GPU {gpu_id} not found")))?;
    market.catalogue_changed();
    if gpu.status == GpuStatus::Offline && status == GpuStatus::Available {
        tracing::info!(%gpu_id, "GPU back online");
        market.model_changed(&gpu.model_key);
    }
    Ok(HeartbeatAck {
        gpu_id: gpu_id.clone(),
        status,
        last_heartbeat: now,
    })
}
