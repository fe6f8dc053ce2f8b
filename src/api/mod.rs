//! HTTP: health, Prometheus metrics, the JSON API, flow reload, the live event
//! stream and the wallboard.

mod live;

use crate::control::Control;
use crate::events::EventBus;
use crate::metrics::Metrics;
use crate::reload::{reload_now, ReloadStatus};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub metrics: Arc<Metrics>,
    pub control: mpsc::Sender<Control>,
    pub reload: Arc<Mutex<ReloadStatus>>,
    pub flows_dir: PathBuf,
    /// Bearer token for write endpoints; `None` refuses them all.
    pub token: Option<String>,
    /// False once shutdown began.
    pub ready: Arc<AtomicBool>,
    pub events: EventBus,
    /// Token the WebSocket stream asks for (`/ws?token=...`); `None` leaves it open.
    pub ws_token: Option<String>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/calls", get(calls))
        .route("/api/agents", get(agents))
        .route("/api/queues", get(queues))
        .route("/api/callbacks", get(callbacks))
        .route("/api/history", get(history))
        .route("/api/agents/{id}/state", post(set_agent_state))
        .route("/api/calls/{id}/transfer", post(transfer_call))
        .route("/api/flows", get(flows_status))
        .route("/api/flows/reload", post(flows_reload))
        .route("/ws", get(live::websocket))
        .route("/", get(live::wallboard))
        .with_state(state)
}

/// Serves until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, state: ApiState) {
    if let Err(e) = axum::serve(listener, router(state)).await {
        tracing::error!(error = %e, "http server stopped");
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<ApiState>) -> Response {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    }
}

async fn metrics(State(s): State<ApiState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn calls(State(s): State<ApiState>) -> Response {
    match call_summaries(&s).await {
        Some(calls) => Json(calls).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "busy\n").into_response(),
    }
}

/// The calls in progress, asked of the core loop (which owns them).
async fn call_summaries(s: &ApiState) -> Option<Vec<crate::call::CallSummary>> {
    let (tx, rx) = oneshot::channel();
    s.control.send(Control::Calls(tx)).await.ok()?;
    tokio::time::timeout(Duration::from_secs(2), rx)
        .await
        .ok()?
        .ok()
}

async fn agents(State(s): State<ApiState>) -> Response {
    ask(&s, Control::Agents).await
}

async fn queues(State(s): State<ApiState>) -> Response {
    ask(&s, Control::Queues).await
}

async fn callbacks(State(s): State<ApiState>) -> Response {
    ask(&s, Control::Callbacks).await
}

/// The wallboard's last hour, per minute and language (`crate::history`).
async fn history(State(s): State<ApiState>) -> Response {
    match last_hour(&s) {
        Some(series) => Json(series).into_response(),
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn last_hour(s: &ApiState) -> Option<crate::history::Series> {
    s.metrics.last_hour.with(|h| h.series(chrono::Utc::now()))
}

/// Asks the core loop for a view and answers it as JSON.
async fn ask<T: serde::Serialize>(
    s: &ApiState,
    make: impl FnOnce(oneshot::Sender<T>) -> Control,
) -> Response {
    let (tx, rx) = oneshot::channel();
    if s.control.send(make(tx)).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "stopping\n").into_response();
    }
    match tokio::time::timeout(Duration::from_secs(2), rx).await {
        Ok(Ok(v)) => Json(v).into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "busy\n").into_response(),
    }
}

#[derive(serde::Deserialize)]
struct StateRequest {
    state: String,
    reason: Option<String>,
}

async fn set_agent_state(
    State(s): State<ApiState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(refusal) = refuse_unauthorized(&s, &headers) {
        return refusal;
    }
    let request: StateRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"error": format!("body must be {{\"state\": \"ready\"|\"paused\"|\"logged_out\", \"reason\": ...}}: {e}")})),
            )
                .into_response()
        }
    };
    let (tx, rx) = oneshot::channel();
    let control = Control::SetAgentState {
        agent: id,
        state: request.state,
        reason: request.reason,
        reply: tx,
    };
    if s.control.send(control).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "stopping\n").into_response();
    }
    match tokio::time::timeout(Duration::from_secs(2), rx).await {
        Ok(Ok(Ok(reply))) => Json(reply).into_response(),
        Ok(Ok(Err(crate::call::AgentStateError::UnknownAgent(a)))) => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": format!("no agent `{a}`")})),
        )
            .into_response(),
        Ok(Ok(Err(e))) => (
            StatusCode::CONFLICT,
            Json(serde_json::json!({"error": e.to_string()})),
        )
            .into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "busy\n").into_response(),
    }
}

/// `POST /api/calls/{id}/transfer` with `{"to": "+4722000000"}` (an outside
/// number, through a trunk) or `{"queue": "advice", "language": "en"}`
/// (either may be left out: the caller's current one).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferRequest {
    to: Option<String>,
    queue: Option<String>,
    language: Option<String>,
}

async fn transfer_call(
    State(s): State<ApiState>,
    axum::extract::Path(id): axum::extract::Path<u64>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    use crate::call::{TransferError, TransferTarget};
    if let Some(refusal) = refuse_unauthorized(&s, &headers) {
        return refusal;
    }
    let bad = |why: String| {
        (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": format!("body must be {{\"to\": \"<number>\"}} or {{\"queue\": \"<queue>\", \"language\": \"<code>\"}}: {why}")})),
        )
            .into_response()
    };
    let request: TransferRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad(e.to_string()),
    };
    let target = match request {
        TransferRequest {
            to: Some(number),
            queue: None,
            language: None,
        } => TransferTarget::Number(number),
        TransferRequest {
            to: None,
            queue,
            language,
        } if queue.is_some() || language.is_some() => {
            let language = match language.map(|l| l.parse::<crate::language::Language>()) {
                None => None,
                Some(Ok(l)) => Some(l),
                Some(Err(_)) => return bad("unknown language code".to_string()),
            };
            TransferTarget::Queue { queue, language }
        }
        _ => return bad("give `to`, or `queue` and/or `language`".to_string()),
    };
    let (tx, rx) = oneshot::channel();
    let control = Control::Transfer {
        call: id,
        target,
        reply: tx,
    };
    if s.control.send(control).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "stopping\n").into_response();
    }
    let error = |status: StatusCode, e: TransferError| {
        (status, Json(serde_json::json!({"error": e.to_string()}))).into_response()
    };
    match tokio::time::timeout(Duration::from_secs(2), rx).await {
        Ok(Ok(Ok(started))) => (StatusCode::ACCEPTED, Json(started)).into_response(),
        Ok(Ok(Err(e @ TransferError::NoCall(_)))) => error(StatusCode::NOT_FOUND, e),
        Ok(Ok(Err(e @ TransferError::Refused(_)))) => error(StatusCode::FORBIDDEN, e),
        Ok(Ok(Err(e @ (TransferError::UnknownQueue(_) | TransferError::UnknownLanguage(_))))) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, e)
        }
        Ok(Ok(Err(e))) => error(StatusCode::CONFLICT, e),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "busy\n").into_response(),
    }
}

async fn flows_status(State(s): State<ApiState>) -> Response {
    let status = s.reload.lock().map(|g| g.clone()).ok();
    match status {
        Some(st) => Json(st).into_response(),
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn flows_reload(State(s): State<ApiState>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refuse_unauthorized(&s, &headers) {
        return refusal;
    }
    match reload_now(
        s.flows_dir.clone(),
        &s.control,
        &s.reload,
        &s.metrics,
        "api",
    )
    .await
    {
        Ok(version) => Json(serde_json::json!({"result": "ok", "version": version})).into_response(),
        Err(report) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({"result": "error", "errors": report.lines().collect::<Vec<_>>()})),
        )
            .into_response(),
    }
}

/// Checks `Authorization: Bearer <token>` in constant time; the refusal to
/// send when it is missing or wrong.
fn refuse_unauthorized(s: &ApiState, headers: &HeaderMap) -> Option<Response> {
    let Some(expected) = s.token.as_deref() else {
        return Some(
            (
                StatusCode::FORBIDDEN,
                "write endpoints are disabled: set api_token in the config file\n",
            )
                .into_response(),
        );
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        None
    } else {
        Some(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "missing or wrong bearer token\n",
            )
                .into_response(),
        )
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
