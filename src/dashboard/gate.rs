//! Who may see the dashboard: with a cluster token, every page, the API, its
//! event stream and `/metrics` ask for it, as `Authorization: Bearer TOKEN`,
//! a cookie, or once as `?token=TOKEN` (which sets the cookie, HttpOnly, as
//! Jupyter does). `/health` stays open for probes.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Says whether a presented token is the cluster's (compared in constant time
/// by whoever holds the token).
pub type Gate = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The cookie that carries the token after a `?token=` visit.
const COOKIE: &str = "rask-token";

/// Lets a request through if the gate (when there is one) accepts its token.
pub(super) async fn admit(
    State(gate): State<Option<Gate>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(gate) = gate else {
        return next.run(request).await;
    };
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .map(str::to_string);
    if bearer.is_some_and(|t| gate(t)) || cookie.is_some_and(|t| gate(&t)) {
        return next.run(request).await;
    }
    let query = request
        .uri()
        .query()
        .and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "token"))
        .map(|(_, v)| v.into_owned());
    match query {
        Some(token) if gate(&token) => {
            let mut response = next.run(request).await;
            let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            response
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            "this dashboard asks for the cluster's token: open the link the scheduler \
             printed (it carries ?token=), or send Authorization: Bearer TOKEN\n",
        )
            .into_response(),
    }
}
