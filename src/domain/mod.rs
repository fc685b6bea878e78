//! The marketplace's typed values, shared by every layer: money, time, durations, ids and statuses.
//!
//! Each type is parsed once at an edge (JSON, query string, database row) and trusted from then on:
//! inner code never re-checks what a type already guarantees.

pub mod booking;
pub mod decision;
pub mod duration;
pub mod gpu;
pub mod ids;
pub mod model_name;
pub mod money;
pub mod price_history;
pub mod review;
pub mod status;
pub mod time;

pub use booking::{Booking, PricedBy};
pub use decision::{DecisionEntry, DecisionRole, Outcome};
pub use duration::{BookingDuration, DurationError};
pub use gpu::{Capabilities, Gpu, average_rating};
pub use ids::{BidId, BookingId, DecisionId, GpuId, OrderId, PrincipalId, ReviewId};
pub use model_name::{ModelFilter, model_key};
pub use money::Money;
pub use price_history::{ModelSample, PricePoint, PriceState};
pub use review::{Rating, Review};
pub use status::{BidStatus, BookingStatus, GpuStatus, ReviewStatus, StatusCounts, UnknownStatus};
pub use time::Timestamp;
