//! The HTTP request being served, for the layers below the API that record it: the decision log
//! names the request that asked for each decision. The API layer scopes every handler with
//! [`scope`]; code outside a request (the sweeper, the CLI) sees None.

use std::future::Future;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Runs `future` as the request `request_id`.
pub async fn scope<F: Future>(request_id: String, future: F) -> F::Output {
    REQUEST_ID.scope(request_id, future).await
}

/// The `x-request-id` of the request this task serves, if any.
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}
