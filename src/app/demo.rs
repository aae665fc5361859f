//! The demo page `switchboard dev` serves: static files from `demo/`, built into
//! the binary so it works from any directory.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX: &str = include_str!("../../demo/index.html");
const APP_JS: &str = include_str!("../../demo/app.js");
const STYLE: &str = include_str!("../../demo/style.css");

fn file(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// `/` (the page), `/demo/app.js`, `/demo/style.css`. Stage names cannot
/// contain dots, so these never shadow a WebSocket stage URL.
pub fn router() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { file("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/demo/app.js",
            get(|| async { file("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/demo/style.css",
            get(|| async { file("text/css; charset=utf-8", STYLE) }),
        )
}
