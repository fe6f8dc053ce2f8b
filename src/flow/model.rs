//! The flow model as loaded: what operators wrote, with positions, references
//! resolved to indexes once validation has passed.

use super::yaml::Pos;
use crate::language::Language;
use std::time::Duration;

/// Where something was written: file (index into `FlowSet::files`) and position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Origin {
    pub file: usize,
    pub pos: Pos,
}

/// One named flow: a list of steps run in order.
#[derive(Debug, Clone)]
pub struct Flow {
    pub name: String,
    pub origin: Origin,
    /// Languages this flow offers callers; its prompts must exist in each.
    pub languages: Vec<Language>,
    pub steps: Vec<Step>,
}

impl Flow {
    /// Name of step `index` as it appears in paths: `flow/id` or `flow/#n` (1-based).
    pub fn step_name(&self, index: usize) -> String {
        match self.steps.get(index).and_then(|s| s.id.as_deref()) {
            Some(id) => format!("{}/{}", self.name, id),
            None => format!("{}/#{}", self.name, index + 1),
        }
    }

    pub fn label(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id.as_deref() == Some(id))
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    pub id: Option<String>,
    pub origin: Origin,
    pub kind: StepKind,
}

/// A reference to a step of the same flow by its `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub label: String,
    pub origin: Origin,
    /// Filled in by validation; a loaded set has every target resolved.
    pub index: usize,
}

#[derive(Debug, Clone)]
pub enum StepKind {
    Play {
        items: Vec<PlayItem>,
        barge_in: bool,
    },
    Menu(Box<Menu>),
    Collect(Box<Collect>),
    SetLanguage(Language),
    Branch {
        arms: Vec<(Condition, Target)>,
        otherwise: Option<Target>,
    },
    Queue(Box<QueueStep>),
    Goto(Target),
    Call {
        flow: String,
        index: usize,
    },
    Return,
    Transfer {
        target: String,
        on_failure: Option<Target>,
    },
    /// Books a callback for a caller who holds a place in a queue (they
    /// pressed the queue step's callback key).
    Callback(Box<CallbackStep>),
    Hangup {
        reason: String,
    },
}

impl StepKind {
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Play { .. } => "play",
            StepKind::Menu(_) => "menu",
            StepKind::Collect(_) => "collect",
            StepKind::SetLanguage(_) => "set_language",
            StepKind::Branch { .. } => "branch",
            StepKind::Queue(_) => "queue",
            StepKind::Goto(_) => "goto",
            StepKind::Call { .. } => "call",
            StepKind::Return => "return",
            StepKind::Transfer { .. } => "transfer",
            StepKind::Callback(_) => "callback",
            StepKind::Hangup { .. } => "hangup",
        }
    }
}

/// Something a play step (or a menu prompt) says.
#[derive(Debug, Clone, PartialEq)]
pub enum PlayItem {
    /// A catalogue prompt, in the caller's language unless `language` fixes one
    /// (a language menu says each option in its own language).
    Prompt {
        id: String,
        language: Option<Language>,
        origin: Origin,
    },
    /// A number with the noun that follows it, in the right plural form:
    /// `<prompt>.<n>` when recorded whole, else `<numbers>.<n>` then
    /// `<prompt>.<cldr category>`.
    Count {
        source: NumberSource,
        prompt: String,
        numbers: String,
        max: u64,
        origin: Origin,
    },
}

/// Where a counted number comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NumberSource {
    /// Digits collected into a variable.
    Var(String),
    /// Callers waiting in a queue.
    Waiting(String),
    /// A queue's estimated wait in whole minutes, rounded up (at least 1).
    WaitMinutes(String),
    /// Agents ready for a skill.
    AgentsReady(String),
}

/// What happens on a menu choice or when a menu gives up.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Choice {
    pub language: Option<(Language, Origin)>,
    pub goto: Option<Target>,
    pub hangup: Option<String>,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub struct Menu {
    pub prompt: Vec<PlayItem>,
    pub choices: Vec<(char, Choice)>,
    pub timeout: Duration,
    pub attempts: u32,
    pub barge_in: bool,
    pub no_input_prompt: Vec<PlayItem>,
    pub invalid_prompt: Vec<PlayItem>,
    pub on_no_input: Choice,
    pub on_invalid: Choice,
}

#[derive(Debug, Clone)]
pub struct Collect {
    pub into: String,
    pub prompt: Vec<PlayItem>,
    pub min_digits: usize,
    pub max_digits: usize,
    pub terminator: Option<char>,
    pub timeout: Duration,
    pub inter_digit_timeout: Duration,
    pub attempts: u32,
    pub barge_in: bool,
    pub no_input_prompt: Vec<PlayItem>,
    pub invalid_prompt: Vec<PlayItem>,
    pub on_no_input: Choice,
    pub on_invalid: Choice,
}

/// A bound on a number: `at_least` and/or `below`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bounds<T> {
    pub at_least: Option<T>,
    pub below: Option<T>,
}

impl<T: PartialOrd + Copy> Bounds<T> {
    pub fn holds(&self, value: T) -> bool {
        self.at_least.is_none_or(|a| value >= a) && self.below.is_none_or(|b| value < b)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
    Caller(Vec<String>),
    CallerPrefix(Vec<String>),
    Dialled(Vec<String>),
    Language(Vec<(Language, Origin)>),
    Digits {
        var: String,
        equals: Option<String>,
        prefix: Option<String>,
        length: Option<usize>,
    },
    /// Open according to a named schedule.
    Schedule(String, Origin),
    /// Whether today (Europe/Oslo) is a Norwegian public holiday.
    Holiday(bool),
    QueueWaiting {
        queue: String,
        origin: Origin,
        bounds: Bounds<u32>,
    },
    EstimatedWait {
        queue: String,
        origin: Origin,
        bounds: Bounds<Duration>,
    },
    AgentsReady {
        skill: String,
        bounds: Bounds<u32>,
    },
}

#[derive(Debug, Clone)]
pub struct QueueStep {
    pub queue: String,
    pub queue_origin: Origin,
    pub priority: i32,
    pub max_wait: Option<Duration>,
    pub announce_every: Option<Duration>,
    pub escalate: Option<Escalation>,
    pub on_timeout: Option<Target>,
    pub on_full: Option<Target>,
    pub on_no_agents: Option<Target>,
    /// Said while the caller waits (e.g. self-service on the website after 10
    /// minutes), in order of `after`.
    pub messages: Vec<WaitMessage>,
    /// The offer of a callback that keeps the caller's place.
    pub callback: Option<CallbackOffer>,
}

/// `callback:` on a queue step: "press 1 to be called back; you keep your
/// place", said `after` the caller joined (then every `every`), only while
/// their estimated wait is at least `estimated_wait` and a trunk can call
/// them back. A caller who presses `key` keeps their place (offered to
/// nobody meanwhile) and goes to `goto`, where a `callback` step books it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackOffer {
    pub after: Duration,
    pub every: Option<Duration>,
    pub estimated_wait: Option<Duration>,
    pub key: char,
    pub prompt: String,
    pub goto: Target,
    pub origin: Origin,
}

/// Which number a callback dials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackNumber {
    /// The number the caller called from.
    Caller,
    /// Digits a `collect` step gathered into this variable: a number the
    /// caller typed, dialled only because the flow says so here.
    Collected(String),
}

/// The `callback` step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackStep {
    pub number: CallbackNumber,
    /// Calls placed to the caller before the callback counts as failed.
    pub attempts: u32,
    /// Wait between an unanswered (busy, failed) attempt and the next.
    pub retry_after: Duration,
    /// Longest a callback waits in line (from when the caller first joined).
    pub max_wait: Duration,
    /// A schedule: callers are called back only while it is open.
    pub window: Option<(String, Origin)>,
    /// Where the flow goes when the number cannot be called back (no trunk
    /// may dial it, no place held); else the next step.
    pub on_invalid: Option<Target>,
}

/// A message for callers who have waited `after`, said again every `every`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitMessage {
    pub after: Duration,
    pub every: Option<Duration>,
    /// Catalogue prompt ids, said one after another in the caller's language.
    pub prompts: Vec<String>,
    pub origin: Origin,
}

/// `no_agents` in `queues.yaml`: what happens to a caller when nobody who
/// could take them is logged in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NoAgents {
    /// Queue anyway: an agent may log in.
    #[default]
    Wait,
    /// Do not queue: the flow's `on_no_agents` exit.
    Reject,
    /// Queue for agents of `language` instead while they are logged in (and
    /// tell the caller with `play`); otherwise wait.
    Fallback {
        language: Language,
        play: Option<String>,
        origin: Origin,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalation {
    pub after: Duration,
    pub queue: String,
    pub origin: Origin,
}

/// A queue callers wait in, served by agents with all of `skills`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDef {
    pub name: String,
    pub origin: Origin,
    pub skills: Vec<String>,
    pub max_waiting: Option<u32>,
    /// How long an agent's phone rings before the next agent is tried.
    pub ring_timeout: Option<Duration>,
    /// Seconds an agent gets after a call before the next one.
    pub wrap_up: Option<Duration>,
    /// Position and wait are announced on joining and then this often.
    pub announce_every: Option<Duration>,
    /// Whether an agent who lets an offer ring out is paused.
    pub pause_on_no_answer: Option<bool>,
    /// Hang-ups sooner than this are counted as short abandons.
    pub short_abandon: Option<Duration>,
    /// Lowest language proficiency (1-10) that takes calls before escalation.
    pub min_proficiency: Option<u8>,
    /// When nobody who could take the call is logged in.
    pub no_agents: Option<NoAgents>,
    pub max_wait: Option<Duration>,
}
