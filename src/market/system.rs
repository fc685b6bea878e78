//! What the operator endpoints ask of the market: is the database reachable (`/health`), how many GPUs
//! per status and how many active bookings (`/metrics`), and the catalogue generation that the API's
//! response cache compares so that this replica's own writes show at once.

use super::Market;
use crate::error::Result;
use crate::store::{WriteStats, bookings, gpus};

/// GPUs in the catalogue by status, counted in the shared database so every replica reports the same.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GpuCounts {
    pub available: i64,
    pub booked: i64,
    pub offline: i64,
}

impl GpuCounts {
    /// The counts with the status names the API and the metrics use.
    pub fn by_status(&self) -> [(&'static str, i64); 3] {
        [
            ("available", self.available),
            ("booked", self.booked),
            ("offline", self.offline),
        ]
    }
}

/// A cheap round trip to the database.
pub async fn ping(market: &Market) -> Result<()> {
    Ok(market
        .store
        .ping()
        .await
        .map_err(crate::store::StoreError::from)?)
}

pub async fn gpu_counts(market: &Market) -> Result<GpuCounts> {
    let counts = gpus::status_counts(&market.store, None).await?;
    Ok(GpuCounts {
        available: counts.available,
        booked: counts.booked,
        offline: counts.offline,
    })
}

pub async fn active_bookings(market: &Market) -> Result<i64> {
    Ok(bookings::count_active(&market.store).await?)
}

/// This replica's SQLite group commits so far (`None` on PostgreSQL).
pub fn write_stats(market: &Market) -> Option<WriteStats> {
    market.store.write_stats()
}

/// This replica's SQLite reads that ran past the calling thread's budget (`None` on PostgreSQL).
pub fn long_reads(market: &Market) -> Option<u64> {
    market.store.long_reads()
}

/// Changes whenever this replica commits a write the catalogue shows. Writes by other replicas do not
/// change it; caches bound their staleness with a TTL.
pub fn catalogue_generation(market: &Market) -> u64 {
    market.catalogue_generation()
}
