//! Declarative call flows: the model operators write in YAML, loading with exact
//! source positions, validation, and the sans-IO engine that runs one call.
//!
//! CONTRACT (the call layer and the CLI are written against this):
//! - `FlowSet::load(dir)` → `Ok(FlowSet)` or every problem as a `Diagnostic`
//!   (`file:line:col: message`).
//! - `FlowRun::start(set, entry, call, now, env)`, then `handle_event`,
//!   `handle_timeout`, `poll_timeout`, `poll_action`: events in, actions out, time
//!   passed in. The same engine serves live calls and `flows simulate`.

pub mod duration;
pub mod plural;
pub mod schedule;
pub mod yaml;

use crate::language::Language;
use crate::prompts::Catalogue;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// One problem found in a flow directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub is_warning: bool,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.is_warning { "warning: " } else { "" };
        write!(
            f,
            "{}:{}:{}: {}{}",
            self.file.display(),
            self.line,
            self.column,
            kind,
            self.message
        )
    }
}

/// A loaded, validated, immutable set of flows (plus prompts and schedules).
/// Calls hold an `Arc` to the version they started with.
#[derive(Debug, Default)]
pub struct FlowSet {
    pub catalogue: Catalogue,
}

impl FlowSet {
    pub fn load(_dir: &Path) -> Result<FlowSet, Vec<Diagnostic>> {
        unimplemented!("flow loader")
    }
    /// The entry flow for a dialled number (Request-URI user part).
    pub fn entry_for(&self, _dialled: &str) -> Option<&str> {
        None
    }
    /// A short content hash naming this version.
    pub fn version(&self) -> &str {
        ""
    }
}

/// Facts about the call that flows branch on.
#[derive(Debug, Clone, Default)]
pub struct CallInfo {
    pub caller: String,
    pub dialled: String,
}

/// What the world looks like outside the call, asked by the engine when a step
/// needs it (schedules, queue state).
pub trait FlowEnv {
    fn now_wall(&self) -> chrono::DateTime<chrono::Utc>;
}

/// A prompt to play: catalogue id in a language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptRef {
    pub id: String,
    pub language: Language,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowEvent {
    PlaybackFinished { play_id: u64 },
    Digit(char),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowAction {
    Play {
        play_id: u64,
        prompts: Vec<PromptRef>,
    },
    StopPlayback,
    LanguageSelected(Language),
    Queue {
        queue: String,
    },
    Transfer {
        target: String,
    },
    Hangup {
        reason: String,
    },
}

/// One call's walk through a flow.
pub struct FlowRun {
    _set: Arc<FlowSet>,
}

impl FlowRun {
    pub fn start(
        set: Arc<FlowSet>,
        _entry: &str,
        _call: CallInfo,
        _now: Instant,
        _env: &dyn FlowEnv,
    ) -> FlowRun {
        FlowRun { _set: set }
    }
    pub fn handle_event(&mut self, _now: Instant, _event: FlowEvent, _env: &dyn FlowEnv) {}
    pub fn handle_timeout(&mut self, _now: Instant, _env: &dyn FlowEnv) {}
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    pub fn poll_action(&mut self) -> Option<FlowAction> {
        None
    }
    pub fn language(&self) -> Option<Language> {
        None
    }
    /// Step names visited so far, for logs and call records.
    pub fn path(&self) -> &[String] {
        &[]
    }
}
