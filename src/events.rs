//! Live events for the WebSocket stream and the wallboard.
//!
//! The call layer publishes into a bounded broadcast channel; sending never
//! blocks and never waits for a reader. A client that falls behind by more than
//! the channel holds is disconnected (it reconnects and gets a fresh snapshot),
//! so a slow browser can never slow a call.

use crate::language::Language;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Events kept for a slow client before it is dropped.
pub const CLIENT_BUFFER: usize = 1024;

/// One thing that happened, as JSON: `{"type": "...", "at": <unix seconds>, ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    CallStarted {
        at: f64,
        call: u64,
        dialled: String,
    },
    LanguageChosen {
        at: f64,
        call: u64,
        language: Language,
    },
    Queued {
        at: f64,
        call: u64,
        queue: String,
        language: Option<Language>,
    },
    Offered {
        at: f64,
        call: u64,
        queue: String,
        agent: String,
    },
    Answered {
        at: f64,
        call: u64,
        queue: String,
        agent: String,
        waited_seconds: f64,
    },
    Abandoned {
        at: f64,
        call: u64,
        queue: String,
        language: Option<Language>,
        waited_seconds: f64,
        /// Under the queue's short-abandon threshold (wallboards leave these
        /// out of abandonment).
        short: bool,
    },
    CallEnded {
        at: f64,
        call: u64,
        outcome: String,
        language: Option<Language>,
    },
    /// Local midnight passed (the hotline's timezone): "today" totals start
    /// again from zero. `day` is the new date, `YYYY-MM-DD`.
    DayStarted {
        at: f64,
        day: String,
    },
    /// An agent's state, or the state it asked for during a call or
    /// wrap-up, changed.
    AgentState {
        at: f64,
        agent: String,
        state: String,
        /// The state that follows the call or wrap-up (`paused`,
        /// `logged_out`), when one was asked for; else null.
        pending: Option<String>,
        /// Pause reason, when paused; else null.
        reason: Option<String>,
        /// Language codes the agent speaks (for per-language wallboard counts).
        skills: Vec<String>,
    },
}

/// The sending side, cheap to clone.
#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<LiveEvent>,
}

impl EventBus {
    pub fn new() -> EventBus {
        let (sender, _) = broadcast::channel(CLIENT_BUFFER);
        EventBus { sender }
    }

    /// Publishes to every connected client; a no-op when none is connected.
    pub fn publish(&self, event: LiveEvent) {
        let _ = self.sender.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.sender.subscribe()
    }

    pub fn clients(&self) -> usize {
        self.sender.receiver_count()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_with_a_type_tag() {
        let e = LiveEvent::LanguageChosen {
            at: 1.5,
            call: 7,
            language: Language::Pl,
        };
        assert_eq!(
            serde_json::to_string(&e).expect("json"),
            r#"{"type":"language_chosen","at":1.5,"call":7,"language":"pl"}"#
        );
    }

    #[test]
    fn a_slow_client_lags_instead_of_blocking_the_sender() {
        let bus = EventBus::new();
        let mut slow = bus.subscribe();
        for call in 0..(CLIENT_BUFFER as u64 + 10) {
            bus.publish(LiveEvent::CallStarted {
                at: 0.0,
                call,
                dialled: String::new(),
            });
        }
        assert!(matches!(
            slow.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
    }
}
