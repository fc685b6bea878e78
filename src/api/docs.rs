//! The OpenAPI document at `/openapi.json` and Swagger UI at `/docs`.
//!
//! The document's paths come from the routers themselves (`OpenApiRouter` + `routes!` in each resource
//! file), so it cannot drift from what is served; this file adds only the title and the tags. Swagger
//! UI's assets are compiled into the binary (utoipa-swagger-ui's `vendored` build), and its validator,
//! the one thing it would fetch from elsewhere, is off: the page works offline.

use std::borrow::Cow;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;
use utoipa_swagger_ui::Config;

use crate::error::Error;

pub const OPENAPI_PATH: &str = "/openapi.json";
pub const DOCS_PATH: &str = "/docs";

/// What the routers do not say: title, description and the tags' descriptions.
#[derive(OpenApi)]
#[openapi(
    info(title = "gpu-market", description = "GPU rental marketplace: registry, booking, reviews, orders, pricing"),
    tags(
        (name = "registry", description = "GPUs offered by miners"),
        (name = "booking", description = "Renting a GPU"),
        (name = "reviews", description = "Ratings and comments"),
        (name = "orders", description = "Bills of bookings"),
        (name = "pricing", description = "Prices per model"),
        (name = "offers", description = "The older coordinator's marketplace views"),
        (name = "admin", description = "Operators"),
        (name = "system", description = "Health"),
    ),
    modifiers(&ApiKeySecurity)
)]
pub struct ApiDoc;

/// The `X-Api-Key` header, which operations that need a caller name in their `security`.
struct ApiKeySecurity;

impl utoipa::Modify for ApiKeySecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        openapi.components.get_or_insert_default().add_security_scheme(
            API_KEY_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Api-Key",
                "A key from the server's configuration; its roles decide what it may do. Without keys \
                 configured (local mode) every local caller has every role.",
            ))),
        );
    }
}

/// The name operations use in `security(...)`.
pub const API_KEY_SCHEME: &str = "api_key";

/// Adds to every operation the error answers that come from layers shared by all of them rather than
/// from its handler, so that the document lists every status the server can send:
/// 400 and 422 for a bad parameter or body, 413 for a body over the limit, 404 for an unknown path
/// parameter, 401 and 403 where a key is needed, and 429 and 503 from the request limits.
pub fn document_shared_errors(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    for (path, item) in openapi.paths.paths.iter_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            let has_input = operation.request_body.is_some()
                || operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let needs_key = operation.security.as_ref().is_some_and(|s| !s.is_empty());
            let shared = [
                (has_input, "400", "malformed request"),
                (
                    has_input,
                    "422",
                    "a parameter or field of the wrong type or out of range",
                ),
                (
                    operation.request_body.is_some(),
                    "413",
                    "body over the size limit",
                ),
                (path.contains('{'), "404", "no such resource"),
                (needs_key, "401", "missing or unknown API key"),
                (needs_key, "403", "the key lacks the role"),
                (true, "429", "rate limit reached; see Retry-After"),
                (
                    true,
                    "503",
                    "the server is at its concurrency limit or shutting down",
                ),
            ];
            for (applies, status, description) in shared {
                if applies {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error(description).into());
                }
            }
        }
    }
}

/// `/openapi.json`, `/docs` and the UI's assets under `/docs/`.
pub fn router<S: Clone + Send + Sync + 'static>(document: utoipa::openapi::OpenApi) -> Router<S> {
    let document = Arc::new(document);
    let config = Arc::new(
        Config::new([OPENAPI_PATH])
            // The default would send the document to swagger.io for validation.
            .validator_url("none"),
    );
    let page: Arc<str> = match index_page(&config) {
        Ok(page) => page.into(),
        Err(err) => {
            tracing::error!(error = %err, "the docs page cannot be built");
            "".into()
        }
    };
    let index = get(move || {
        let page = page.clone();
        async move {
            if page.is_empty() {
                return Error::Internal("the docs page is unavailable".into()).into_response();
            }
            Html(page.to_string()).into_response()
        }
    });
    Router::new()
        .route(
            OPENAPI_PATH,
            get(move || {
                let document = document.clone();
                async move { Json(document.as_ref()).into_response() }
            }),
        )
        .route(DOCS_PATH, index.clone())
        .route(&format!("{DOCS_PATH}/"), index)
        .route(
            &format!("{DOCS_PATH}/{{*file}}"),
            get(move |Path(file): Path<String>| {
                let config = config.clone();
                async move { asset(&file, config) }
            }),
        )
}

/// The tag by which Swagger UI's page loads its initializer, which [`index_page`] inlines.
const INITIALIZER_TAG: &str =
    r#"<script src="./swagger-initializer.js" charset="UTF-8"> </script>"#;

/// Swagger UI's own page, made to work at `/docs` as well as `/docs/`: its relative links resolve
/// under `/docs/`, and the initializer, which names the document to render, is part of the page.
fn index_page(config: &Arc<Config<'static>>) -> Result<String, String> {
    let text = |name: &str| -> Result<String, String> {
        let file = utoipa_swagger_ui::serve(name, config.clone())
            .map_err(|err| err.to_string())?
            .ok_or_else(|| format!("Swagger UI has no {name}"))?;
        String::from_utf8(file.bytes.into_owned()).map_err(|err| err.to_string())
    };
    let initializer = text("swagger-initializer.js")?;
    Ok(text("index.html")?
        .replacen(
            "<head>",
            &format!("<head>\n    <base href=\"{DOCS_PATH}/\">"),
            1,
        )
        .replacen(
            INITIALIZER_TAG,
            &format!("<script>\n{initializer}\n</script>"),
            1,
        ))
}

fn asset(file: &str, config: Arc<Config<'static>>) -> Response {
    match utoipa_swagger_ui::serve(file, config) {
        Ok(Some(file)) => {
            let body = match file.bytes {
                Cow::Borrowed(bytes) => Bytes::from_static(bytes),
                Cow::Owned(bytes) => Bytes::from(bytes),
            };
            ([(CONTENT_TYPE, file.content_type)], body).into_response()
        }
        Ok(None) => Error::not_found("no such file in the docs").into_response(),
        Err(err) => Error::Internal(format!("docs asset {file}: {err}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> String {
        let config = Arc::new(Config::new([OPENAPI_PATH]).validator_url("none"));
        index_page(&config).expect("the page builds")
    }

    #[test]
    fn the_page_names_the_document_and_loads_its_assets_from_docs() {
        let page = page();
        assert!(page.contains("\"/openapi.json\""), "{page}");
        assert!(page.contains("<base href=\"/docs/\">"), "{page}");
        assert!(!page.contains("swagger-initializer.js"), "inlined: {page}");
        assert!(page.contains("\"validatorUrl\": \"none\""), "{page}");
    }

    #[test]
    fn the_page_references_nothing_outside_the_server() {
        let page = page();
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "{page}"
        );
        assert!(
            !page.contains("=\"//"),
            "no protocol-relative links: {page}"
        );
        for asset in [
            "swagger-ui.css",
            "index.css",
            "swagger-ui-bundle.js",
            "swagger-ui-standalone-preset.js",
        ] {
            assert!(page.contains(asset), "{asset} in {page}");
            let config = Arc::new(Config::new([OPENAPI_PATH]));
            assert!(
                utoipa_swagger_ui::serve(asset, config).is_ok_and(|f| f.is_some()),
                "{asset} is embedded"
            );
        }
    }
}
