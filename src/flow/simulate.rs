//! `flows simulate`: walks a flow with given digits, time, caller and queue state
//! on the live engine, with a fake clock, and tells what the caller would hear.

use super::engine::{Awaiting, FlowEnd, FlowRun, TraceEntry};
use super::{CallInfo, FlowAction, FlowEnv, FlowEvent, FlowSet, PromptRef, QueueState};
use crate::duration;
use crate::language::Language;
use chrono::{DateTime, Utc};
use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Engine rounds a simulation may take before it is cut off.
const MAX_ROUNDS: usize = 10_000;
/// Speech rate assumed for a prompt whose audio is missing.
const CHARS_PER_SECOND: u64 = 14;

/// What the queue does with the caller when the flow queues them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueOutcome {
    Answered,
    Timeout,
    Full,
    NoAgents,
    /// The caller is offered a callback (the queue step's `callback`) and
    /// presses its key; the next digits answer the flow that follows.
    Callback,
}

impl QueueOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueOutcome::Answered => "answered",
            QueueOutcome::Timeout => "timeout",
            QueueOutcome::Full => "full",
            QueueOutcome::NoAgents => "no_agents",
            QueueOutcome::Callback => "callback",
        }
    }

    pub fn parse(text: &str) -> Option<QueueOutcome> {
        match text {
            "answered" => Some(QueueOutcome::Answered),
            "timeout" => Some(QueueOutcome::Timeout),
            "full" => Some(QueueOutcome::Full),
            "no_agents" => Some(QueueOutcome::NoAgents),
            "callback" => Some(QueueOutcome::Callback),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// Flow to start; when `None`, the entry for `dialled`.
    pub flow: Option<String>,
    pub dialled: String,
    pub caller: String,
    /// Input at each point the flow waits for the caller, in order: one item per
    /// wait (several keys for a collect; empty means no input, so the timeout).
    pub digits: Vec<String>,
    /// Wall-clock time the call starts.
    pub at: DateTime<Utc>,
    pub queues: BTreeMap<String, QueueState>,
    pub agents_ready: BTreeMap<String, u32>,
    /// Outcome of each queue step in turn; answered once this runs out.
    pub queue_outcomes: Vec<QueueOutcome>,
    /// Whether transfers succeed.
    pub transfer_succeeds: bool,
    /// Let prompts take their audio's length (else playback ends at once).
    pub prompt_durations: bool,
}

/// Reads `--digits` as written on the command line: `2,1` or `,3,1234#` (an
/// empty item is silence at that wait).
pub fn parse_digits(text: &str) -> Result<Vec<String>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let items: Vec<String> = text.split(',').map(|s| s.trim().to_string()).collect();
    if items.len() > 1000 {
        return Err("more than 1000 digit items".into());
    }
    match items.iter().find(|i| {
        !i.chars()
            .all(|c| c.is_ascii_digit() || c == '*' || c == '#')
    }) {
        Some(bad) => Err(format!("digits `{bad}` may hold only 0-9, * and #")),
        None => Ok(items),
    }
}

impl Default for SimulateOptions {
    fn default() -> Self {
        SimulateOptions {
            flow: None,
            dialled: String::new(),
            caller: "anonymous".into(),
            digits: Vec::new(),
            at: DateTime::<Utc>::UNIX_EPOCH,
            queues: BTreeMap::new(),
            agents_ready: BTreeMap::new(),
            queue_outcomes: Vec::new(),
            transfer_succeeds: true,
            prompt_durations: false,
        }
    }
}

/// One line of a simulated walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimLine {
    Step {
        name: String,
        kind: &'static str,
    },
    Prompt {
        prompt: PromptRef,
        text: String,
    },
    Digit(char),
    NoInput,
    StopPlayback,
    Language(Language),
    Queue {
        queue: String,
        detail: String,
    },
    QueueOutcome(QueueOutcome),
    Transfer {
        target: String,
        succeeded: bool,
    },
    /// A callback booked for `number` (`None`: no number, not booked).
    Callback {
        number: Option<String>,
    },
    End(FlowEnd),
    Error(String),
}

#[derive(Debug, Clone, Default)]
pub struct SimulationReport {
    pub flow: String,
    pub version: String,
    pub at: Option<DateTime<Utc>>,
    /// (time since the call started, line)
    pub lines: Vec<(Duration, SimLine)>,
    pub path: Vec<String>,
    pub prompts: Vec<PromptRef>,
    pub language: Option<Language>,
    pub queues: Vec<String>,
    pub end: Option<FlowEnd>,
    /// Input items the walk never used.
    pub unused_digits: Vec<String>,
}

struct SimEnv<'a> {
    at: DateTime<Utc>,
    start: Instant,
    now: Cell<Instant>,
    options: &'a SimulateOptions,
}

impl FlowEnv for SimEnv<'_> {
    fn now_wall(&self) -> DateTime<Utc> {
        let elapsed = self.now.get().saturating_duration_since(self.start);
        self.at + chrono::Duration::from_std(elapsed).unwrap_or_default()
    }
    fn queue_state(&self, queue: &str) -> QueueState {
        self.options.queues.get(queue).copied().unwrap_or_default()
    }
    fn agents_ready(&self, skill: &str) -> u32 {
        self.options.agents_ready.get(skill).copied().unwrap_or(0)
    }
}

/// Walks a flow as a caller would, on the live engine with a fake clock.
pub fn simulate(set: &Arc<FlowSet>, options: &SimulateOptions) -> SimulationReport {
    let flow = options
        .flow
        .clone()
        .or_else(|| set.entry_for(&options.dialled).map(str::to_string))
        .unwrap_or_default();
    let mut report = SimulationReport {
        flow: flow.clone(),
        version: set.version().to_string(),
        at: Some(options.at),
        ..SimulationReport::default()
    };
    if set.flow(&flow).is_none() {
        report.lines.push((
            Duration::ZERO,
            SimLine::Error(format!(
                "no flow `{flow}` (and no entry for `{}`){}",
                options.dialled,
                super::suggest::did_you_mean(&flow, set.flows.iter().map(|f| f.name.as_str()))
            )),
        ));
        return report;
    }
    let start = Instant::now();
    let env = SimEnv {
        at: options.at,
        start,
        now: Cell::new(start),
        options,
    };
    let call = CallInfo {
        caller: options.caller.clone(),
        dialled: options.dialled.clone(),
    };
    let mut digits: VecDeque<String> = options.digits.iter().cloned().collect();
    let mut queue_outcomes: VecDeque<QueueOutcome> =
        options.queue_outcomes.iter().copied().collect();
    let mut run = FlowRun::start_traced(Arc::clone(set), &flow, call, start, &env, true);
    let mut playing: Option<(u64, Duration)> = None;
    let mut pending_queue: Option<Duration> = None;

    for _ in 0..MAX_ROUNDS {
        let elapsed = env.now.get().saturating_duration_since(start);
        for entry in run.take_trace() {
            record(
                &mut report,
                set,
                elapsed,
                entry,
                options,
                &mut playing,
                &mut pending_queue,
            );
        }
        while run.poll_action().is_some() {}
        let now = env.now.get();
        match run.awaiting() {
            Awaiting::Finished => break,
            Awaiting::Playback { play_id } => {
                let length = match playing {
                    Some((id, length)) if id == play_id => length,
                    _ => Duration::ZERO,
                };
                env.now.set(now + length);
                playing = None;
                run.handle_event(env.now.get(), FlowEvent::PlaybackFinished { play_id }, &env);
            }
            Awaiting::Input { partial } => {
                let item = if partial { None } else { digits.pop_front() };
                match item {
                    Some(keys) if !keys.is_empty() => {
                        for key in keys.chars() {
                            run.handle_event(env.now.get(), FlowEvent::Digit(key), &env);
                        }
                    }
                    _ => {
                        if let Some(deadline) = run.poll_timeout() {
                            env.now.set(deadline.max(now));
                        }
                        run.handle_timeout(env.now.get(), &env);
                    }
                }
            }
            Awaiting::Queue => {
                let outcome = queue_outcomes.pop_front().unwrap_or(QueueOutcome::Answered);
                let elapsed = env.now.get().saturating_duration_since(start);
                report.lines.push((elapsed, SimLine::QueueOutcome(outcome)));
                if outcome == QueueOutcome::Timeout {
                    env.now.set(now + pending_queue.unwrap_or_default());
                }
                let event = match outcome {
                    QueueOutcome::Answered => FlowEvent::QueueAnswered,
                    QueueOutcome::Timeout => FlowEvent::QueueTimeout,
                    QueueOutcome::Full => FlowEvent::QueueFull,
                    QueueOutcome::NoAgents => FlowEvent::QueueNoAgents,
                    QueueOutcome::Callback => {
                        offer_callback(&mut run, &mut report, set, &env, start);
                        continue;
                    }
                };
                run.handle_event(env.now.get(), event, &env);
            }
            Awaiting::Callback => {
                // Booked when the step had a number (trunks are the
                // service's config, not the flows': not checked here).
                let number = report.lines.iter().rev().find_map(|(_, l)| match l {
                    SimLine::Callback { number } => Some(number.clone()),
                    _ => None,
                });
                let event = if number.flatten().is_some() {
                    FlowEvent::CallbackBooked
                } else {
                    FlowEvent::CallbackRefused
                };
                run.handle_event(env.now.get(), event, &env);
            }
            Awaiting::Transfer => {
                let event = if options.transfer_succeeds {
                    FlowEvent::Transferred
                } else {
                    FlowEvent::TransferFailed
                };
                run.handle_event(env.now.get(), event, &env);
            }
        }
    }
    let elapsed = env.now.get().saturating_duration_since(start);
    for entry in run.take_trace() {
        record(
            &mut report,
            set,
            elapsed,
            entry,
            options,
            &mut playing,
            &mut pending_queue,
        );
    }
    report.path = run.path().to_vec();
    report.language = run.language();
    report.end = run.end().cloned();
    if report.end.is_none() {
        report
            .lines
            .push((elapsed, SimLine::Error("the walk did not finish".into())));
    }
    report.unused_digits = digits.into_iter().collect();
    report
}

fn record(
    report: &mut SimulationReport,
    set: &FlowSet,
    elapsed: Duration,
    entry: TraceEntry,
    options: &SimulateOptions,
    playing: &mut Option<(u64, Duration)>,
    pending_queue: &mut Option<Duration>,
) {
    let mut push = |line| report.lines.push((elapsed, line));
    match entry {
        TraceEntry::Step { name, kind } => push(SimLine::Step { name, kind }),
        TraceEntry::Digit(c) => push(SimLine::Digit(c)),
        TraceEntry::Timeout => push(SimLine::NoInput),
        TraceEntry::Event(FlowEvent::Transferred) | TraceEntry::Event(_) => {}
        TraceEntry::Action(action) => match action {
            FlowAction::Play { play_id, prompts } => {
                let mut length = Duration::ZERO;
                for p in prompts {
                    let text = set
                        .catalogue
                        .text(&p.id, p.language)
                        .unwrap_or("")
                        .to_string();
                    if options.prompt_durations {
                        length += prompt_length(set, &p, &text);
                    }
                    report.lines.push((
                        elapsed,
                        SimLine::Prompt {
                            prompt: p.clone(),
                            text,
                        },
                    ));
                    report.prompts.push(p);
                }
                *playing = Some((play_id, length));
            }
            FlowAction::StopPlayback => push(SimLine::StopPlayback),
            FlowAction::LanguageSelected(l) => push(SimLine::Language(l)),
            FlowAction::Queue { queue, options } => {
                let mut detail = Vec::new();
                if !options.skills.is_empty() {
                    detail.push(format!("skills {}", options.skills.join("+")));
                }
                if let Some(d) = options.max_wait {
                    detail.push(format!("max wait {}", duration::format(d)));
                }
                if let (Some(after), Some(to)) = (options.escalate_after, &options.escalate_to) {
                    detail.push(format!(
                        "escalates to {to} after {}",
                        duration::format(after)
                    ));
                }
                for m in &options.messages {
                    let every = m
                        .every
                        .map(|e| format!(" every {}", duration::format(e)))
                        .unwrap_or_default();
                    detail.push(format!(
                        "says {} after {}{every}",
                        m.prompts.join("+"),
                        duration::format(m.after)
                    ));
                }
                if options.priority != 0 {
                    detail.push(format!("priority {}", options.priority));
                }
                *pending_queue = options.max_wait;
                report.queues.push(queue.clone());
                report.lines.push((
                    elapsed,
                    SimLine::Queue {
                        queue,
                        detail: detail.join(", "),
                    },
                ));
            }
            FlowAction::Transfer { target } => push(SimLine::Transfer {
                target,
                succeeded: options.transfer_succeeds,
            }),
            FlowAction::BookCallback(request) => push(SimLine::Callback {
                number: request.number,
            }),
            FlowAction::HoldPlace | FlowAction::Hangup { .. } => {}
        },
    }
}

/// The callback offer as the call layer makes it: its prompt is said, then
/// the caller presses its key.
fn offer_callback(
    run: &mut FlowRun,
    report: &mut SimulationReport,
    set: &FlowSet,
    env: &SimEnv,
    start: Instant,
) {
    let elapsed = env.now.get().saturating_duration_since(start);
    let Some(offer) = run.callback_offer().cloned() else {
        report.lines.push((
            elapsed,
            SimLine::Error("this queue step offers no callback".into()),
        ));
        run.handle_event(env.now.get(), FlowEvent::QueueAnswered, env);
        return;
    };
    let prompt = PromptRef {
        id: offer.prompt.clone(),
        language: run.language().unwrap_or(set.default_language),
    };
    let text = set
        .catalogue
        .text(&prompt.id, prompt.language)
        .unwrap_or("")
        .to_string();
    report.prompts.push(prompt.clone());
    report
        .lines
        .push((elapsed, SimLine::Prompt { prompt, text }));
    run.handle_event(env.now.get(), FlowEvent::CallbackOffered, env);
    run.handle_event(env.now.get(), FlowEvent::Digit(offer.key), env);
}

/// The audio's length when the file is there, else an estimate from the text.
fn prompt_length(set: &FlowSet, prompt: &PromptRef, text: &str) -> Duration {
    let path = super::Catalogue::audio_path(&set.dir, &prompt.id, prompt.language);
    if let Ok(pcm) = crate::audio::wav::read_file(&path) {
        return pcm.duration();
    }
    Duration::from_millis((text.chars().count() as u64) * 1000 / CHARS_PER_SECOND)
}

impl fmt::Display for SimulationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "flow {} (version {})", self.flow, self.version)?;
        if let Some(at) = self.at {
            let local = at.with_timezone(&chrono_tz::Europe::Oslo);
            write!(f, " at {}", local.format("%Y-%m-%d %H:%M:%S %Z"))?;
        }
        writeln!(f)?;
        for (t, line) in &self.lines {
            let t = format!("{:>6}", format!("{:.1}s", t.as_secs_f64()));
            match line {
                SimLine::Step { name, kind } => writeln!(f, "{t}  {name} ({kind})")?,
                SimLine::Prompt { prompt, text } => writeln!(
                    f,
                    "{t}      [{}] {}: \"{}\"",
                    prompt.language, prompt.id, text
                )?,
                SimLine::Digit(c) => writeln!(f, "{t}      caller presses {c}")?,
                SimLine::NoInput => writeln!(f, "{t}      no input (timeout)")?,
                SimLine::StopPlayback => writeln!(f, "{t}      prompt interrupted")?,
                SimLine::Language(l) => {
                    writeln!(f, "{t}      language: {} ({})", l, l.native_name())?
                }
                SimLine::Queue { queue, detail } => {
                    if detail.is_empty() {
                        writeln!(f, "{t}      queued to {queue}")?
                    } else {
                        writeln!(f, "{t}      queued to {queue} ({detail})")?
                    }
                }
                SimLine::QueueOutcome(o) => writeln!(f, "{t}      queue outcome: {}", o.as_str())?,
                SimLine::Transfer { target, succeeded } => writeln!(
                    f,
                    "{t}      transfer to {target}: {}",
                    if *succeeded { "connected" } else { "failed" }
                )?,
                SimLine::Callback { number: Some(n) } => {
                    writeln!(f, "{t}      callback booked to {n}")?
                }
                SimLine::Callback { number: None } => {
                    writeln!(f, "{t}      callback not booked: no number")?
                }
                SimLine::End(e) => writeln!(f, "{t}  end: {e}")?,
                SimLine::Error(e) => writeln!(f, "{t}  error: {e}")?,
            }
        }
        match &self.end {
            Some(end) => writeln!(f, "end: {end}")?,
            None => writeln!(f, "end: (not reached)")?,
        }
        if !self.unused_digits.is_empty() {
            writeln!(f, "unused input: {}", self.unused_digits.join(","))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_from_the_command_line() {
        assert_eq!(
            parse_digits("2,1"),
            Ok(vec!["2".to_string(), "1".to_string()])
        );
        assert_eq!(parse_digits(",3"), Ok(vec![String::new(), "3".to_string()]));
        assert_eq!(parse_digits(""), Ok(vec![]));
        assert!(parse_digits("1,x").is_err());
    }
}
