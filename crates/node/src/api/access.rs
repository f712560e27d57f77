//! Who may call the API: the token, and the checks on `Host`, `Origin` and
//! `Content-Type` that keep web pages out.
//!
//! The API listens on loopback, where every web page the node's user opens
//! can reach it too. A page can send a "simple" cross-origin request (a
//! `text/plain` POST) without the browser asking first, and a page on a
//! domain whose DNS it re-points at 127.0.0.1 ("DNS rebinding") can even
//! read the answers. So every request must name this API in `Host` (a
//! rebinding page's requests name the page's domain), must not come from
//! another origin, must carry the content type its route takes (a page
//! cannot send `application/json` or `application/octet-stream` across
//! origins without the browser asking first, and no CORS headers are ever
//! sent, so the browser never agrees), and, on routes that spend, change
//! state or read private job data, must carry the node's token, which only
//! someone who can read the node's data folder has.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

pub use cairn_api::{ApiToken, TOKEN_FILE};

/// The access rules of one API: its token and the `Host` values it answers.
#[derive(Clone, Debug)]
pub struct Access {
    token: ApiToken,
    hosts: Arc<Vec<String>>,
}

impl Access {
    /// The rules of an API bound to `bound`: it answers `Host` values naming
    /// `bound` itself, `localhost`, `127.0.0.1` or `[::1]` with its port, and
    /// each of `extra_hosts` (a name behind a proxy, say: `name` matches the
    /// name alone and with the port, `name:port` only that).
    pub fn new(token: ApiToken, bound: SocketAddr, extra_hosts: &[String]) -> Self {
        let port = bound.port();
        let mut hosts = vec![
            bound.to_string(),
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
        ];
        for host in extra_hosts {
            let host = host.trim().to_ascii_lowercase();
            let has_port = match host.strip_prefix('[') {
                Some(v6) => v6.contains("]:"),
                None => host.contains(':'),
            };
            if !has_port {
                hosts.push(format!("{host}:{port}"));
            }
            hosts.push(host);
        }
        hosts.sort();
        hosts.dedup();
        Self {
            token,
            hosts: Arc::new(hosts),
        }
    }

    /// The `Host` values answered.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    pub(super) fn token(&self) -> &ApiToken {
        &self.token
    }
}

/// Refuses a request whose `Host` does not name this API (421: a DNS
/// rebinding page's requests name its own domain) or that comes from
/// another origin (403). Runs before every route.
pub(super) async fn guard(State(access): State<Access>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    let Some(host) = host else {
        return ApiError(StatusCode::BAD_REQUEST, "a Host header is required".into())
            .into_response();
    };
    let host = host.to_ascii_lowercase();
    if !access.hosts.contains(&host) {
        return ApiError(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "host '{host}' is not a name of this API; a name it should answer is added \
                 with `cairn node --api-host NAME`"
            ),
        )
        .into_response();
    }
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("?").to_ascii_lowercase();
        let own = access.hosts.iter().any(|h| {
            origin.strip_prefix("http://") == Some(h) || origin.strip_prefix("https://") == Some(h)
        });
        if !own {
            return ApiError(
                StatusCode::FORBIDDEN,
                format!(
                    "requests from origin '{origin}' are refused: this API serves the node's \
                     own tools, not web pages"
                ),
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// Refuses a request without this node's token (401) on the routes that
/// spend, change state or read private job data.
pub(super) async fn require_token(
    State(access): State<Access>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let refusal = match presented {
        Some(token) if access.token().accepts(token) => return next.run(request).await,
        Some(_) => "wrong API token",
        None => {
            "this route needs the node's API token: send 'Authorization: Bearer <token>' with \
             the token from the api.token file in the node's data folder"
        }
    };
    let mut response = ApiError(StatusCode::UNAUTHORIZED, refusal.into()).into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Refuses a body that is not of the content type `expected` (415), before
/// reading it.
pub(super) async fn require_content_type(
    State(expected): State<&'static str>,
    request: Request,
    next: Next,
) -> Response {
    let found = request
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("?").to_string());
    let essence = found
        .as_deref()
        .map(|v| v.split(';').next().unwrap_or("").trim());
    if essence.is_some_and(|e| e.eq_ignore_ascii_case(expected)) {
        return next.run(request).await;
    }
    ApiError(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "{} {} takes Content-Type: {expected}; found {}",
            request.method(),
            request.uri().path(),
            found.map_or("none".into(), |f| format!("'{f}'"))
        ),
    )
    .into_response()
}
