//! Reviews: ratings with comments, moderated by the review-moderation policy, aggregated per GPU.

use serde::Serialize;
use utoipa::ToSchema;

use super::registry::find;
use super::time::{MICROS_PER_SECOND, now_micros, rfc3339, unix_seconds};
use super::{Market, Principal, ids};
use crate::config::Role;
use crate::error::{Error, Result};
use crate::policy::{ModerationRequest, ModerationVerdict};
use crate::store::bookings;
use crate::store::reviews::{self, ReviewRow};

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

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReviewView {
    pub review_id: String,
    pub rating: i64,
    pub comment: Option<String>,
    pub user: String,
    pub date: String,
}

impl From<ReviewRow> for ReviewView {
    fn from(r: ReviewRow) -> Self {
        Self {
            review_id: r.id,
            rating: r.rating,
            comment: r.comment,
            user: r.reviewer_id,
            date: rfc3339(r.created_at),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GpuReviews {
    pub gpu_id: String,
    pub average_rating: f64,
    pub total_reviews: i64,
    pub reviews: Vec<ReviewView>,
}

pub async fn list(market: &Market, gpu_id: &str, limit: i64, offset: i64) -> Result<GpuReviews> {
    let gpu = find(market, gpu_id).await?;
    let rows = reviews::accepted_for_gpu(&market.store, gpu_id, limit, offset).await?;
    Ok(GpuReviews {
        gpu_id: gpu.id,
        average_rating: average(gpu.rating_sum, gpu.rating_count),
        total_reviews: gpu.rating_count,
        reviews: rows.into_iter().map(ReviewView::from).collect(),
    })
}

fn average(sum: i64, count: i64) -> f64 {
    if count == 0 {
        0.0
    } else {
        sum as f64 / count as f64
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Moderation {
    pub decision: String,
    pub reason: String,
    pub policy: String,
    pub fallback: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReviewAdded {
    /// `review_added` or `review_flagged`.
    pub status: &'static str,
    pub gpu_id: String,
    pub review_id: String,
    pub average_rating: f64,
    pub total_reviews: i64,
    pub moderation: Moderation,
}

pub async fn add(
    market: &Market,
    caller: &Principal,
    gpu_id: &str,
    rating: Rating,
    comment: Option<String>,
) -> Result<ReviewAdded> {
    if !caller.has(Role::Client) && !caller.is_admin() {
        return Err(Error::forbidden("reviewing a GPU needs the client role"));
    }
    let limit = market.config.reviews.max_comment_chars;
    if comment.as_ref().is_some_and(|c| c.chars().count() > limit) {
        return Err(Error::bad_request(format!(
            "comment must be at most {limit} characters"
        )));
    }
    let gpu = find(market, gpu_id).await?;
    let now = now_micros();
    let used = bookings::client_has_used_gpu(&market.store, &caller.id, gpu_id).await?;
    let today =
        reviews::written_since(&market.store, &caller.id, now - 86_400 * MICROS_PER_SECOND).await?;
    let decision = market
        .policies
        .moderate(ModerationRequest {
            gpu_id: gpu.id.clone(),
            gpu_model: gpu.model.clone(),
            rating: rating.get(),
            comment: comment.clone(),
            reviewer_has_completed_booking: used,
            reviewer_reviews_today: u32::try_from(today).unwrap_or(u32::MAX),
            gpu_average_rating: average(gpu.rating_sum, gpu.rating_count),
            gpu_total_reviews: u32::try_from(gpu.rating_count).unwrap_or(u32::MAX),
            now_unix: unix_seconds(now),
        })
        .await;
    if decision.source.fallback {
        market.metrics.moderation_fallbacks.inc();
    }
    let (status, stored, verdict) = match decision.verdict {
        ModerationVerdict::Reject => {
            market.metrics.reviews("rejected");
            let reason = if decision.reason.is_empty() {
                "rejected by moderation".into()
            } else {
                decision.reason
            };
            return Err(Error::bad_request(format!("review rejected: {reason}")));
        }
        ModerationVerdict::Accept => ("review_added", "accepted", "accept"),
        ModerationVerdict::Flag => ("review_flagged", "flagged", "flag"),
    };
    let review = ReviewRow {
        id: ids::new_id("rv"),
        gpu_id: gpu.id.clone(),
        reviewer_id: caller.id.clone(),
        rating: i64::from(rating.get()),
        comment,
        status: stored.to_owned(),
        moderation_reason: decision.reason.clone(),
        policy: decision.source.policy.clone(),
        created_at: now,
        decided_at: (stored == "accepted").then_some(now),
    };
    reviews::insert(&market.store, &review).await?;
    market.metrics.reviews(stored);
    let gpu = find(market, gpu_id).await?;
    Ok(ReviewAdded {
        status,
        gpu_id: gpu.id,
        review_id: review.id,
        average_rating: average(gpu.rating_sum, gpu.rating_count),
        total_reviews: gpu.rating_count,
        moderation: Moderation {
            decision: verdict.to_owned(),
            reason: decision.reason,
            policy: decision.source.policy,
            fallback: decision.source.fallback,
        },
    })
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AdminReviewView {
    pub review_id: String,
    pub gpu_id: String,
    pub rating: i64,
    pub comment: Option<String>,
    pub user: String,
    pub status: String,
    pub moderation_reason: String,
    pub policy: String,
    pub date: String,
}

impl From<ReviewRow> for AdminReviewView {
    fn from(r: ReviewRow) -> Self {
        Self {
            review_id: r.id,
            gpu_id: r.gpu_id,
            rating: r.rating,
            comment: r.comment,
            user: r.reviewer_id,
            status: r.status,
            moderation_reason: r.moderation_reason,
            policy: r.policy,
            date: rfc3339(r.created_at),
        }
    }
}

pub async fn by_status(
    market: &Market,
    status: &str,
    limit: i64,
    offset: i64,
) -> Result<Vec<AdminReviewView>> {
    let status = ["accepted", "flagged", "rejected"]
        .into_iter()
        .find(|s| s.eq_ignore_ascii_case(status))
        .ok_or_else(|| Error::bad_request("status must be one of accepted, flagged, rejected"))?;
    let rows = reviews::by_status(&market.store, status, limit, offset).await?;
    Ok(rows.into_iter().map(AdminReviewView::from).collect())
}

/// An admin approves (counted from now on) or rejects a flagged review.
pub async fn decide(market: &Market, review_id: &str, approve: bool) -> Result<AdminReviewView> {
    let not_found = || Error::not_found(format!("review {review_id} not found"));
    let review = reviews::get(&market.store, review_id)
        .await?
        .ok_or_else(not_found)?;
    if !reviews::decide_flagged(&market.store, review_id, approve, now_micros()).await? {
        return Err(Error::conflict(format!(
            "review {review_id} is {} and not awaiting a decision",
            review.status
        )));
    }
    market
        .metrics
        .reviews(if approve { "accepted" } else { "rejected" });
    let decided = reviews::get(&market.store, review_id)
        .await?
        .ok_or_else(not_found)?;
    Ok(AdminReviewView::from(decided))
}
