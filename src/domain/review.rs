//! A review of a GPU, with what moderation made of it.

use super::{DecisionId, GpuId, PrincipalId, ReviewId, ReviewStatus, Timestamp};

/// A rating from 1 to 5; constructing one is the only validation the domain needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rating(u8);

impl Rating {
    pub fn new(value: i64) -> Option<Self> {
        (1..=5).contains(&value).then_some(Self(value as u8))
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<i64> for Rating {
    type Error = String;

    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Self::new(value).ok_or_else(|| format!("rating must be 1 to 5, found {value}"))
    }
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Review {
    pub id: ReviewId,
    pub gpu_id: GpuId,
    pub reviewer_id: PrincipalId,
    #[sqlx(try_from = "i64")]
    pub rating: Rating,
    pub comment: Option<String>,
    #[sqlx(try_from = "String")]
    pub status: ReviewStatus,
    pub moderation_reason: String,
    pub policy: String,
    pub created_at: Timestamp,
    pub decided_at: Option<Timestamp>,
    /// The moderation decision's decision log entry.
    pub decision_id: Option<DecisionId>,
}
