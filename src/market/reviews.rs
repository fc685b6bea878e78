//! Reviews: clients rate GPUs, the moderation policy decides what is published, admins decide what it
//! flagged.

use serde::Serialize;
use utoipa::ToSchema;

use super::registry::find;
use super::{Market, Principal};
use crate::config::Role;
use crate::domain::{
    DecisionId, GpuId, PrincipalId, Rating, Review, ReviewId, ReviewStatus, Timestamp,
};
use crate::error::{Error, Result};
use crate::policy::{ModerationRequest, ModerationVerdict};
use crate::store::{Page, bookings, reviews};

const DAY_SECONDS: i64 = 86_400;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReviewView {
    pub review_id: ReviewId,
    pub rating: u8,
    pub comment: Option<String>,
    pub user: PrincipalId,
    pub date: Timestamp,
}

impl From<Review> for ReviewView {
    fn from(r: Review) -> Self {
        Self {
            review_id: r.id,
            rating: r.rating.get(),
            comment: r.comment,
            user: r.reviewer_id,
            date: r.created_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GpuReviews {
    pub gpu_id: GpuId,
    pub average_rating: f64,
    pub total_reviews: i64,
    pub reviews: Vec<ReviewView>,
}

pub async fn list(market: &Market, gpu_id: &GpuId, page: Page) -> Result<GpuReviews> {
    let gpu = find(market, gpu_id).await?;
    let rows = reviews::accepted_for_gpu(&market.store, gpu_id, page).await?;
    Ok(GpuReviews {
        average_rating: gpu.average_rating(),
        gpu_id: gpu.id,
        total_reviews: gpu.rating_count,
        reviews: rows.into_iter().map(ReviewView::from).collect(),
    })
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Moderation {
    /// accept or flag (a rejected review is not stored).
    pub decision: &'static str,
    pub reason: String,
    pub policy: String,
    pub fallback: bool,
    /// The decision log entry behind this verdict; absent when decisions are not logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<DecisionId>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReviewAdded {
    /// `review_added` or `review_flagged`.
    pub status: &'static str,
    pub gpu_id: GpuId,
    pub review_id: ReviewId,
    pub average_rating: f64,
    pub total_reviews: i64,
    pub moderation: Moderation,
}

pub async fn add(
    market: &Market,
    caller: &Principal,
    gpu_id: &GpuId,
    rating: Rating,
    comment: Option<String>,
) -> Result<ReviewAdded> {
    caller.require(Role::Client, "reviewing a GPU")?;
    let limit = market.config.reviews.max_comment_chars;
    if comment.as_ref().is_some_and(|c| c.chars().count() > limit) {
        return Err(Error::bad_request(format!(
            "comment must be at most {limit} characters"
        )));
    }
    let gpu = find(market, gpu_id).await?;
    let now = Timestamp::now();
    let used = bookings::client_has_used_gpu(&market.store, &caller.id, gpu_id).await?;
    let today =
        reviews::written_since(&market.store, &caller.id, now.minus_seconds(DAY_SECONDS)).await?;
    let decision = market
        .policies
        .moderate(ModerationRequest {
            gpu_id: gpu.id.to_string(),
            gpu_model: gpu.model.clone(),
            rating: rating.get(),
            comment: comment.clone(),
            reviewer_has_completed_booking: used,
            reviewer_reviews_today: u32::try_from(today).unwrap_or(u32::MAX),
            gpu_average_rating: gpu.average_rating(),
            gpu_total_reviews: u32::try_from(gpu.rating_count).unwrap_or(u32::MAX),
            now_unix: now.unix_seconds(),
        })
        .await;
    if decision.source.fallback {
        market.metrics.moderation_fallbacks.inc();
    }
    let (status, stored) = match decision.verdict {
        ModerationVerdict::Reject => {
            market.metrics.reviews(ReviewStatus::Rejected.as_str());
            let reason = if decision.reason.is_empty() {
                "rejected by moderation".into()
            } else {
                decision.reason
            };
            let logged = decision
                .source
                .decision_id
                .map(|id| format!(" (decision {id})"))
                .unwrap_or_default();
            return Err(Error::bad_request(format!(
                "review rejected: {reason}{logged}"
            )));
        }
        ModerationVerdict::Accept => ("review_added", ReviewStatus::Accepted),
        ModerationVerdict::Flag => ("review_flagged", ReviewStatus::Flagged),
    };
    let review = Review {
        id: ReviewId::generate(),
        gpu_id: gpu.id.clone(),
        reviewer_id: caller.id.clone(),
        rating,
        comment,
        status: stored,
        moderation_reason: decision.reason.clone(),
        policy: decision.source.policy.clone(),
        created_at: now,
        decided_at: (stored == ReviewStatus::Accepted).then_some(now),
        decision_id: decision.source.decision_id.clone(),
    };
    reviews::insert(&market.store, &review).await?;
    market.catalogue_changed();
    market.metrics.reviews(stored.as_str());
    let gpu = find(market, gpu_id).await?;
    Ok(ReviewAdded {
        status,
        average_rating: gpu.average_rating(),
        gpu_id: gpu.id,
        review_id: review.id,
        total_reviews: gpu.rating_count,
        moderation: Moderation {
            decision: decision.verdict.as_str(),
            reason: decision.reason,
            policy: decision.source.policy,
            fallback: decision.source.fallback,
            decision_id: decision.source.decision_id,
        },
    })
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AdminReviewView {
    pub review_id: ReviewId,
    pub gpu_id: GpuId,
    pub rating: u8,
    pub comment: Option<String>,
    pub user: PrincipalId,
    pub status: ReviewStatus,
    pub moderation_reason: String,
    pub policy: String,
    pub decision_id: Option<DecisionId>,
    pub date: Timestamp,
}

impl From<Review> for AdminReviewView {
    fn from(r: Review) -> Self {
        Self {
            review_id: r.id,
            gpu_id: r.gpu_id,
            rating: r.rating.get(),
            comment: r.comment,
            user: r.reviewer_id,
            status: r.status,
            moderation_reason: r.moderation_reason,
            policy: r.policy,
            decision_id: r.decision_id,
            date: r.created_at,
        }
    }
}

/// Reviews in one moderation state (any case of its name), newest first.
pub async fn by_status(market: &Market, status: &str, page: Page) -> Result<Vec<AdminReviewView>> {
    let status: ReviewStatus = status.parse()?;
    let rows = reviews::by_status(&market.store, status, page).await?;
    Ok(rows.into_iter().map(AdminReviewView::from).collect())
}

/// An admin approves (counted from now on) or rejects a flagged review.
pub async fn decide(
    market: &Market,
    review_id: &ReviewId,
    approve: bool,
) -> Result<AdminReviewView> {
    let not_found = || Error::not_found(format!("review {review_id} not found"));
    let review = reviews::get(&market.store, review_id)
        .await?
        .ok_or_else(not_found)?;
    let decision = if approve {
        ReviewStatus::Accepted
    } else {
        ReviewStatus::Rejected
    };
    if !reviews::decide_flagged(&market.store, review_id, decision, Timestamp::now()).await? {
        return Err(Error::conflict(format!(
            "review {review_id} is {} and not awaiting a decision",
            review.status
        )));
    }
    market.catalogue_changed();
    market.metrics.reviews(decision.as_str());
    let decided = reviews::get(&market.store, review_id)
        .await?
        .ok_or_else(not_found)?;
    Ok(AdminReviewView::from(decided))
}
