//! `GET /ws`: a snapshot on connect, then every live event as JSON text frames.
//! `GET /`: the wallboard page, which reads that stream.

use super::{call_summaries, constant_time_eq, last_hour, ApiState};
use crate::control::Control;
use crate::today::DayTotals;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use std::collections::BTreeMap;
use tokio::sync::broadcast::error::RecvError;

const WALLBOARD: &str = include_str!("wallboard.html");

#[derive(Deserialize)]
pub struct WsQuery {
    token: Option<String>,
}

pub async fn wallboard() -> Html<&'static str> {
    Html(WALLBOARD)
}

pub async fn websocket(
    State(s): State<ApiState>,
    Query(q): Query<WsQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    if let Some(expected) = s.ws_token.as_deref() {
        let given = q.token.as_deref().unwrap_or("");
        if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            return (StatusCode::UNAUTHORIZED, "missing or wrong token\n").into_response();
        }
    }
    upgrade.on_upgrade(move |socket| stream(socket, s))
}

async fn stream(mut socket: WebSocket, s: ApiState) {
    // Subscribe before taking the snapshot so nothing falls between the two.
    let mut events = s.events.subscribe();
    let now = crate::time::Now::read();
    let today = s.metrics.today.cluster_snapshot(now.wall);
    let snapshot = serde_json::json!({
        "type": "snapshot",
        "at": now.unix_seconds(),
        "calls": call_summaries(&s).await.unwrap_or_default(),
        "totals": totals(&today, s.metrics.today.timezone()),
        "queues": queue_snapshot(&s, &today).await,
        "agents": ask_core(&s, Control::Agents).await.unwrap_or_default(),
        "history": last_hour(&s),
    });
    if socket
        .send(Message::Text(snapshot.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => {
                    let Ok(text) = serde_json::to_string(&event) else { continue };
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::info!(missed, "websocket client too slow: disconnected");
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
                Err(RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(Message::Text(text))) => {
                    let reply = command(&s, text.as_str()).await;
                    if socket.send(Message::Text(reply.to_string().into())).await.is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
            },
        }
    }
}

/// A request from a client: today only
/// `{"type":"set_agent_state","agent":"anna","state":"paused","reason":"lunch","token":"..."}`
/// with the API's bearer token. The answer is a `command_result` frame.
async fn command(s: &ApiState, text: &str) -> serde_json::Value {
    #[derive(Deserialize)]
    struct SetState {
        r#type: String,
        agent: String,
        state: String,
        reason: Option<String>,
        token: Option<String>,
    }
    let refuse =
        |error: String| serde_json::json!({"type": "command_result", "ok": false, "error": error});
    let Ok(request) = serde_json::from_str::<SetState>(text) else {
        return refuse("expected {\"type\":\"set_agent_state\",\"agent\":...,\"state\":\"ready\"|\"paused\"|\"logged_out\",\"token\":...}".into());
    };
    if request.r#type != "set_agent_state" {
        return refuse(format!("unknown command `{}`", request.r#type));
    }
    let authorised = match (s.token.as_deref(), request.token.as_deref()) {
        (Some(expected), Some(given)) => constant_time_eq(given.as_bytes(), expected.as_bytes()),
        _ => false,
    };
    if !authorised {
        return refuse("missing or wrong token (the API's bearer token)".into());
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let control = Control::SetAgentState {
        agent: request.agent.clone(),
        state: request.state,
        reason: request.reason,
        reply: tx,
    };
    if s.control.send(control).await.is_err() {
        return refuse("service is stopping".into());
    }
    match tokio::time::timeout(std::time::Duration::from_secs(2), rx).await {
        Ok(Ok(Ok(reply))) => serde_json::json!({
            "type": "command_result", "ok": true, "agent": request.agent,
            "state": reply.state, "pending": reply.pending,
        }),
        Ok(Ok(Err(e))) => refuse(e.to_string()),
        _ => refuse("busy".into()),
    }
}

/// Counters a fresh wallboard starts from: languages chosen and call outcomes
/// today (since local midnight in the hotline's timezone, see `crate::today`).
fn totals(today: &DayTotals, timezone: chrono_tz::Tz) -> serde_json::Value {
    let mut languages = BTreeMap::new();
    for l in crate::language::Language::ALL {
        languages.insert(l.code(), today.languages.get(&l).copied().unwrap_or(0));
    }
    let mut outcomes = BTreeMap::new();
    for o in crate::outcome::ALL {
        outcomes.insert(o, today.outcomes.get(o).copied().unwrap_or(0));
    }
    serde_json::json!({
        "day": today.day.to_string(),
        "timezone": timezone.name(),
        "languages": languages,
        "outcomes": outcomes,
    })
}

/// Asks the core loop (which owns queues and agents) for a summary.
async fn ask_core<T>(
    s: &ApiState,
    request: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> Control,
) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    s.control.send(request(tx)).await.ok()?;
    tokio::time::timeout(std::time::Duration::from_secs(2), rx)
        .await
        .ok()?
        .ok()
}

/// Queues as the API lists them, with each language's answered and abandoned
/// callers today.
async fn queue_snapshot(s: &ApiState, today: &DayTotals) -> Vec<serde_json::Value> {
    let queues = ask_core(s, Control::Queues).await.unwrap_or_default();
    queues
        .into_iter()
        .map(|q| {
            let mut by_language = serde_json::Map::new();
            for l in crate::language::Language::ALL {
                let day = today
                    .queues
                    .get(&(q.name.clone(), l))
                    .copied()
                    .unwrap_or_default();
                by_language.insert(
                    l.code().to_string(),
                    serde_json::to_value(day).unwrap_or_default(),
                );
            }
            let mut value = serde_json::to_value(&q).unwrap_or_default();
            if let Some(object) = value.as_object_mut() {
                object.insert("by_language".to_string(), by_language.into());
            }
            value
        })
        .collect()
}
