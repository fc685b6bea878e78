//! `review-moderation-basic`: the default review-moderation policy.
//!
//! Rejects obvious spam (no rating, more reviews today than allowed, too many links) and comments over the
//! length limit; flags reviews from someone without a completed booking on the GPU and comments that
//! contain a word from the operator's list; accepts the rest.
//!
//! Configuration keys (optional): `max_comment_chars` (2000), `max_reviews_per_day` (20),
//! `max_links` (2), `flag_words` (comma-separated, case-insensitive; default "scam,fraud,stolen").

wit_bindgen::generate!({ path: "../wit", world: "review-moderation-policy" });

use exports::gpu_market::policy::review_moderation::{
    Guest, ModerationDecision, ReviewFacts, Verdict,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub max_comment_chars: usize,
    pub max_reviews_per_day: u32,
    pub max_links: usize,
    pub flag_words: Vec<String>,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            max_comment_chars: 2000,
            max_reviews_per_day: 20,
            max_links: 2,
            flag_words: ["scam", "fraud", "stolen"].map(String::from).to_vec(),
        }
    }
}

impl Params {
    pub fn from_config(config: &[(String, String)]) -> Result<Self, String> {
        let mut params = Self::default();
        let number = |key: &str, value: &str| {
            value
                .trim()
                .parse()
                .map_err(|_| format!("config {key}: {value:?} is not a whole number"))
        };
        for (key, value) in config {
            match key.as_str() {
                "max_comment_chars" => params.max_comment_chars = number(key, value)?,
                "max_reviews_per_day" => params.max_reviews_per_day = number(key, value)? as u32,
                "max_links" => params.max_links = number(key, value)?,
                "flag_words" => {
                    params.flag_words = value
                        .split(',')
                        .map(|w| w.trim().to_lowercase())
                        .filter(|w| !w.is_empty())
                        .collect()
                }
                _ => {}
            }
        }
        Ok(params)
    }
}

fn decision(verdict: Verdict, reason: impl Into<String>) -> ModerationDecision {
    ModerationDecision {
        verdict,
        reason: reason.into(),
    }
}

pub fn moderate(params: &Params, review: &ReviewFacts) -> ModerationDecision {
    let comment = review.comment.as_deref().unwrap_or("");
    if review.rating == 0 {
        return decision(Verdict::Reject, "spam: review without a rating");
    }
    if review.rating > 5 {
        return decision(Verdict::Reject, "rating must be between 1 and 5");
    }
    if review.reviewer_reviews_today >= params.max_reviews_per_day {
        return decision(
            Verdict::Reject,
            format!(
                "spam: more than {} reviews in a day",
                params.max_reviews_per_day
            ),
        );
    }
    let chars = comment.chars().count();
    if chars > params.max_comment_chars {
        return decision(
            Verdict::Reject,
            format!(
                "comment is {chars} characters, the limit is {}",
                params.max_comment_chars
            ),
        );
    }
    let lower = comment.to_lowercase();
    let links = lower.matches("http://").count() + lower.matches("https://").count();
    if links > params.max_links {
        return decision(
            Verdict::Reject,
            format!("spam: {links} links in the comment"),
        );
    }
    if !review.reviewer_has_completed_booking {
        return decision(
            Verdict::Flag,
            "reviewer has no completed booking on this GPU",
        );
    }
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    if let Some(word) = params
        .flag_words
        .iter()
        .find(|f| words.contains(&f.as_str()))
    {
        return decision(
            Verdict::Flag,
            format!("comment contains the flagged word {word:?}"),
        );
    }
    decision(Verdict::Accept, "")
}

struct ReviewModerationBasic;

impl Guest for ReviewModerationBasic {
    fn moderate(
        config: Vec<(String, String)>,
        review: ReviewFacts,
    ) -> Result<ModerationDecision, String> {
        Ok(moderate(&Params::from_config(&config)?, &review))
    }
}

export!(ReviewModerationBasic);
