//! Declarative call flows: the model operators write in YAML, loading with exact
//! source positions, validation, and the sans-IO engine that runs one call.
//!
//! CONTRACT (the call layer and the CLI are written against this):
//! - `FlowSet::load(dir)` → `Ok(FlowSet)` or every problem as a `Diagnostic`
//!   (`file:line:col: message`).
//! - `FlowRun::start(set, entry, call, now, env)`, then `handle_event`,
//!   `handle_timeout`, `poll_timeout`, `poll_action`: events in, actions out, time
//!   passed in. The same engine serves live calls and `flows simulate`.
//! - `Play { play_id, prompts }` is answered by `PlaybackFinished { play_id }`;
//!   after `StopPlayback` the engine no longer waits for that play, and a late
//!   `PlaybackFinished` for it is ignored.
//! - `Queue { queue, options }` is answered by one of `QueueAnswered`,
//!   `QueueTimeout`, `QueueFull`, `QueueNoAgents`; `Transfer` by `Transferred`
//!   or `TransferFailed`.

pub mod catalogue;
pub mod engine;
pub mod load;
pub mod model;
pub mod plural;
pub mod schedule;
pub mod simulate;
pub mod suggest;
pub mod testing;
pub mod validate;
pub mod yaml;

pub use catalogue::Catalogue;
pub use engine::{Awaiting, FlowEnd, FlowRun, TraceEntry};
pub use simulate::{parse_digits, simulate, QueueOutcome, SimulateOptions, SimulationReport};
pub use testing::{run_tests, TestReport};

use crate::language::Language;
use model::{Flow, QueueDef};
use schedule::Schedule;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// The dialled-number key that catches every number without its own entry.
pub const DEFAULT_ENTRY: &str = "default";

/// A loaded, validated, immutable set of flows (plus prompts and schedules).
/// Calls hold an `Arc` to the version they started with.
#[derive(Debug)]
pub struct FlowSet {
    pub catalogue: Catalogue,
    /// The directory it was loaded from (audio lives under `audio/`).
    pub dir: PathBuf,
    /// Files by index, as `model::Origin::file` refers to them.
    pub files: Vec<PathBuf>,
    pub flows: Vec<Flow>,
    pub queues: BTreeMap<String, QueueDef>,
    pub schedules: BTreeMap<String, Schedule>,
    /// Dialled number (or `default`) → entry flow name.
    pub entries: BTreeMap<String, String>,
    /// Languages the hotline offers.
    pub languages: Vec<Language>,
    /// Prompts play in this language until the caller chooses.
    pub default_language: Language,
    pub transfer_allow: Vec<String>,
    version: String,
}

impl Default for FlowSet {
    fn default() -> Self {
        FlowSet {
            catalogue: Catalogue::default(),
            dir: PathBuf::new(),
            files: Vec::new(),
            flows: Vec::new(),
            queues: BTreeMap::new(),
            schedules: BTreeMap::new(),
            entries: BTreeMap::new(),
            languages: Language::ALL.to_vec(),
            default_language: Language::Nb,
            transfer_allow: Vec::new(),
            version: String::new(),
        }
    }
}

impl FlowSet {
    /// Loads and validates a flow directory: a complete set, or every error
    /// (with any warnings) as diagnostics. Pure: nothing changes on failure.
    pub fn load(dir: &Path) -> Result<FlowSet, Vec<Diagnostic>> {
        let (set, diags) = load_dir(dir, true);
        match set {
            Some(set) if !has_errors(&diags) => Ok(set),
            _ => Err(diags),
        }
    }

    /// The entry flow for a dialled number (Request-URI user part).
    pub fn entry_for(&self, dialled: &str) -> Option<&str> {
        self.entries
            .get(dialled)
            .or_else(|| self.entries.get(DEFAULT_ENTRY))
            .map(String::as_str)
    }

    /// A short content hash naming this version.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn flow(&self, name: &str) -> Option<&Flow> {
        self.flows.iter().find(|f| f.name == name)
    }

    /// Schedules the line depends on: those named by `schedule:` conditions
    /// in the entry flows and every flow they call. Sorted, no duplicates.
    pub fn line_schedules(&self) -> Vec<&str> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<usize> = self
            .entries
            .values()
            .filter_map(|name| self.flows.iter().position(|f| &f.name == name))
            .collect();
        let mut names = BTreeSet::new();
        // Each flow is visited once, so this ends on call cycles too.
        while let Some(index) = todo.pop() {
            if !seen.insert(index) {
                continue;
            }
            let Some(flow) = self.flows.get(index) else {
                continue;
            };
            for step in &flow.steps {
                match &step.kind {
                    model::StepKind::Call { index, .. } => todo.push(*index),
                    model::StepKind::Branch { arms, .. } => {
                        for (condition, _) in arms {
                            schedule_names(condition, &mut names);
                        }
                    }
                    _ => {}
                }
            }
        }
        names.into_iter().collect()
    }

    /// Whether the line is open at `at`: one of its schedules (above) is open,
    /// or it has none (a 24/7 line). Schedules that do not exist count as
    /// closed, except `always`, as the engine treats them.
    pub fn is_line_open(&self, at: chrono::DateTime<chrono::Utc>) -> bool {
        let names = self.line_schedules();
        names.is_empty()
            || names.iter().any(|name| match self.schedules.get(*name) {
                Some(s) => s.is_open(at),
                None => *name == schedule::ALWAYS,
            })
    }

    /// The languages callers are offered at `at`: every language of the set
    /// while the line is open, none while it is closed.
    pub fn languages_offered_at(&self, at: chrono::DateTime<chrono::Utc>) -> Vec<Language> {
        if self.is_line_open(at) {
            self.languages.clone()
        } else {
            Vec::new()
        }
    }
}

/// Collects the schedule names a condition mentions, however nested.
fn schedule_names<'a>(condition: &'a model::Condition, out: &mut BTreeSet<&'a str>) {
    use model::Condition;
    match condition {
        Condition::Schedule(name, _) => {
            out.insert(name.as_str());
        }
        Condition::All(list) | Condition::Any(list) => {
            for c in list {
                schedule_names(c, out);
            }
        }
        Condition::Not(inner) => schedule_names(inner, out),
        _ => {}
    }
}

/// Facts about the call that flows branch on.
#[derive(Debug, Clone, Default)]
pub struct CallInfo {
    pub caller: String,
    pub dialled: String,
}

/// A queue as flows see it when they branch or announce.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueState {
    pub waiting: u32,
    pub estimated_wait: Duration,
}

/// What the world looks like outside the call, asked by the engine when a step
/// needs it (schedules, queue state). Defaults: empty queues, no agents ready.
pub trait FlowEnv {
    fn now_wall(&self) -> chrono::DateTime<chrono::Utc>;
    fn queue_state(&self, _queue: &str) -> QueueState {
        QueueState::default()
    }
    fn agents_ready(&self, _skill: &str) -> u32 {
        0
    }
}

/// A prompt to play: catalogue id in a language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptRef {
    pub id: String,
    pub language: Language,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowEvent {
    PlaybackFinished {
        play_id: u64,
    },
    Digit(char),
    /// An agent took the call from the queue: the flow is done.
    QueueAnswered,
    /// The caller waited `max_wait`; the flow continues at `on_timeout`.
    QueueTimeout,
    /// The queue refused the caller (`max_waiting`); continues at `on_full`.
    QueueFull,
    /// Nobody can serve the queue; continues at `on_no_agents`.
    QueueNoAgents,
    Transferred,
    /// Continues at the transfer's `on_failure`.
    TransferFailed,
    /// The queue step's callback offer was said: its key now books a
    /// callback.
    CallbackOffered,
    /// The `callback` step's callback is booked: the next step.
    CallbackBooked,
    /// It could not be booked: the step's `on_invalid`.
    CallbackRefused,
}

/// How the queue should hold the caller; the queue layer decides the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueOptions {
    /// An agent needs all of these skills.
    pub skills: Vec<String>,
    pub language: Option<Language>,
    /// 0 is normal; higher is served first.
    pub priority: i32,
    pub max_wait: Option<Duration>,
    pub max_waiting: Option<u32>,
    /// How often to tell the caller their position and wait.
    pub announce_every: Option<Duration>,
    /// After this long, agents of `escalate_to` may take the call too.
    pub escalate_after: Option<Duration>,
    pub escalate_to: Option<String>,
    /// Said to callers who wait long (the step's `messages`).
    pub messages: Vec<model::WaitMessage>,
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
        options: QueueOptions,
    },
    Transfer {
        target: String,
    },
    /// The caller pressed the callback key while queued: keep their place,
    /// offered to nobody, while the flow confirms the number.
    HoldPlace,
    /// Book a callback for the caller's held place.
    BookCallback(CallbackRequest),
    Hangup {
        reason: String,
    },
}

/// What a `callback` step asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackRequest {
    /// The number to call back; `None` when the step names a collected
    /// variable that holds nothing.
    pub number: Option<String>,
    /// Whether the caller typed the number (else it is their caller ID).
    pub typed: bool,
    pub attempts: u32,
    pub retry_after: Duration,
    pub max_wait: Duration,
    pub window: Option<String>,
}

/// Whether any diagnostic is an error (warnings do not fail a check).
pub fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(|d| !d.is_warning)
}

/// Every problem in a flow directory, errors and warnings, in file order.
pub fn check(dir: &Path) -> Vec<Diagnostic> {
    let (_, diags) = load_dir(dir, true);
    diags
}

/// The text `flows check` prints: one line per diagnostic and a summary.
pub fn format_report(diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        out.push_str(&d.to_string());
        out.push('\n');
    }
    let errors = diags.iter().filter(|d| !d.is_warning).count();
    let warnings = diags.len() - errors;
    out.push_str(&format!("{errors} error(s), {warnings} warning(s)\n"));
    out
}

/// In-memory inputs of a load, so tests need no directory.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub dir: PathBuf,
    /// Flow files: path (as diagnostics show it) and text.
    pub files: Vec<(PathBuf, String)>,
    /// `prompts.yaml`: path and text, or `None` when it is missing.
    pub catalogue: Option<(PathBuf, String)>,
    /// Rendered audio present, or `None` to skip the audio check.
    pub audio: Option<BTreeSet<(Language, String)>>,
    /// Some flow file could not be read (and that was reported).
    pub unreadable: bool,
}

fn load_dir(dir: &Path, check_audio: bool) -> (Option<FlowSet>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let (flow_files, _) = match load::list_yaml(dir) {
        Ok(f) => f,
        Err(e) => {
            diags.push(load::diagnostic(dir, yaml::Pos::default(), e, false));
            return (None, diags);
        }
    };
    let mut sources = Sources {
        dir: dir.to_path_buf(),
        ..Sources::default()
    };
    for path in flow_files {
        match load::read_bounded(&path) {
            Ok(text) => sources.files.push((path, text)),
            Err(e) => {
                diags.push(load::diagnostic(&path, yaml::Pos::default(), e, false));
                sources.unreadable = true;
            }
        }
    }
    let catalogue_path = dir.join(catalogue::CATALOGUE_FILE);
    match load::read_bounded(&catalogue_path) {
        Ok(text) => sources.catalogue = Some((catalogue_path, text)),
        Err(e) => diags.push(load::diagnostic(
            &catalogue_path,
            yaml::Pos::default(),
            format!("prompt catalogue: {e}"),
            false,
        )),
    }
    if check_audio {
        sources.audio = Some(catalogue::scan_audio(dir));
    }
    let (set, more) = load_sources(&sources);
    diags.extend(more);
    (set, diags)
}

/// Loads a set from in-memory sources: the set when there are no errors, and
/// every diagnostic (errors and warnings).
pub fn load_sources(sources: &Sources) -> (Option<FlowSet>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut files: Vec<PathBuf> = Vec::new();
    let mut parsed = load::Parsed::default();
    for (path, text) in &sources.files {
        let index = files.len();
        files.push(path.clone());
        let mut cx = load::Cx::new(index, path, &mut diags);
        match yaml::parse(text) {
            Ok(doc) => load::parse_document(&mut cx, &doc, &mut parsed),
            Err(e) => {
                cx.err(e.pos, e.message);
                parsed.unread.names = true;
            }
        }
    }
    if sources.unreadable {
        parsed.unread.names = true;
    }
    let mut catalogue = Catalogue::default();
    if let Some((path, text)) = &sources.catalogue {
        let index = files.len();
        files.push(path.clone());
        let mut cx = load::Cx::new(index, path, &mut diags);
        match catalogue::parse(&mut cx, text) {
            Some((c, unread)) => {
                catalogue = c;
                parsed.unread.prompts = unread;
            }
            None => parsed.unread.catalogue = true,
        }
    } else {
        parsed.unread.catalogue = true;
    }
    let languages = parsed
        .languages
        .as_ref()
        .map(|(l, _)| l.clone())
        .unwrap_or_else(|| Language::ALL.to_vec());
    let context = validate::Context {
        files: &files,
        catalogue: &catalogue,
        audio: sources.audio.as_ref(),
        languages: &languages,
    };
    diags.extend(validate::validate(&mut parsed, &context));
    diags.sort_by(|a, b| {
        (&a.file, a.line, a.column, a.is_warning).cmp(&(&b.file, b.line, b.column, b.is_warning))
    });
    diags.dedup();
    if has_errors(&diags) {
        return (None, diags);
    }
    let version = content_hash(sources);
    let set = FlowSet {
        catalogue,
        dir: sources.dir.clone(),
        files,
        flows: parsed.flows,
        queues: parsed
            .queues
            .into_iter()
            .map(|q| (q.name.clone(), q))
            .collect(),
        schedules: parsed
            .schedules
            .into_iter()
            .map(|(s, _)| (s.name.clone(), s))
            .collect(),
        entries: parsed.entries.into_iter().map(|(d, f, _)| (d, f)).collect(),
        languages,
        default_language: parsed
            .default_language
            .map(|(l, _)| l)
            .unwrap_or(Language::Nb),
        transfer_allow: parsed.transfer_allow,
        version,
    };
    (Some(set), diags)
}

fn content_hash(sources: &Sources) -> String {
    use md5::{Digest, Md5};
    let mut hasher = Md5::new();
    let named = sources.files.iter().chain(sources.catalogue.iter());
    for (path, text) in named {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        hasher.update(name.unwrap_or_default().as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
    }
    for (lang, id) in sources.audio.iter().flatten() {
        hasher.update(lang.code().as_bytes());
        hasher.update(id.as_bytes());
        hasher.update([0]);
    }
    hasher
        .finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests;
