//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::OpenApi;

use super::{admin, bookings, gpus, offers, orders, policies, pricing, reviews, system};

#[derive(OpenApi)]
#[openapi(
    info(title = "gpu-market", description = "GPU rental marketplace: registry, booking, reviews, orders, pricing"),
    paths(
        gpus::register, gpus::list, gpus::details, gpus::remove, gpus::heartbeat,
        bookings::book, bookings::release,
        reviews::list, reviews::add,
        orders::list,
        pricing::model_pricing,
        offers::list_offers, offers::miner_offers, offers::stats, offers::place_bid, offers::sync_offers,
        admin::list_reviews, admin::approve_review, admin::reject_review,
        policies::list, policies::upload, policies::rollback,
        system::health,
    ),
    tags(
        (name = "registry", description = "GPUs offered by miners"),
        (name = "booking", description = "Renting a GPU"),
        (name = "reviews", description = "Ratings and comments"),
        (name = "orders", description = "Bills of bookings"),
        (name = "pricing", description = "Prices per model"),
        (name = "offers", description = "The older coordinator's marketplace views"),
        (name = "admin", description = "Operators"),
    )
)]
pub struct ApiDoc;
