//! The web console: one page, served by the node itself at `/`, that shows
//! the node's jobs (per-task progress, image outputs as they arrive,
//! verification), the providers that bid, the prices auctions cleared at,
//! its balance, its jobs' escrows and the ledger's blocks, live from the
//! API's event streams.
//!
//! The page is plain HTML, CSS and JavaScript compiled into the binary: no
//! front-end build, nothing fetched from elsewhere. It asks for the API
//! token once and keeps it in the browser tab's session storage (a
//! `#token=<hex>` fragment is taken too, and removed from the address at
//! once; a fragment never reaches a server). It calls the API as any
//! client does, from the API's own origin, so the checks of [`super::access`]
//! apply unchanged; its Content-Security-Policy lets it load and call
//! nothing but this node, run no inline script, and be framed by no one.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

pub(super) const PAGE: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

/// What the page may load and call: this node, and the images it makes
/// from blobs it fetched.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// The console's routes: the page and its two files, open to any caller
/// (they hold no data; the data is behind the token).
pub(super) fn routes() -> Router {
    Router::new()
        .route("/", get(|| serve("text/html; charset=utf-8", PAGE)))
        .route(
            "/console.js",
            get(|| serve("text/javascript; charset=utf-8", SCRIPT)),
        )
        .route(
            "/console.css",
            get(|| serve("text/css; charset=utf-8", STYLE)),
        )
}

async fn serve(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            // A node upgraded in place serves its new page at once.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}
