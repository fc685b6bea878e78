//! The slot kinds: the [`SlotKind`] trait and one small implementation per slot.

mod moderation;
mod pricing;
mod slot_kind;
mod timeout;

pub use moderation::ModerationSlot;
pub use pricing::PricingSlot;
pub use slot_kind::{SlotKind, batch_answers, validated};
pub use timeout::TimeoutSlot;
