//! The sans-IO interpreter that walks one call through its flows: events and
//! timer expiries in, actions out, time always passed in by the caller.

use super::model::*;
use super::plural;
use super::validate::Edge;
use super::{CallInfo, FlowAction, FlowEnv, FlowEvent, FlowSet, PromptRef, QueueOptions};
use crate::language::Language;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Steps one event may run before the call is ended: flows are checked for
/// input-free loops, and this is the guard for the ones no check can see.
pub const MAX_STEPS_PER_EVENT: usize = 1000;
/// Digits pressed ahead of a menu that are kept for it.
pub const TYPEAHEAD_DIGITS: usize = 16;
/// Sub-flow nesting depth.
pub const MAX_CALL_DEPTH: usize = 16;
/// Steps remembered in the path of one call.
pub const MAX_PATH: usize = 1000;
const MAX_VARS: usize = 32;

/// How a call left its flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowEnd {
    Hangup {
        reason: String,
    },
    /// An agent answered from the queue.
    Answered {
        queue: String,
    },
    Transferred {
        target: String,
    },
}

impl std::fmt::Display for FlowEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlowEnd::Hangup { reason } => write!(f, "hangup ({reason})"),
            FlowEnd::Answered { queue } => write!(f, "answered from queue {queue}"),
            FlowEnd::Transferred { target } => write!(f, "transferred to {target}"),
        }
    }
}

/// What the run is waiting for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Awaiting {
    /// A prompt is playing; `PlaybackFinished { play_id }` moves on.
    Playback {
        play_id: u64,
    },
    /// Digits (or the timeout at `poll_timeout`); `partial` when a collect has
    /// some digits already.
    Input {
        partial: bool,
    },
    /// The queue's outcome.
    Queue,
    /// The transfer's outcome.
    Transfer,
    /// Whether the callback was booked.
    Callback,
    Finished,
}

/// One line of a run's trace, kept only when tracing is on (simulation, tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceEntry {
    Step { name: String, kind: &'static str },
    Action(FlowAction),
    Digit(char),
    Timeout,
    Event(FlowEvent),
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    flow: usize,
    step: usize,
}

#[derive(Debug)]
enum Wait {
    Running,
    Playback {
        play_id: u64,
        barge_in: bool,
    },
    Menu {
        play_id: Option<u64>,
        deadline: Option<Instant>,
        attempt: u32,
    },
    Collect {
        play_id: Option<u64>,
        deadline: Option<Instant>,
        attempt: u32,
        digits: String,
    },
    Queue,
    Transfer,
    Callback,
    Done,
}

/// One call's walk through a flow.
pub struct FlowRun {
    set: Arc<FlowSet>,
    call: CallInfo,
    stack: Vec<Frame>,
    vars: BTreeMap<String, String>,
    language: Option<Language>,
    wait: Wait,
    actions: VecDeque<FlowAction>,
    next_play_id: u64,
    typeahead: VecDeque<char>,
    path: Vec<String>,
    end: Option<FlowEnd>,
    trace: Option<Vec<TraceEntry>>,
    steps_this_event: usize,
    /// The queue step's callback offer was said: its key books a callback.
    callback_offered: bool,
}

impl FlowRun {
    /// Begins the entry flow `entry`; the first actions are ready to poll.
    pub fn start(
        set: Arc<FlowSet>,
        entry: &str,
        call: CallInfo,
        now: Instant,
        env: &dyn FlowEnv,
    ) -> FlowRun {
        Self::start_traced(set, entry, call, now, env, false)
    }

    /// Like `start`, keeping a trace of steps and actions (see `take_trace`).
    pub fn start_traced(
        set: Arc<FlowSet>,
        entry: &str,
        call: CallInfo,
        now: Instant,
        env: &dyn FlowEnv,
        trace: bool,
    ) -> FlowRun {
        let flow = set.flows.iter().position(|f| f.name == entry);
        let mut run = FlowRun {
            set,
            call,
            stack: Vec::new(),
            vars: BTreeMap::new(),
            language: None,
            wait: Wait::Running,
            actions: VecDeque::new(),
            next_play_id: 1,
            typeahead: VecDeque::new(),
            path: Vec::new(),
            end: None,
            trace: trace.then(Vec::new),
            steps_this_event: 0,
            callback_offered: false,
        };
        match flow {
            Some(flow) => {
                run.stack.push(Frame { flow, step: 0 });
                run.steps_this_event = 0;
                run.run(now, env);
            }
            None => run.finish(FlowEnd::Hangup {
                reason: "unknown_flow".into(),
            }),
        }
        run
    }

    pub fn handle_event(&mut self, now: Instant, event: FlowEvent, env: &dyn FlowEnv) {
        if matches!(self.wait, Wait::Done) {
            return;
        }
        if let Some(t) = &mut self.trace {
            match event {
                FlowEvent::Digit(c) => t.push(TraceEntry::Digit(c)),
                FlowEvent::PlaybackFinished { .. } => {}
                ref e => t.push(TraceEntry::Event(e.clone())),
            }
        }
        self.steps_this_event = 0;
        match event {
            FlowEvent::PlaybackFinished { play_id } => self.on_playback_finished(now, play_id, env),
            FlowEvent::Digit(c) => self.on_digit(now, c, env),
            FlowEvent::QueueAnswered => {
                if let Wait::Queue = self.wait {
                    let queue = self.queue_name().unwrap_or_default();
                    self.finish(FlowEnd::Answered { queue });
                }
            }
            FlowEvent::QueueTimeout | FlowEvent::QueueFull | FlowEvent::QueueNoAgents => {
                if let Wait::Queue = self.wait {
                    self.leave_queue(now, &event, env);
                }
            }
            FlowEvent::Transferred => {
                if let Wait::Transfer = self.wait {
                    let target = match self.current_kind() {
                        Some(StepKind::Transfer { target, .. }) => target.clone(),
                        _ => String::new(),
                    };
                    self.finish(FlowEnd::Transferred { target });
                }
            }
            FlowEvent::CallbackOffered => {
                if matches!(self.wait, Wait::Queue) && self.callback_offer().is_some() {
                    self.callback_offered = true;
                }
            }
            FlowEvent::CallbackBooked | FlowEvent::CallbackRefused => {
                if let Wait::Callback = self.wait {
                    let edge = match (&event, self.current_kind()) {
                        (FlowEvent::CallbackRefused, Some(StepKind::Callback(c))) => {
                            c.on_invalid.as_ref().map(|t| Edge::Step(t.index))
                        }
                        _ => None,
                    };
                    let edge = edge.unwrap_or_else(|| self.next_edge());
                    self.go(edge);
                    self.run(now, env);
                }
            }
            FlowEvent::TransferFailed => {
                if let Wait::Transfer = self.wait {
                    let edge = match self.current_kind() {
                        Some(StepKind::Transfer {
                            on_failure: Some(t),
                            ..
                        }) => Edge::Step(t.index),
                        _ => self.next_edge(),
                    };
                    self.go(edge);
                    self.run(now, env);
                }
            }
        }
    }

    /// Call when `poll_timeout()` has passed.
    pub fn handle_timeout(&mut self, now: Instant, env: &dyn FlowEnv) {
        let due = self.poll_timeout().is_some_and(|d| d <= now);
        if !due {
            return;
        }
        if let Some(t) = &mut self.trace {
            t.push(TraceEntry::Timeout);
        }
        self.steps_this_event = 0;
        let partial = match &mut self.wait {
            Wait::Menu { .. } => String::new(),
            Wait::Collect { digits, .. } => std::mem::take(digits),
            _ => return,
        };
        if partial.is_empty() {
            self.retry_or_give_up(now, true, env);
        } else {
            self.collect_done(now, partial, env);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.wait {
            Wait::Menu { deadline, .. } | Wait::Collect { deadline, .. } => deadline,
            _ => None,
        }
    }

    pub fn poll_action(&mut self) -> Option<FlowAction> {
        self.actions.pop_front()
    }

    /// The language the caller chose, if they have.
    pub fn language(&self) -> Option<Language> {
        self.language
    }

    /// Step names visited so far, for logs and call records.
    pub fn path(&self) -> &[String] {
        &self.path
    }

    /// How the call left the flow, once it has.
    pub fn end(&self) -> Option<&FlowEnd> {
        self.end.as_ref()
    }

    pub fn awaiting(&self) -> Awaiting {
        match &self.wait {
            Wait::Playback { play_id, .. } => Awaiting::Playback { play_id: *play_id },
            Wait::Menu {
                play_id: Some(p), ..
            }
            | Wait::Collect {
                play_id: Some(p), ..
            } => Awaiting::Playback { play_id: *p },
            Wait::Menu { .. } => Awaiting::Input { partial: false },
            Wait::Collect { digits, .. } => Awaiting::Input {
                partial: !digits.is_empty(),
            },
            Wait::Queue => Awaiting::Queue,
            Wait::Transfer => Awaiting::Transfer,
            Wait::Callback => Awaiting::Callback,
            Wait::Running | Wait::Done => Awaiting::Finished,
        }
    }

    /// The callback offer of the queue step the caller waits in, if any.
    pub fn callback_offer(&self) -> Option<&CallbackOffer> {
        match (&self.wait, self.current_kind()) {
            (Wait::Queue, Some(StepKind::Queue(q))) => q.callback.as_ref(),
            _ => None,
        }
    }

    /// Digits collected so far, by variable.
    pub fn variables(&self) -> &BTreeMap<String, String> {
        &self.vars
    }

    /// The flow set this call runs on.
    pub fn flow_set(&self) -> &Arc<FlowSet> {
        &self.set
    }

    /// Trace entries since the last call (empty unless started traced).
    pub fn take_trace(&mut self) -> Vec<TraceEntry> {
        self.trace.as_mut().map(std::mem::take).unwrap_or_default()
    }

    // ---- internals ----

    fn emit(&mut self, action: FlowAction) {
        if let Some(t) = &mut self.trace {
            t.push(TraceEntry::Action(action.clone()));
        }
        self.actions.push_back(action);
    }

    fn finish(&mut self, end: FlowEnd) {
        if let FlowEnd::Hangup { reason } = &end {
            self.emit(FlowAction::Hangup {
                reason: reason.clone(),
            });
        }
        self.end = Some(end);
        self.wait = Wait::Done;
        self.stack.clear();
    }

    fn current_kind(&self) -> Option<&StepKind> {
        let frame = self.stack.last()?;
        self.set
            .flows
            .get(frame.flow)?
            .steps
            .get(frame.step)
            .map(|s| &s.kind)
    }

    fn queue_name(&self) -> Option<String> {
        match self.current_kind()? {
            StepKind::Queue(q) => Some(self.queue_for(&q.queue)),
            _ => None,
        }
    }

    fn next_edge(&self) -> Edge {
        match self.stack.last() {
            Some(f) => match self.set.flows.get(f.flow) {
                Some(flow) if f.step + 1 < flow.steps.len() => Edge::Step(f.step + 1),
                _ => Edge::End,
            },
            None => Edge::End,
        }
    }

    /// Moves to a step of the current flow, or returns from it.
    fn go(&mut self, edge: Edge) {
        self.wait = Wait::Running;
        match edge {
            Edge::Step(i) => {
                if let Some(f) = self.stack.last_mut() {
                    f.step = i;
                }
            }
            Edge::End => self.return_from_flow(),
        }
    }

    fn return_from_flow(&mut self) {
        self.stack.pop();
        if self.stack.is_empty() {
            self.finish(FlowEnd::Hangup {
                reason: "end_of_flow".into(),
            });
            return;
        }
        // The caller continues after its `call` step.
        let edge = self.next_edge();
        self.go(edge);
    }

    fn current_language(&self) -> Language {
        self.language.unwrap_or(self.set.default_language)
    }

    /// A queue name with `{lang}` filled in with the current language.
    fn queue_for(&self, name: &str) -> String {
        name.replace(
            super::load::LANG_PLACEHOLDER,
            self.current_language().code(),
        )
    }

    fn set_language(&mut self, l: Language) {
        if self.language != Some(l) {
            self.language = Some(l);
            self.emit(FlowAction::LanguageSelected(l));
        }
    }

    /// Runs steps until one waits or the call ends.
    fn run(&mut self, now: Instant, env: &dyn FlowEnv) {
        while matches!(self.wait, Wait::Running) {
            self.steps_this_event += 1;
            if self.steps_this_event > MAX_STEPS_PER_EVENT {
                self.finish(FlowEnd::Hangup {
                    reason: "step_limit".into(),
                });
                return;
            }
            let Some(frame) = self.stack.last().copied() else {
                self.finish(FlowEnd::Hangup {
                    reason: "end_of_flow".into(),
                });
                return;
            };
            let set = Arc::clone(&self.set);
            let Some(flow) = set.flows.get(frame.flow) else {
                self.finish(FlowEnd::Hangup {
                    reason: "internal_error".into(),
                });
                return;
            };
            let Some(step) = flow.steps.get(frame.step) else {
                self.return_from_flow();
                continue;
            };
            let name = flow.step_name(frame.step);
            if let Some(t) = &mut self.trace {
                t.push(TraceEntry::Step {
                    name: name.clone(),
                    kind: step.kind.name(),
                });
            }
            if self.path.len() < MAX_PATH {
                self.path.push(name);
            }
            self.execute(now, &step.kind, env);
        }
    }

    fn execute(&mut self, now: Instant, kind: &StepKind, env: &dyn FlowEnv) {
        match kind {
            StepKind::Play { items, barge_in } => {
                let prompts = self.resolve_items(items, env);
                if prompts.is_empty() {
                    self.go(self.next_edge());
                    return;
                }
                if *barge_in && !self.typeahead.is_empty() {
                    // The caller already pressed ahead: skip what they would interrupt.
                    self.go(self.next_edge());
                    return;
                }
                let play_id = self.play(prompts);
                self.wait = Wait::Playback {
                    play_id,
                    barge_in: *barge_in,
                };
            }
            StepKind::Menu(m) => self.start_menu(now, m, 1, &[], env),
            StepKind::Collect(c) => self.start_collect(now, c, 1, &[], env),
            StepKind::SetLanguage(l) => {
                self.set_language(*l);
                self.go(self.next_edge());
            }
            StepKind::Branch { arms, otherwise } => {
                let edge = arms
                    .iter()
                    .find(|(c, _)| self.holds(c, env))
                    .map(|(_, t)| Edge::Step(t.index))
                    .or_else(|| otherwise.as_ref().map(|t| Edge::Step(t.index)))
                    .unwrap_or_else(|| self.next_edge());
                self.go(edge);
            }
            StepKind::Queue(q) => {
                let queue = self.queue_for(&q.queue);
                let escalate_to = q
                    .escalate
                    .as_ref()
                    .map(|e| self.queue_for(&e.queue))
                    .filter(|e| *e != queue);
                let def = self.set.queues.get(&queue);
                let options = QueueOptions {
                    skills: def.map(|d| d.skills.clone()).unwrap_or_default(),
                    language: self.language,
                    priority: q.priority,
                    max_wait: q.max_wait.or(def.and_then(|d| d.max_wait)),
                    max_waiting: def.and_then(|d| d.max_waiting),
                    announce_every: q.announce_every,
                    escalate_after: escalate_to
                        .as_ref()
                        .and(q.escalate.as_ref())
                        .map(|e| e.after),
                    escalate_to,
                    messages: q.messages.clone(),
                };
                self.callback_offered = false;
                self.emit(FlowAction::Queue { queue, options });
                self.wait = Wait::Queue;
            }
            StepKind::Goto(t) => self.go(Edge::Step(t.index)),
            StepKind::Call { index, .. } => {
                if self.stack.len() >= MAX_CALL_DEPTH {
                    self.finish(FlowEnd::Hangup {
                        reason: "call_depth".into(),
                    });
                    return;
                }
                self.stack.push(Frame {
                    flow: *index,
                    step: 0,
                });
            }
            StepKind::Return => self.return_from_flow(),
            StepKind::Transfer { target, .. } => {
                self.emit(FlowAction::Transfer {
                    target: target.clone(),
                });
                self.wait = Wait::Transfer;
            }
            StepKind::Callback(c) => {
                let (number, typed) = match &c.number {
                    CallbackNumber::Caller => (Some(self.call.caller.clone()), false),
                    CallbackNumber::Collected(var) => (self.vars.get(var).cloned(), true),
                };
                self.emit(FlowAction::BookCallback(super::CallbackRequest {
                    number,
                    typed,
                    attempts: c.attempts,
                    retry_after: c.retry_after,
                    max_wait: c.max_wait,
                    window: c.window.as_ref().map(|(w, _)| w.clone()),
                }));
                self.wait = Wait::Callback;
            }
            StepKind::Hangup { reason } => self.finish(FlowEnd::Hangup {
                reason: reason.clone(),
            }),
        }
    }

    fn play(&mut self, prompts: Vec<PromptRef>) -> u64 {
        let play_id = self.next_play_id;
        self.next_play_id += 1;
        self.emit(FlowAction::Play { play_id, prompts });
        play_id
    }

    fn resolve_items(&self, items: &[PlayItem], env: &dyn FlowEnv) -> Vec<PromptRef> {
        let mut out = Vec::new();
        for item in items {
            match item {
                PlayItem::Prompt { id, language, .. } => out.push(PromptRef {
                    id: id.clone(),
                    language: language.unwrap_or_else(|| self.current_language()),
                }),
                PlayItem::Count {
                    source,
                    prompt,
                    numbers,
                    max,
                    ..
                } => {
                    let Some(n) = self.number(source, env) else {
                        continue;
                    };
                    let mut n = n.min(*max);
                    let language = self.current_language();
                    // An estimate is said "about N": round it up to the next
                    // number the recordings can say, never down (never promise
                    // a shorter wait than expected).
                    if matches!(source, NumberSource::WaitMinutes(_)) {
                        let catalogue = &self.set.catalogue;
                        let sayable = |m: u64| {
                            catalogue.text(&format!("{prompt}.{m}"), language).is_some()
                                || (catalogue
                                    .text(&format!("{numbers}.{m}"), language)
                                    .is_some()
                                    && catalogue
                                        .text(
                                            &format!("{prompt}.{}", plural::category(language, m)),
                                            language,
                                        )
                                        .is_some())
                        };
                        if let Some(m) = (n..=*max).find(|&m| sayable(m)) {
                            n = m;
                        }
                    }
                    let whole = format!("{prompt}.{n}");
                    if self.set.catalogue.text(&whole, language).is_some() {
                        out.push(PromptRef {
                            id: whole,
                            language,
                        });
                    } else {
                        let category = plural::category(language, n);
                        out.push(PromptRef {
                            id: format!("{numbers}.{n}"),
                            language,
                        });
                        out.push(PromptRef {
                            id: format!("{prompt}.{category}"),
                            language,
                        });
                    }
                }
            }
        }
        out
    }

    fn number(&self, source: &NumberSource, env: &dyn FlowEnv) -> Option<u64> {
        match source {
            NumberSource::Var(v) => {
                let digits = self.vars.get(v)?;
                if digits.len() > 18 {
                    return None;
                }
                digits.parse().ok()
            }
            NumberSource::Waiting(q) => {
                Some(u64::from(env.queue_state(&self.queue_for(q)).waiting))
            }
            NumberSource::WaitMinutes(q) => {
                let secs = env.queue_state(&self.queue_for(q)).estimated_wait.as_secs();
                Some(secs.div_ceil(60).max(1))
            }
            NumberSource::AgentsReady(s) => Some(u64::from(env.agents_ready(s))),
        }
    }

    fn holds(&self, c: &Condition, env: &dyn FlowEnv) -> bool {
        match c {
            Condition::All(list) => list.iter().all(|c| self.holds(c, env)),
            Condition::Any(list) => list.iter().any(|c| self.holds(c, env)),
            Condition::Not(c) => !self.holds(c, env),
            Condition::Caller(list) => list.contains(&self.call.caller),
            Condition::CallerPrefix(list) => list
                .iter()
                .any(|p| self.call.caller.starts_with(p.as_str())),
            Condition::Dialled(list) => list.contains(&self.call.dialled),
            Condition::Language(list) => list.iter().any(|(l, _)| *l == self.current_language()),
            Condition::Digits {
                var,
                equals,
                prefix,
                length,
            } => {
                let value = self.vars.get(var).map(String::as_str).unwrap_or("");
                equals.as_ref().is_none_or(|e| e == value)
                    && prefix
                        .as_ref()
                        .is_none_or(|p| value.starts_with(p.as_str()))
                    && length.is_none_or(|l| value.len() == l)
            }
            Condition::Schedule(name, _) => match self.set.schedules.get(name) {
                Some(s) => s.is_open(env.now_wall()),
                None => name == super::schedule::ALWAYS,
            },
            Condition::Holiday(want) => {
                let local = env.now_wall().with_timezone(&chrono_tz::Europe::Oslo);
                super::schedule::norwegian_holiday(local.date_naive()).is_some() == *want
            }
            Condition::QueueWaiting { queue, bounds, .. } => {
                bounds.holds(env.queue_state(&self.queue_for(queue)).waiting)
            }
            Condition::EstimatedWait { queue, bounds, .. } => {
                bounds.holds(env.queue_state(&self.queue_for(queue)).estimated_wait)
            }
            Condition::AgentsReady { skill, bounds } => bounds.holds(env.agents_ready(skill)),
        }
    }

    // ---- menus and collects ----

    fn menu(&self) -> Option<&Menu> {
        match self.current_kind()? {
            StepKind::Menu(m) => Some(m),
            _ => None,
        }
    }

    fn collect(&self) -> Option<&Collect> {
        match self.current_kind()? {
            StepKind::Collect(c) => Some(c),
            _ => None,
        }
    }

    fn start_menu(
        &mut self,
        now: Instant,
        m: &Menu,
        attempt: u32,
        before: &[PlayItem],
        env: &dyn FlowEnv,
    ) {
        if !m.barge_in {
            self.typeahead.clear();
        } else if let Some(d) = self.typeahead.pop_front() {
            self.wait = Wait::Menu {
                play_id: None,
                deadline: None,
                attempt,
            };
            self.choose(now, d, env);
            return;
        }
        let mut prompts = self.resolve_items(before, env);
        prompts.extend(self.resolve_items(&m.prompt, env));
        let play_id = if prompts.is_empty() {
            None
        } else {
            Some(self.play(prompts))
        };
        self.wait = Wait::Menu {
            play_id,
            deadline: play_id.is_none().then(|| now + m.timeout),
            attempt,
        };
    }

    fn start_collect(
        &mut self,
        now: Instant,
        c: &Collect,
        attempt: u32,
        before: &[PlayItem],
        env: &dyn FlowEnv,
    ) {
        self.wait = Wait::Collect {
            play_id: None,
            deadline: None,
            attempt,
            digits: String::new(),
        };
        if !c.barge_in {
            self.typeahead.clear();
        } else if !self.typeahead.is_empty() {
            while let Some(d) = self.typeahead.pop_front() {
                self.collect_digit(now, d, env);
                if !matches!(self.wait, Wait::Collect { .. }) {
                    return;
                }
            }
            return;
        }
        let mut prompts = self.resolve_items(before, env);
        prompts.extend(self.resolve_items(&c.prompt, env));
        let play_id = (!prompts.is_empty()).then(|| self.play(prompts));
        self.wait = Wait::Collect {
            play_id,
            deadline: play_id.is_none().then(|| now + c.timeout),
            attempt,
            digits: String::new(),
        };
    }

    fn on_playback_finished(&mut self, now: Instant, finished: u64, env: &dyn FlowEnv) {
        let timeout = match self.current_kind() {
            Some(StepKind::Menu(m)) => m.timeout,
            Some(StepKind::Collect(c)) => c.timeout,
            _ => Duration::ZERO,
        };
        match &mut self.wait {
            Wait::Playback { play_id, .. } if *play_id == finished => {
                self.go(self.next_edge());
                self.run(now, env);
            }
            Wait::Menu {
                play_id, deadline, ..
            }
            | Wait::Collect {
                play_id, deadline, ..
            } if *play_id == Some(finished) => {
                *play_id = None;
                *deadline = Some(now + timeout);
            }
            _ => {}
        }
    }

    fn on_digit(&mut self, now: Instant, digit: char, env: &dyn FlowEnv) {
        if !(digit.is_ascii_digit() || matches!(digit, '*' | '#' | 'A'..='D')) {
            return;
        }
        match &self.wait {
            Wait::Playback { barge_in: true, .. } => {
                self.emit(FlowAction::StopPlayback);
                self.push_typeahead(digit);
                self.go(self.next_edge());
                self.run(now, env);
            }
            Wait::Menu { play_id, .. } => {
                if play_id.is_some() {
                    if !self.menu().is_some_and(|m| m.barge_in) {
                        return;
                    }
                    self.emit(FlowAction::StopPlayback);
                }
                self.choose(now, digit, env);
            }
            Wait::Collect { play_id, .. } => {
                if play_id.is_some() {
                    if !self.collect().is_some_and(|c| c.barge_in) {
                        return;
                    }
                    self.emit(FlowAction::StopPlayback);
                }
                self.collect_digit(now, digit, env);
            }
            Wait::Playback { .. } | Wait::Running => self.push_typeahead(digit),
            Wait::Queue => {
                let goto = self
                    .callback_offer()
                    .filter(|c| self.callback_offered && c.key == digit)
                    .map(|c| c.goto.index);
                if let Some(index) = goto {
                    // The caller keeps their place while the flow confirms.
                    self.callback_offered = false;
                    self.emit(FlowAction::HoldPlace);
                    self.go(Edge::Step(index));
                    self.run(now, env);
                }
            }
            Wait::Transfer | Wait::Callback | Wait::Done => {}
        }
    }

    fn push_typeahead(&mut self, digit: char) {
        if self.typeahead.len() < TYPEAHEAD_DIGITS {
            self.typeahead.push_back(digit);
        }
    }

    fn choose(&mut self, now: Instant, digit: char, env: &dyn FlowEnv) {
        let Some(menu) = self.menu() else {
            return;
        };
        let choice = menu
            .choices
            .iter()
            .find(|(d, _)| *d == digit)
            .map(|(_, c)| c.clone());
        match choice {
            Some(c) => {
                self.apply_choice(&c);
                self.run(now, env);
            }
            None => self.retry_or_give_up(now, false, env),
        }
    }

    fn apply_choice(&mut self, c: &Choice) {
        if let Some((l, _)) = c.language {
            self.set_language(l);
        }
        if let Some(reason) = &c.hangup {
            self.finish(FlowEnd::Hangup {
                reason: reason.clone(),
            });
            return;
        }
        let edge = match &c.goto {
            Some(t) => Edge::Step(t.index),
            None => self.next_edge(),
        };
        self.go(edge);
    }

    /// No input or a wrong one: play the matching prompt and ask again, or take
    /// the give-up action when attempts are spent.
    fn retry_or_give_up(&mut self, now: Instant, no_input: bool, env: &dyn FlowEnv) {
        let attempt = match self.wait {
            Wait::Menu { attempt, .. } | Wait::Collect { attempt, .. } => attempt,
            _ => return,
        };
        let set = Arc::clone(&self.set);
        let Some(frame) = self.stack.last().copied() else {
            return;
        };
        let Some(step) = set
            .flows
            .get(frame.flow)
            .and_then(|f| f.steps.get(frame.step))
        else {
            return;
        };
        match &step.kind {
            StepKind::Menu(m) => {
                if attempt < m.attempts {
                    let before = if no_input {
                        &m.no_input_prompt
                    } else {
                        &m.invalid_prompt
                    };
                    self.start_menu(now, m, attempt + 1, before, env);
                } else {
                    let give_up = if no_input {
                        &m.on_no_input
                    } else {
                        &m.on_invalid
                    };
                    self.apply_choice(give_up);
                    self.run(now, env);
                }
            }
            StepKind::Collect(c) => {
                if attempt < c.attempts {
                    let before = if no_input {
                        &c.no_input_prompt
                    } else {
                        &c.invalid_prompt
                    };
                    self.start_collect(now, c, attempt + 1, before, env);
                } else {
                    let give_up = if no_input {
                        &c.on_no_input
                    } else {
                        &c.on_invalid
                    };
                    self.apply_choice(give_up);
                    self.run(now, env);
                }
            }
            _ => {}
        }
    }

    fn collect_digit(&mut self, now: Instant, digit: char, env: &dyn FlowEnv) {
        let Some(c) = self.collect() else {
            return;
        };
        let (terminator, max, inter) = (c.terminator, c.max_digits, c.inter_digit_timeout);
        let Wait::Collect {
            digits,
            deadline,
            play_id,
            ..
        } = &mut self.wait
        else {
            return;
        };
        *play_id = None;
        if Some(digit) == terminator {
            let digits = std::mem::take(digits);
            self.collect_done(now, digits, env);
            return;
        }
        digits.push(digit);
        if digits.len() >= max {
            let digits = std::mem::take(digits);
            self.collect_done(now, digits, env);
            return;
        }
        *deadline = Some(now + inter);
    }

    fn collect_done(&mut self, now: Instant, digits: String, env: &dyn FlowEnv) {
        let Some(c) = self.collect() else {
            return;
        };
        let valid = (c.min_digits..=c.max_digits).contains(&digits.len())
            && digits
                .chars()
                .all(|d| d.is_ascii_digit() || d == '*' || d == '#');
        if !valid {
            if digits.is_empty() {
                self.retry_or_give_up(now, true, env);
            } else {
                self.retry_or_give_up(now, false, env);
            }
            return;
        }
        let into = c.into.clone();
        if self.vars.len() < MAX_VARS || self.vars.contains_key(&into) {
            self.vars.insert(into, digits);
        }
        self.go(self.next_edge());
        self.run(now, env);
    }

    fn leave_queue(&mut self, now: Instant, event: &FlowEvent, env: &dyn FlowEnv) {
        let edge = match self.current_kind() {
            Some(StepKind::Queue(q)) => {
                let exit = match event {
                    FlowEvent::QueueTimeout => &q.on_timeout,
                    FlowEvent::QueueFull => &q.on_full,
                    _ => &q.on_no_agents,
                };
                exit.as_ref().map(|t| Edge::Step(t.index))
            }
            _ => None,
        };
        let edge = edge.unwrap_or_else(|| self.next_edge());
        self.go(edge);
        self.run(now, env);
    }
}
