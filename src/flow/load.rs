//! Reading a flow directory into the model, reporting every problem with its
//! position instead of stopping at the first.

use super::model::*;
use super::schedule::{self, Schedule, TimeRange};
use super::suggest;
use super::yaml::{Node, Pos, Value};
use super::Diagnostic;
use crate::duration;
use crate::language::Language;
use chrono::NaiveDate;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Files larger than this are refused: flows are small, and memory is bounded.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// At most this many YAML files are read from a flow directory.
pub const MAX_FILES: usize = 256;
const MAX_STEPS: usize = 500;
const MAX_ITEMS: usize = 64;

/// Accepted ranges, so an operator's slip (`50m` menu timeout) is caught.
pub const MENU_TIMEOUT: RangeInclusive<Duration> = secs(1)..=secs(60);
pub const INTER_DIGIT_TIMEOUT: RangeInclusive<Duration> = secs(1)..=secs(30);
pub const QUEUE_MAX_WAIT: RangeInclusive<Duration> = secs(10)..=secs(4 * 3600);
pub const ESCALATE_AFTER: RangeInclusive<Duration> = secs(10)..=secs(2 * 3600);
pub const ANNOUNCE_EVERY: RangeInclusive<Duration> = secs(15)..=secs(3600);
pub const MESSAGE_AFTER: RangeInclusive<Duration> = secs(0)..=secs(4 * 3600);
pub const MESSAGE_EVERY: RangeInclusive<Duration> = secs(30)..=secs(4 * 3600);
/// Messages one queue step may hold.
pub const MAX_WAIT_MESSAGES: usize = 8;
pub const CALLBACK_OFFER_AFTER: RangeInclusive<Duration> = secs(0)..=secs(4 * 3600);
pub const CALLBACK_RETRY_AFTER: RangeInclusive<Duration> = secs(30)..=secs(24 * 3600);
pub const CALLBACK_MAX_WAIT: RangeInclusive<Duration> = secs(10 * 60)..=secs(7 * 24 * 3600);
/// Defaults of a `callback` step: three calls, ten minutes apart, within a day.
pub const CALLBACK_ATTEMPTS: u32 = 3;
pub const CALLBACK_RETRY_DEFAULT: Duration = secs(10 * 60);
pub const CALLBACK_MAX_WAIT_DEFAULT: Duration = secs(24 * 3600);
/// The offer's defaults: said after 30 s, key 1, prompt `callback_offer`.
pub const CALLBACK_OFFER_AFTER_DEFAULT: Duration = secs(30);
pub const ATTEMPTS: RangeInclusive<u64> = 1..=10;
pub const DIGITS: RangeInclusive<u64> = 1..=32;
pub const COUNT_MAX: RangeInclusive<u64> = 0..=999;

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The step kinds, in the order the docs list them.
pub const STEP_KINDS: [&str; 12] = [
    "play",
    "menu",
    "collect",
    "set_language",
    "branch",
    "queue",
    "goto",
    "call",
    "return",
    "transfer",
    "callback",
    "hangup",
];

/// Everything read from the YAML files of a directory, before cross-checks.
#[derive(Debug, Default)]
pub struct Parsed {
    pub flows: Vec<Flow>,
    pub queues: Vec<QueueDef>,
    pub schedules: Vec<(Schedule, Origin)>,
    /// (dialled number or `default`, flow, where)
    pub entries: Vec<(String, String, Origin)>,
    pub languages: Option<(Vec<Language>, Origin)>,
    pub default_language: Option<(Language, Origin)>,
    pub transfer_allow: Vec<String>,
    /// What an error kept from being read.
    pub unread: Unread,
}

/// What could not be read because of an error already reported, so that the
/// cross-checks do not report what follows from it a second time (an entry
/// naming a flow in a file with a syntax error is not also "unknown").
#[derive(Debug, Default)]
pub struct Unread {
    /// A file, or a part whose names are lost, could not be read: any flow,
    /// queue or schedule may have been defined there, any entry written there.
    pub names: bool,
    /// Entries that could not be read.
    pub entries: bool,
    pub flows: BTreeSet<String>,
    pub queues: BTreeSet<String>,
    pub schedules: BTreeSet<String>,
    /// Flows with steps that could not be read: the ids those steps have.
    pub steps: BTreeMap<String, UnreadSteps>,
    /// The prompt catalogue could not be read.
    pub catalogue: bool,
    /// Prompts of the catalogue that could not be read (wholly or in part).
    pub prompts: BTreeSet<String>,
}

/// Steps of one flow that could not be read.
#[derive(Debug, Default)]
pub struct UnreadSteps {
    pub ids: BTreeSet<String>,
    /// One had an `id` that could not be read either: any id may be lost.
    pub any_id: bool,
}

impl Unread {
    /// Whether anything at all was lost.
    pub fn any(&self) -> bool {
        self.names
            || self.entries
            || self.catalogue
            || !self.flows.is_empty()
            || !self.queues.is_empty()
            || !self.schedules.is_empty()
            || !self.steps.is_empty()
            || !self.prompts.is_empty()
    }

    /// Whether step `label` of `flow` may be one that could not be read.
    pub fn step(&self, flow: &str, label: &str) -> bool {
        self.steps
            .get(flow)
            .is_some_and(|s| s.any_id || s.ids.contains(label))
    }
}

/// Collects diagnostics for one file.
pub struct Cx<'a> {
    pub file: usize,
    pub path: &'a Path,
    pub diags: &'a mut Vec<Diagnostic>,
    /// Mappings in which an unknown key was reported: a key they lack may be
    /// that one, misspelt, so it is not reported missing as well.
    misspelt_in: Vec<Pos>,
}

impl<'a> Cx<'a> {
    pub fn new(file: usize, path: &'a Path, diags: &'a mut Vec<Diagnostic>) -> Cx<'a> {
        Cx {
            file,
            path,
            diags,
            misspelt_in: Vec::new(),
        }
    }
}

impl Cx<'_> {
    pub fn err(&mut self, pos: Pos, message: impl Into<String>) {
        self.diags.push(diagnostic(self.path, pos, message, false));
    }
    /// Reports at `pos` that `mapping` lacks a key it needs, unless an unknown
    /// (perhaps misspelt) key was reported in it already.
    pub fn missing(&mut self, mapping: &Node, pos: Pos, message: impl Into<String>) {
        if !self.misspelt_in.contains(&mapping.pos) {
            self.err(pos, message);
        }
    }
    /// How many errors have been reported so far (to see whether a part had any).
    pub fn errors(&self) -> usize {
        self.diags.len()
    }
    pub fn origin(&self, pos: Pos) -> Origin {
        Origin {
            file: self.file,
            pos,
        }
    }
}

pub fn diagnostic(path: &Path, pos: Pos, message: impl Into<String>, warning: bool) -> Diagnostic {
    Diagnostic {
        file: path.to_path_buf(),
        line: pos.line.max(1),
        column: pos.column.max(1),
        message: message.into(),
        is_warning: warning,
    }
}

/// Reads a text file with a size bound.
pub fn read_bounded(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "file is {} bytes, more than the {MAX_FILE_BYTES} allowed",
            meta.len()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))
}

/// The YAML files of a flow directory, sorted by name: flow files and test files.
pub fn list_yaml(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read directory: {e}"))?;
    let mut flows = Vec::new();
    let mut tests = Vec::new();
    for entry in entries.flatten().take(4 * MAX_FILES) {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !(name.ends_with(".yaml") || name.ends_with(".yml")) || name.starts_with('.') {
            continue;
        }
        if name == super::catalogue::CATALOGUE_FILE || !path.is_file() {
            continue;
        }
        if name.ends_with(".test.yaml") || name.ends_with(".test.yml") {
            tests.push(path);
        } else {
            flows.push(path);
        }
    }
    flows.sort();
    tests.sort();
    if flows.len() > MAX_FILES || tests.len() > MAX_FILES {
        return Err(format!("more than {MAX_FILES} YAML files"));
    }
    Ok((flows, tests))
}

// ---- small typed readers over nodes ----

/// A mapping's entries by key, after checking keys are known and not repeated.
pub struct Fields<'n> {
    pub entries: Vec<(String, &'n Node, &'n Node)>,
    pub pos: Pos,
}

impl<'n> Fields<'n> {
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, v)| *v)
    }
    pub fn key_pos(&self, key: &str) -> Pos {
        self.entries
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, k, _)| k.pos)
            .unwrap_or(self.pos)
    }
}

pub fn fields<'n>(cx: &mut Cx, node: &'n Node, what: &str, allowed: &[&str]) -> Option<Fields<'n>> {
    let Some(map) = node.as_map() else {
        cx.err(
            node.pos,
            format!("{what} must be a mapping, found {}", node.kind()),
        );
        return None;
    };
    let mut out = Fields {
        entries: Vec::new(),
        pos: node.pos,
    };
    for (k, v) in map {
        let Some(key) = k.as_text() else {
            cx.err(
                k.pos,
                format!("keys in {what} must be text, found {}", k.kind()),
            );
            continue;
        };
        if !allowed.is_empty() && !allowed.contains(&key.as_str()) {
            let message = match suggest::closest(&key, allowed.iter().copied()) {
                Some(near) => format!("unknown key `{key}` in {what}; did you mean `{near}`?"),
                None => format!(
                    "unknown key `{key}` in {what}: expected one of {}",
                    allowed.join(", ")
                ),
            };
            cx.err(k.pos, message);
            cx.misspelt_in.push(node.pos);
            continue;
        }
        if out.entries.iter().any(|(seen, _, _)| *seen == key) {
            cx.err(k.pos, format!("duplicate key `{key}` in {what}"));
            continue;
        }
        out.entries.push((key, k, v));
    }
    Some(out)
}

pub fn text(cx: &mut Cx, node: &Node, what: &str) -> Option<String> {
    match node.as_text() {
        Some(s) if !s.trim().is_empty() => Some(s),
        Some(_) => {
            cx.err(node.pos, format!("{what} must not be empty"));
            None
        }
        None => {
            cx.err(
                node.pos,
                format!("{what} must be text, found {}", node.kind()),
            );
            None
        }
    }
}

/// A name used as a reference: letters, digits, `_`, `-`, `.`.
pub fn name(cx: &mut Cx, node: &Node, what: &str) -> Option<String> {
    let s = text(cx, node, what)?;
    if s.len() > 100
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        cx.err(
            node.pos,
            format!("{what} `{s}` may use only letters, digits, `_`, `-` and `.`"),
        );
        return None;
    }
    Some(s)
}

pub fn text_list(cx: &mut Cx, node: &Node, what: &str) -> Vec<String> {
    match &node.value {
        Value::Seq(items) => items.iter().filter_map(|n| text(cx, n, what)).collect(),
        _ => text(cx, node, what).into_iter().collect(),
    }
}

pub fn boolean(cx: &mut Cx, node: &Node, what: &str) -> Option<bool> {
    match node.value {
        Value::Bool(b) => Some(b),
        _ => {
            cx.err(
                node.pos,
                format!("{what} must be true or false, found {}", node.kind()),
            );
            None
        }
    }
}

pub fn number(cx: &mut Cx, node: &Node, what: &str, range: RangeInclusive<u64>) -> Option<u64> {
    let value = match node.value {
        Value::Int(i) => u64::try_from(i).ok(),
        _ => None,
    };
    match value {
        Some(v) if range.contains(&v) => Some(v),
        Some(v) => {
            cx.err(
                node.pos,
                format!(
                    "{what} {v} is out of range: {} to {}",
                    range.start(),
                    range.end()
                ),
            );
            None
        }
        None => {
            cx.err(
                node.pos,
                format!("{what} must be a whole number, found {}", node.kind()),
            );
            None
        }
    }
}

pub fn duration_in(
    cx: &mut Cx,
    node: &Node,
    what: &str,
    range: &RangeInclusive<Duration>,
) -> Option<Duration> {
    let Some(s) = node.as_text() else {
        cx.err(
            node.pos,
            format!(
                "{what} must be a duration such as `30s`, found {}",
                node.kind()
            ),
        );
        return None;
    };
    match duration::parse(&s) {
        Ok(d) if range.contains(&d) => Some(d),
        Ok(d) => {
            cx.err(
                node.pos,
                format!(
                    "{what} {} is out of range: {} to {}",
                    duration::format(d),
                    duration::format(*range.start()),
                    duration::format(*range.end())
                ),
            );
            None
        }
        Err(e) => {
            cx.err(node.pos, format!("{what}: {e}"));
            None
        }
    }
}

pub fn language(cx: &mut Cx, node: &Node) -> Option<Language> {
    let s = text(cx, node, "language")?;
    match s.parse::<Language>() {
        Ok(l) => Some(l),
        Err(e) => {
            cx.err(node.pos, e.to_string());
            None
        }
    }
}

/// The placeholder a queue name may hold, filled with the caller's language code
/// (`advice_{lang}` → `advice_en`), so one step queues each language apart.
pub const LANG_PLACEHOLDER: &str = "{lang}";

/// A queue name, possibly with `{lang}`.
pub fn queue_ref(cx: &mut Cx, node: &Node) -> Option<String> {
    let s = text(cx, node, "queue name")?;
    let plain = s.replace(LANG_PLACEHOLDER, "x");
    if plain.len() > 100
        || !plain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        cx.err(
            node.pos,
            format!("queue name `{s}` may use only letters, digits, `_`, `-`, `.` and `{LANG_PLACEHOLDER}`"),
        );
        return None;
    }
    Some(s)
}

fn target(cx: &mut Cx, node: &Node) -> Option<Target> {
    let label = name(cx, node, "step id")?;
    Some(Target {
        label,
        origin: cx.origin(node.pos),
        index: usize::MAX,
    })
}

// ---- the documents ----

const TOP_KEYS: [&str; 7] = [
    "flows",
    "queues",
    "schedules",
    "entries",
    "languages",
    "default_language",
    "transfer_allow",
];

/// Reads one flow file's top-level document into `out`.
pub fn parse_document(cx: &mut Cx, doc: &Node, out: &mut Parsed) {
    if doc.value == Value::Null {
        return;
    }
    let errors = cx.errors();
    let top = fields(cx, doc, "a flow file", &TOP_KEYS);
    if cx.errors() > errors {
        // What an unknown or repeated top-level key held is lost.
        out.unread.names = true;
    }
    let Some(top) = top else {
        return;
    };
    for (key, _, value) in &top.entries {
        match key.as_str() {
            "flows" => parse_flows(cx, value, out),
            "queues" => parse_queues(cx, value, out),
            "schedules" => parse_schedules(cx, value, out),
            "entries" => parse_entries(cx, value, out),
            "languages" => {
                let langs = language_list(cx, value);
                if out.languages.is_some() {
                    cx.err(value.pos, "`languages` is set in more than one file");
                } else if langs.is_empty() {
                    cx.err(value.pos, "`languages` must name at least one language");
                } else {
                    out.languages = Some((langs, cx.origin(value.pos)));
                }
            }
            "default_language" => {
                if let Some(l) = language(cx, value) {
                    if out.default_language.is_some() {
                        cx.err(value.pos, "`default_language` is set in more than one file");
                    } else {
                        out.default_language = Some((l, cx.origin(value.pos)));
                    }
                }
            }
            "transfer_allow" => {
                for pattern in text_list(cx, value, "transfer pattern") {
                    let uri = pattern.starts_with("sip:") || pattern.starts_with("sips:");
                    let number = !pattern.is_empty()
                        && pattern
                            .bytes()
                            .all(|b| b.is_ascii_digit() || b == b'+' || b == b'*');
                    if !uri && !number {
                        cx.err(
                            value.pos,
                            format!("transfer pattern `{pattern}` must be a number (`113`, `+47*`) or a SIP URI (`sip:...`)"),
                        );
                    }
                    out.transfer_allow.push(pattern);
                }
            }
            _ => {}
        }
    }
}

fn language_list(cx: &mut Cx, node: &Node) -> Vec<Language> {
    let items: Vec<&Node> = match &node.value {
        Value::Seq(items) => items.iter().collect(),
        _ => vec![node],
    };
    let mut out = Vec::new();
    for item in items {
        if let Some(l) = language(cx, item) {
            if out.contains(&l) {
                cx.err(item.pos, format!("language `{l}` is listed twice"));
            } else {
                out.push(l);
            }
        }
    }
    out
}

fn parse_entries(cx: &mut Cx, node: &Node, out: &mut Parsed) {
    let Some(map) = fields(cx, node, "entries", &[]) else {
        out.unread.entries = true;
        return;
    };
    for (dialled, key, value) in &map.entries {
        let flow = name(cx, value, "flow name");
        out.unread.entries |= flow.is_none();
        if let Some(flow) = flow {
            if out.entries.iter().any(|(d, _, _)| d == dialled) {
                cx.err(key.pos, format!("entry `{dialled}` is defined twice"));
            } else {
                out.entries
                    .push((dialled.clone(), flow, cx.origin(key.pos)));
            }
        }
    }
}

fn parse_queues(cx: &mut Cx, node: &Node, out: &mut Parsed) {
    let Some(map) = fields(cx, node, "queues", &[]) else {
        out.unread.names = true;
        return;
    };
    for (queue, key, value) in &map.entries {
        let Some(name) = name(cx, key, "queue name") else {
            continue;
        };
        if out.queues.iter().any(|q| q.name == name) {
            cx.err(key.pos, format!("queue `{queue}` is defined twice"));
            continue;
        }
        let Some(f) = fields(
            cx,
            value,
            &format!("queue `{name}`"),
            &[
                "skills",
                "max_waiting",
                "max_wait",
                "ring_timeout",
                "wrap_up",
                "announce_every",
                "pause_on_no_answer",
                "short_abandon",
                "min_proficiency",
                "no_agents",
            ],
        ) else {
            out.unread.queues.insert(name);
            continue;
        };
        let skills = f
            .get("skills")
            .map(|n| text_list(cx, n, "skill"))
            .unwrap_or_default();
        if skills.is_empty() {
            cx.missing(value, key.pos, format!("queue `{name}` needs `skills`"));
        }
        let max_waiting = f
            .get("max_waiting")
            .and_then(|n| number(cx, n, "max_waiting", 1..=100_000))
            .map(|n| n as u32);
        let max_wait = f
            .get("max_wait")
            .and_then(|n| duration_in(cx, n, "max_wait", &QUEUE_MAX_WAIT));
        let ring_timeout = f
            .get("ring_timeout")
            .and_then(|n| duration_in(cx, n, "ring_timeout", &(secs(5)..=secs(120))));
        let wrap_up = f
            .get("wrap_up")
            .and_then(|n| duration_in(cx, n, "wrap_up", &(secs(0)..=secs(600))));
        let announce_every = f
            .get("announce_every")
            .and_then(|n| duration_in(cx, n, "announce_every", &(secs(15)..=secs(3600))));
        let pause_on_no_answer = f
            .get("pause_on_no_answer")
            .and_then(|n| boolean(cx, n, "pause_on_no_answer"));
        let short_abandon = f
            .get("short_abandon")
            .and_then(|n| duration_in(cx, n, "short_abandon", &(secs(0)..=secs(60))));
        let min_proficiency = f
            .get("min_proficiency")
            .and_then(|n| number(cx, n, "min_proficiency", 1..=10))
            .map(|n| n as u8);
        let no_agents = f.get("no_agents").and_then(|n| no_agents_policy(cx, n));
        out.queues.push(QueueDef {
            name,
            origin: cx.origin(key.pos),
            skills,
            max_waiting,
            max_wait,
            ring_timeout,
            wrap_up,
            announce_every,
            pause_on_no_answer,
            short_abandon,
            min_proficiency,
            no_agents,
        });
    }
}

/// `no_agents: wait | reject | { fallback: en, play: prompt }`.
fn no_agents_policy(cx: &mut Cx, node: &Node) -> Option<NoAgents> {
    const HINT: &str =
        "no_agents is `wait`, `reject` or `{ fallback: <language>, play: <prompt> }`";
    if node.as_map().is_none() {
        let v = text(cx, node, "no_agents")?;
        return match v.as_str() {
            "wait" => Some(NoAgents::Wait),
            "reject" => Some(NoAgents::Reject),
            other => {
                cx.err(node.pos, format!("{HINT}, not `{other}`"));
                None
            }
        };
    }
    let f = fields(cx, node, "no_agents", &["fallback", "play"])?;
    let Some(l) = f.get("fallback") else {
        cx.err(node.pos, HINT);
        return None;
    };
    let language = language(cx, l)?;
    let play = match f.get("play") {
        Some(p) => Some(text(cx, p, "prompt id")?),
        None => None,
    };
    Some(NoAgents::Fallback {
        language,
        play,
        origin: cx.origin(l.pos),
    })
}

fn parse_ranges(cx: &mut Cx, node: &Node) -> Option<Vec<TimeRange>> {
    let items: Vec<&Node> = match &node.value {
        Value::Seq(items) => items.iter().collect(),
        _ => vec![node],
    };
    let mut out = Vec::new();
    for item in items {
        let s = text(cx, item, "opening hours")?;
        match s.as_str() {
            "closed" => {}
            "open" | "24h" => out.push(TimeRange {
                start: 0,
                end: 24 * 60,
            }),
            _ => match TimeRange::parse(&s) {
                Ok(r) => out.push(r),
                Err(e) => {
                    cx.err(item.pos, e);
                    return None;
                }
            },
        }
    }
    Some(out)
}

fn parse_schedules(cx: &mut Cx, node: &Node, out: &mut Parsed) {
    let Some(map) = fields(cx, node, "schedules", &[]) else {
        out.unread.names = true;
        return;
    };
    for (_, key, value) in &map.entries {
        let Some(name) = name(cx, key, "schedule name") else {
            continue;
        };
        if name == schedule::ALWAYS {
            cx.err(
                key.pos,
                "`always` is built in (open 24/7) and cannot be redefined",
            );
            continue;
        }
        if out.schedules.iter().any(|(s, _)| s.name == name) {
            cx.err(key.pos, format!("schedule `{name}` is defined twice"));
            continue;
        }
        let what = format!("schedule `{name}`");
        let Some(f) = fields(
            cx,
            value,
            &what,
            &["timezone", "weekly", "holidays", "exceptions"],
        ) else {
            out.unread.schedules.insert(name);
            continue;
        };
        let mut s = Schedule {
            name: name.clone(),
            ..Schedule::always()
        };
        if let Some(tz) = f.get("timezone").and_then(|n| text(cx, n, "timezone")) {
            match tz.parse::<chrono_tz::Tz>() {
                Ok(tz) => s.timezone = tz,
                Err(_) => cx.err(
                    f.key_pos("timezone"),
                    format!("unknown timezone `{tz}`: use an IANA name such as Europe/Oslo"),
                ),
            }
        }
        if let Some(weekly) = f.get("weekly") {
            if let Some(days) = fields(cx, weekly, "weekly hours", &[]) {
                let mut week: [Vec<TimeRange>; 7] = Default::default();
                let mut seen = [false; 7];
                for (day, dkey, hours) in &days.entries {
                    let indexes = match schedule::parse_days(day) {
                        Ok(i) => i,
                        Err(e) => {
                            cx.err(dkey.pos, e);
                            continue;
                        }
                    };
                    let Some(ranges) = parse_ranges(cx, hours) else {
                        continue;
                    };
                    for i in indexes {
                        if let (Some(slot), Some(seen)) = (week.get_mut(i), seen.get_mut(i)) {
                            if *seen {
                                cx.err(dkey.pos, format!("`{day}` repeats a day already given"));
                            }
                            *seen = true;
                            *slot = ranges.clone();
                        }
                    }
                }
                s.weekly = Some(week);
            }
        }
        if let Some(h) = f.get("holidays") {
            match h.as_text().as_deref() {
                Some("norway") => s.closed_on_holidays = true,
                Some("none") => s.closed_on_holidays = false,
                _ => cx.err(
                    h.pos,
                    "`holidays` must be `norway` (closed on Norwegian public holidays) or `none`",
                ),
            }
        }
        if let Some(ex) = f.get("exceptions") {
            if let Some(dates) = fields(cx, ex, "exceptions", &[]) {
                for (date, dkey, hours) in &dates.entries {
                    let Ok(d) = NaiveDate::parse_from_str(date, "%Y-%m-%d") else {
                        cx.err(dkey.pos, format!("invalid date `{date}`: write YYYY-MM-DD"));
                        continue;
                    };
                    if let Some(ranges) = parse_ranges(cx, hours) {
                        s.exceptions.insert(d, ranges);
                    }
                }
            }
        }
        out.schedules.push((s, cx.origin(key.pos)));
    }
}

fn parse_flows(cx: &mut Cx, node: &Node, out: &mut Parsed) {
    let Some(map) = fields(cx, node, "flows", &[]) else {
        out.unread.names = true;
        return;
    };
    for (_, key, value) in &map.entries {
        let Some(flow_name) = name(cx, key, "flow name") else {
            continue;
        };
        if out.flows.iter().any(|f| f.name == flow_name) {
            cx.err(key.pos, format!("flow `{flow_name}` is defined twice"));
            continue;
        }
        let what = format!("flow `{flow_name}`");
        let Some(f) = fields(cx, value, &what, &["languages", "steps"]) else {
            out.unread.flows.insert(flow_name);
            continue;
        };
        let languages = f
            .get("languages")
            .map(|n| language_list(cx, n))
            .unwrap_or_default();
        let mut steps = Vec::new();
        match f.get("steps") {
            None => cx.missing(value, key.pos, format!("{what} needs `steps`")),
            Some(list) => match list.as_seq() {
                Some([]) => cx.err(list.pos, format!("{what} has no steps")),
                Some(items) if items.len() > MAX_STEPS => cx.err(
                    list.pos,
                    format!("{what} has more than {MAX_STEPS} steps: split it into sub-flows"),
                ),
                Some(items) => {
                    for item in items {
                        let step = parse_step(cx, item);
                        // A step lost, or its id: a reference to it is no news.
                        let lost_id = match &step {
                            Some(s) if s.id.is_some() => None,
                            _ => raw_id(item),
                        };
                        if step.is_none() || lost_id.is_some() {
                            let unread = out.unread.steps.entry(flow_name.clone()).or_default();
                            match lost_id {
                                Some(Some(id)) => {
                                    unread.ids.insert(id);
                                }
                                Some(None) => unread.any_id = true,
                                None => {}
                            }
                        }
                        let Some(step) = step else {
                            continue;
                        };
                        if let Some(id) = &step.id {
                            if steps.iter().any(|s: &Step| s.id.as_ref() == Some(id)) {
                                cx.err(
                                    step.origin.pos,
                                    format!("step id `{id}` is used twice in {what}"),
                                );
                            }
                        }
                        steps.push(step);
                    }
                }
                None => cx.err(
                    list.pos,
                    format!("`steps` must be a list, found {}", list.kind()),
                ),
            },
        }
        out.flows.push(Flow {
            name: flow_name,
            origin: cx.origin(key.pos),
            languages,
            steps,
        });
    }
}

/// Keys a step has besides its kind.
const STEP_KEYS: [&str; 2] = ["id", "barge_in"];

/// What to say of an unknown key in a step: a misspelt key, a misspelt kind,
/// or a key that belongs elsewhere.
fn unknown_step_key(key: &str, kind: Option<&str>) -> String {
    let known = STEP_KEYS.iter().chain(STEP_KINDS.iter()).copied();
    match (suggest::closest(key, known), kind) {
        (Some(near), None) if STEP_KINDS.contains(&near) => {
            format!("unknown step kind `{key}`; did you mean `{near}`?")
        }
        (Some(near), _) => format!("unknown key `{key}`; did you mean `{near}`?"),
        (None, None) => format!(
            "unknown step kind `{key}`: expected one of {}",
            STEP_KINDS.join(", ")
        ),
        (None, Some(kind)) => format!(
            "unknown key `{key}` beside `{kind}`: a step holds one kind, an `id` and (play only) `barge_in`"
        ),
    }
}

/// The `id` a step was written with, without checking it: `None` when it has
/// none, `Some(None)` when the id is not text.
fn raw_id(node: &Node) -> Option<Option<String>> {
    node.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some("id"))
        .map(|(_, v)| v.as_text())
}

fn parse_step(cx: &mut Cx, node: &Node) -> Option<Step> {
    let f = fields(cx, node, "a step", &[])?;
    let mut id = None;
    let mut kind_key: Option<(String, &Node, &Node)> = None;
    let mut barge_in = None;
    let mut unknown: Vec<(&str, &Node)> = Vec::new();
    for (key, k, v) in &f.entries {
        match key.as_str() {
            "id" => id = name(cx, v, "step id"),
            "barge_in" => barge_in = Some((*k, *v)),
            kind if STEP_KINDS.contains(&kind) => {
                if let Some((first, _, _)) = &kind_key {
                    cx.err(
                        k.pos,
                        format!(
                            "a step has one kind, but this one has both `{first}` and `{kind}`"
                        ),
                    );
                    return None;
                }
                kind_key = Some((key.clone(), *k, *v));
            }
            other => unknown.push((other, *k)),
        }
    }
    let kind_name = kind_key.as_ref().map(|(kind, _, _)| kind.as_str());
    for (other, k) in &unknown {
        cx.err(k.pos, unknown_step_key(other, kind_name));
    }
    if kind_key.is_none() && !unknown.is_empty() {
        // The unknown key was meant as the kind: that is the one error.
        return None;
    }
    let Some((kind, kpos, value)) = kind_key else {
        cx.err(
            node.pos,
            format!("a step needs a kind: one of {}", STEP_KINDS.join(", ")),
        );
        return None;
    };
    if let Some((k, _)) = barge_in {
        if kind != "play" {
            cx.err(
                k.pos,
                format!("`barge_in` beside `{kind}` is not allowed: only play steps take it there"),
            );
            return None;
        }
    }
    let kind = match kind.as_str() {
        "play" => StepKind::Play {
            items: play_items(cx, value)?,
            barge_in: match barge_in {
                Some((_, v)) => boolean(cx, v, "barge_in")?,
                None => false,
            },
        },
        "menu" => StepKind::Menu(Box::new(parse_menu(cx, value)?)),
        "collect" => StepKind::Collect(Box::new(parse_collect(cx, value)?)),
        "set_language" => StepKind::SetLanguage(language(cx, value)?),
        "branch" => parse_branch(cx, value)?,
        "queue" => StepKind::Queue(Box::new(parse_queue_step(cx, value)?)),
        "goto" => StepKind::Goto(target(cx, value)?),
        "call" => StepKind::Call {
            flow: name(cx, value, "flow name")?,
            index: usize::MAX,
        },
        "return" => {
            if value.value != Value::Null {
                cx.err(value.pos, "`return` takes no value: write `- return:`");
                return None;
            }
            StepKind::Return
        }
        "transfer" => parse_transfer(cx, value)?,
        "callback" => StepKind::Callback(Box::new(parse_callback_step(cx, value)?)),
        "hangup" => StepKind::Hangup {
            reason: match value.value {
                Value::Null => "normal".into(),
                _ => name(cx, value, "hangup reason")?,
            },
        },
        _ => return None,
    };
    Some(Step {
        id,
        origin: cx.origin(kpos.pos),
        kind,
    })
}

/// `play:` and prompt options: one prompt id, a list, or item mappings.
fn play_items(cx: &mut Cx, node: &Node) -> Option<Vec<PlayItem>> {
    let nodes: Vec<&Node> = match &node.value {
        Value::Seq(items) => items.iter().collect(),
        _ => vec![node],
    };
    if nodes.is_empty() {
        cx.err(node.pos, "nothing to play: name at least one prompt");
        return None;
    }
    if nodes.len() > MAX_ITEMS {
        cx.err(
            node.pos,
            format!("more than {MAX_ITEMS} prompts in one place"),
        );
        return None;
    }
    let mut items = Vec::new();
    let mut ok = true;
    for n in nodes {
        match play_item(cx, n) {
            Some(i) => items.push(i),
            None => ok = false,
        }
    }
    ok.then_some(items)
}

fn play_item(cx: &mut Cx, node: &Node) -> Option<PlayItem> {
    if node.as_map().is_none() {
        return Some(PlayItem::Prompt {
            id: name(cx, node, "prompt id")?,
            language: None,
            origin: cx.origin(node.pos),
        });
    }
    let f = fields(
        cx,
        node,
        "a prompt",
        &["prompt", "in", "count", "numbers", "max"],
    )?;
    let prompt_node = match f.get("prompt") {
        Some(p) => p,
        None => {
            cx.missing(node, node.pos, "a prompt needs `prompt: <id>`");
            return None;
        }
    };
    let id = name(cx, prompt_node, "prompt id")?;
    let origin = cx.origin(prompt_node.pos);
    match f.get("count") {
        None => {
            for k in ["numbers", "max"] {
                if f.get(k).is_some() {
                    cx.err(f.key_pos(k), format!("`{k}` only goes with `count`"));
                    return None;
                }
            }
            let language = match f.get("in") {
                Some(l) => Some(language(cx, l)?),
                None => None,
            };
            Some(PlayItem::Prompt {
                id,
                language,
                origin,
            })
        }
        Some(source) => {
            if f.get("in").is_some() {
                cx.err(
                    f.key_pos("in"),
                    "a counted prompt is said in the caller's language; `in` is not allowed",
                );
                return None;
            }
            let source = number_source(cx, source)?;
            let numbers = match f.get("numbers") {
                Some(n) => name(cx, n, "number prompts")?,
                None => "number".into(),
            };
            let max = match f.get("max") {
                Some(n) => number(cx, n, "max", COUNT_MAX)?,
                None => 20,
            };
            Some(PlayItem::Count {
                source,
                prompt: id,
                numbers,
                max,
                origin,
            })
        }
    }
}

fn number_source(cx: &mut Cx, node: &Node) -> Option<NumberSource> {
    if node.as_map().is_none() {
        return Some(NumberSource::Var(name(cx, node, "variable")?));
    }
    let f = fields(
        cx,
        node,
        "a count",
        &["var", "waiting", "wait_minutes", "agents_ready"],
    )?;
    if f.entries.len() != 1 {
        cx.err(
            node.pos,
            "a count names one of var, waiting, wait_minutes, agents_ready",
        );
        return None;
    }
    let (key, _, value) = f.entries.first()?;
    let arg = if key == "waiting" || key == "wait_minutes" {
        queue_ref(cx, value)?
    } else {
        name(cx, value, key)?
    };
    Some(match key.as_str() {
        "var" => NumberSource::Var(arg),
        "waiting" => NumberSource::Waiting(arg),
        "wait_minutes" => NumberSource::WaitMinutes(arg),
        _ => NumberSource::AgentsReady(arg),
    })
}

fn choice(cx: &mut Cx, node: &Node) -> Option<Choice> {
    if node.as_map().is_none() {
        return Some(Choice {
            goto: Some(target(cx, node)?),
            origin: cx.origin(node.pos),
            ..Choice::default()
        });
    }
    let f = fields(cx, node, "a choice", &["goto", "language", "hangup"])?;
    let mut c = Choice {
        origin: cx.origin(node.pos),
        ..Choice::default()
    };
    if let Some(l) = f.get("language") {
        c.language = Some((language(cx, l)?, cx.origin(l.pos)));
    }
    if let Some(g) = f.get("goto") {
        c.goto = Some(target(cx, g)?);
    }
    if let Some(h) = f.get("hangup") {
        if c.goto.is_some() {
            cx.err(
                h.pos,
                "a choice either goes to a step or hangs up, not both",
            );
            return None;
        }
        c.hangup = Some(name(cx, h, "hangup reason")?);
    }
    Some(c)
}

fn give_up(reason: &str) -> Choice {
    Choice {
        hangup: Some(reason.into()),
        ..Choice::default()
    }
}

fn digit_key(cx: &mut Cx, key: &Node) -> Option<char> {
    let text = key.as_text().unwrap_or_default();
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_digit() || c == '*' || c == '#' => Some(c),
        _ => {
            cx.err(
                key.pos,
                format!("menu choice `{text}` must be one key: 0-9, * or #"),
            );
            None
        }
    }
}

const MENU_KEYS: [&str; 9] = [
    "prompt",
    "choices",
    "timeout",
    "attempts",
    "barge_in",
    "no_input_prompt",
    "invalid_prompt",
    "on_no_input",
    "on_invalid",
];

fn parse_menu(cx: &mut Cx, node: &Node) -> Option<Menu> {
    let f = fields(cx, node, "menu", &MENU_KEYS)?;
    let prompt = match f.get("prompt") {
        Some(p) => play_items(cx, p)?,
        None => {
            cx.missing(node, node.pos, "menu needs `prompt`");
            return None;
        }
    };
    let Some(choices_node) = f.get("choices") else {
        cx.missing(node, node.pos, "menu needs `choices`");
        return None;
    };
    let Some(map) = choices_node.as_map() else {
        cx.err(
            choices_node.pos,
            format!(
                "`choices` must be a mapping of key to choice, found {}",
                choices_node.kind()
            ),
        );
        return None;
    };
    let mut choices: Vec<(char, Choice)> = Vec::new();
    let mut ok = true;
    for (k, v) in map {
        let Some(digit) = digit_key(cx, k) else {
            ok = false;
            continue;
        };
        if choices.iter().any(|(d, _)| *d == digit) {
            cx.err(k.pos, format!("duplicate menu choice `{digit}`"));
            ok = false;
            continue;
        }
        match choice(cx, v) {
            Some(c) => choices.push((digit, c)),
            None => ok = false,
        }
    }
    if choices.is_empty() && ok {
        cx.err(choices_node.pos, "menu has no choices");
        return None;
    }
    let common = common_input(cx, &f)?;
    ok.then_some(Menu {
        prompt,
        choices,
        timeout: common.timeout,
        attempts: common.attempts,
        barge_in: common.barge_in,
        no_input_prompt: common.no_input_prompt,
        invalid_prompt: common.invalid_prompt,
        on_no_input: common.on_no_input,
        on_invalid: common.on_invalid,
    })
}

struct CommonInput {
    timeout: Duration,
    attempts: u32,
    barge_in: bool,
    no_input_prompt: Vec<PlayItem>,
    invalid_prompt: Vec<PlayItem>,
    on_no_input: Choice,
    on_invalid: Choice,
}

/// Options menus and collects share.
fn common_input(cx: &mut Cx, f: &Fields) -> Option<CommonInput> {
    let mut ok = true;
    let mut c = CommonInput {
        timeout: secs(5),
        attempts: 3,
        barge_in: true,
        no_input_prompt: Vec::new(),
        invalid_prompt: Vec::new(),
        on_no_input: give_up("no_input"),
        on_invalid: give_up("invalid_input"),
    };
    if let Some(n) = f.get("timeout") {
        match duration_in(cx, n, "timeout", &MENU_TIMEOUT) {
            Some(d) => c.timeout = d,
            None => ok = false,
        }
    }
    if let Some(n) = f.get("attempts") {
        match number(cx, n, "attempts", ATTEMPTS) {
            Some(a) => c.attempts = a as u32,
            None => ok = false,
        }
    }
    if let Some(n) = f.get("barge_in") {
        match boolean(cx, n, "barge_in") {
            Some(b) => c.barge_in = b,
            None => ok = false,
        }
    }
    for (key, slot) in [
        ("no_input_prompt", &mut c.no_input_prompt),
        ("invalid_prompt", &mut c.invalid_prompt),
    ] {
        if let Some(n) = f.get(key) {
            match play_items(cx, n) {
                Some(items) => *slot = items,
                None => ok = false,
            }
        }
    }
    for (key, slot) in [
        ("on_no_input", &mut c.on_no_input),
        ("on_invalid", &mut c.on_invalid),
    ] {
        if let Some(n) = f.get(key) {
            match choice(cx, n) {
                Some(ch) => *slot = ch,
                None => ok = false,
            }
        }
    }
    ok.then_some(c)
}

fn parse_collect(cx: &mut Cx, node: &Node) -> Option<Collect> {
    let mut keys: Vec<&str> = MENU_KEYS
        .iter()
        .copied()
        .filter(|k| *k != "choices")
        .collect();
    keys.extend([
        "into",
        "min_digits",
        "max_digits",
        "terminator",
        "inter_digit_timeout",
    ]);
    let f = fields(cx, node, "collect", &keys)?;
    let Some(into) = f.get("into") else {
        cx.missing(node, node.pos, "collect needs `into: <variable>`");
        return None;
    };
    let into = name(cx, into, "variable")?;
    let prompt = match f.get("prompt") {
        Some(p) => play_items(cx, p)?,
        None => {
            cx.missing(node, node.pos, "collect needs `prompt`");
            return None;
        }
    };
    let min_digits = match f.get("min_digits") {
        Some(n) => number(cx, n, "min_digits", DIGITS)? as usize,
        None => 1,
    };
    let max_digits = match f.get("max_digits") {
        Some(n) => number(cx, n, "max_digits", DIGITS)? as usize,
        None => 16,
    };
    if min_digits > max_digits {
        cx.err(
            f.key_pos("min_digits"),
            format!("min_digits {min_digits} is more than max_digits {max_digits}"),
        );
        return None;
    }
    let terminator = match f.get("terminator") {
        None => Some('#'),
        Some(n) if n.value == Value::Null => None,
        Some(n) => match n.as_text().as_deref() {
            Some("#") => Some('#'),
            Some("*") => Some('*'),
            Some("none") => None,
            _ => {
                cx.err(n.pos, "terminator must be `#`, `*` or `none`");
                return None;
            }
        },
    };
    let inter_digit_timeout = match f.get("inter_digit_timeout") {
        Some(n) => duration_in(cx, n, "inter_digit_timeout", &INTER_DIGIT_TIMEOUT)?,
        None => secs(3),
    };
    let common = common_input(cx, &f)?;
    Some(Collect {
        into,
        prompt,
        min_digits,
        max_digits,
        terminator,
        timeout: common.timeout,
        inter_digit_timeout,
        attempts: common.attempts,
        barge_in: common.barge_in,
        no_input_prompt: common.no_input_prompt,
        invalid_prompt: common.invalid_prompt,
        on_no_input: common.on_no_input,
        on_invalid: common.on_invalid,
    })
}

fn parse_branch(cx: &mut Cx, node: &Node) -> Option<StepKind> {
    let Some(arms_nodes) = node.as_seq() else {
        cx.err(
            node.pos,
            format!(
                "branch must be a list of `when:`/`goto:` arms, found {}",
                node.kind()
            ),
        );
        return None;
    };
    let mut arms = Vec::new();
    let mut otherwise = None;
    let mut ok = true;
    for arm in arms_nodes {
        let Some(f) = fields(cx, arm, "a branch arm", &["when", "goto", "else"]) else {
            ok = false;
            continue;
        };
        if otherwise.is_some() {
            cx.err(arm.pos, "`else` must be the last arm of a branch");
            ok = false;
            continue;
        }
        if let Some(e) = f.get("else") {
            if f.get("when").is_some() || f.get("goto").is_some() {
                cx.err(arm.pos, "an `else` arm stands alone: `- else: <step id>`");
                ok = false;
                continue;
            }
            otherwise = target(cx, e);
            ok &= otherwise.is_some();
            continue;
        }
        let (Some(when), Some(goto)) = (f.get("when"), f.get("goto")) else {
            cx.missing(arm, arm.pos, "a branch arm needs `when:` and `goto:`");
            ok = false;
            continue;
        };
        match (condition(cx, when, 0), target(cx, goto)) {
            (Some(c), Some(t)) => arms.push((c, t)),
            _ => ok = false,
        }
    }
    if arms.is_empty() && ok {
        cx.err(node.pos, "branch needs at least one `when:` arm");
        return None;
    }
    ok.then_some(StepKind::Branch { arms, otherwise })
}

const CONDITION_KEYS: [&str; 13] = [
    "caller",
    "caller_prefix",
    "dialled",
    "language",
    "digits",
    "schedule",
    "holiday",
    "queue_waiting",
    "estimated_wait",
    "agents_ready",
    "all",
    "any",
    "not",
];

fn condition(cx: &mut Cx, node: &Node, depth: usize) -> Option<Condition> {
    if depth > 8 {
        cx.err(node.pos, "conditions nest too deeply");
        return None;
    }
    let f = fields(cx, node, "a condition", &CONDITION_KEYS)?;
    let mut parts = Vec::new();
    for (key, _, v) in &f.entries {
        let c = match key.as_str() {
            "caller" => Condition::Caller(text_list(cx, v, "caller number")),
            "caller_prefix" => Condition::CallerPrefix(text_list(cx, v, "caller prefix")),
            "dialled" => Condition::Dialled(text_list(cx, v, "dialled number")),
            "language" => {
                let items: Vec<&Node> = match &v.value {
                    Value::Seq(items) => items.iter().collect(),
                    _ => vec![*v],
                };
                let mut langs = Vec::new();
                for i in items {
                    langs.push((language(cx, i)?, cx.origin(i.pos)));
                }
                Condition::Language(langs)
            }
            "digits" => {
                let g = fields(cx, v, "digits", &["var", "equals", "prefix", "length"])?;
                let Some(var) = g.get("var") else {
                    cx.missing(v, v.pos, "digits needs `var: <variable>`");
                    return None;
                };
                Condition::Digits {
                    var: name(cx, var, "variable")?,
                    equals: g.get("equals").and_then(|n| n.as_text()),
                    prefix: g.get("prefix").and_then(|n| n.as_text()),
                    length: match g.get("length") {
                        Some(n) => Some(number(cx, n, "length", 0..=32)? as usize),
                        None => None,
                    },
                }
            }
            "schedule" => Condition::Schedule(name(cx, v, "schedule name")?, cx.origin(v.pos)),
            "holiday" => Condition::Holiday(boolean(cx, v, "holiday")?),
            "queue_waiting" => {
                let g = fields(cx, v, "queue_waiting", &["queue", "at_least", "below"])?;
                let queue_node = g.get("queue").or_else(|| {
                    cx.missing(v, v.pos, "queue_waiting needs `queue`");
                    None
                })?;
                Condition::QueueWaiting {
                    queue: queue_ref(cx, queue_node)?,
                    origin: cx.origin(queue_node.pos),
                    bounds: count_bounds(cx, &g, v)?,
                }
            }
            "estimated_wait" => {
                let g = fields(cx, v, "estimated_wait", &["queue", "at_least", "below"])?;
                let queue_node = g.get("queue").or_else(|| {
                    cx.missing(v, v.pos, "estimated_wait needs `queue`");
                    None
                })?;
                let range = secs(0)..=secs(24 * 3600);
                let mut bounds = Bounds::default();
                if let Some(n) = g.get("at_least") {
                    bounds.at_least = Some(duration_in(cx, n, "at_least", &range)?);
                }
                if let Some(n) = g.get("below") {
                    bounds.below = Some(duration_in(cx, n, "below", &range)?);
                }
                if bounds == Bounds::default() {
                    cx.missing(v, v.pos, "estimated_wait needs `at_least` or `below`");
                    return None;
                }
                Condition::EstimatedWait {
                    queue: queue_ref(cx, queue_node)?,
                    origin: cx.origin(queue_node.pos),
                    bounds,
                }
            }
            "agents_ready" => {
                let g = fields(cx, v, "agents_ready", &["skill", "at_least", "below"])?;
                let skill = g.get("skill").or_else(|| {
                    cx.missing(v, v.pos, "agents_ready needs `skill`");
                    None
                })?;
                Condition::AgentsReady {
                    skill: name(cx, skill, "skill")?,
                    bounds: count_bounds(cx, &g, v)?,
                }
            }
            "all" | "any" => {
                let Some(items) = v.as_seq() else {
                    cx.err(v.pos, format!("`{key}` takes a list of conditions"));
                    return None;
                };
                let mut list = Vec::new();
                for i in items {
                    list.push(condition(cx, i, depth + 1)?);
                }
                if key == "all" {
                    Condition::All(list)
                } else {
                    Condition::Any(list)
                }
            }
            _ => Condition::Not(Box::new(condition(cx, v, depth + 1)?)),
        };
        parts.push(c);
    }
    match parts.len() {
        0 => {
            cx.err(node.pos, "empty condition");
            None
        }
        1 => parts.pop(),
        _ => Some(Condition::All(parts)),
    }
}

fn count_bounds(cx: &mut Cx, g: &Fields, node: &Node) -> Option<Bounds<u32>> {
    let mut b = Bounds::default();
    if let Some(n) = g.get("at_least") {
        b.at_least = Some(number(cx, n, "at_least", 0..=1_000_000)? as u32);
    }
    if let Some(n) = g.get("below") {
        b.below = Some(number(cx, n, "below", 0..=1_000_000)? as u32);
    }
    if b == Bounds::default() {
        cx.missing(node, node.pos, "needs `at_least` or `below`");
        return None;
    }
    Some(b)
}

fn parse_queue_step(cx: &mut Cx, node: &Node) -> Option<QueueStep> {
    if node.as_map().is_none() {
        return Some(QueueStep {
            queue: queue_ref(cx, node)?,
            queue_origin: cx.origin(node.pos),
            priority: 0,
            max_wait: None,
            announce_every: None,
            escalate: None,
            on_timeout: None,
            on_full: None,
            on_no_agents: None,
            messages: Vec::new(),
            callback: None,
        });
    }
    let f = fields(
        cx,
        node,
        "queue",
        &[
            "to",
            "priority",
            "max_wait",
            "announce_every",
            "escalate",
            "on_timeout",
            "on_full",
            "on_no_agents",
            "messages",
            "callback",
        ],
    )?;
    let Some(to) = f.get("to") else {
        cx.missing(node, node.pos, "queue needs `to: <queue>`");
        return None;
    };
    let mut q = QueueStep {
        queue: queue_ref(cx, to)?,
        queue_origin: cx.origin(to.pos),
        priority: 0,
        max_wait: None,
        announce_every: None,
        escalate: None,
        on_timeout: None,
        on_full: None,
        on_no_agents: None,
        messages: Vec::new(),
        callback: None,
    };
    if let Some(p) = f.get("priority") {
        q.priority = number(cx, p, "priority", 0..=9)? as i32;
    }
    if let Some(n) = f.get("max_wait") {
        q.max_wait = Some(duration_in(cx, n, "max_wait", &QUEUE_MAX_WAIT)?);
    }
    if let Some(n) = f.get("announce_every") {
        q.announce_every = Some(duration_in(cx, n, "announce_every", &ANNOUNCE_EVERY)?);
    }
    if let Some(n) = f.get("escalate") {
        let g = fields(cx, n, "escalate", &["after", "to"])?;
        let (Some(after), Some(to)) = (g.get("after"), g.get("to")) else {
            cx.missing(n, n.pos, "escalate needs `after` and `to`");
            return None;
        };
        q.escalate = Some(Escalation {
            after: duration_in(cx, after, "escalate after", &ESCALATE_AFTER)?,
            queue: queue_ref(cx, to)?,
            origin: cx.origin(to.pos),
        });
    }
    for (key, slot) in [
        ("on_timeout", &mut q.on_timeout),
        ("on_full", &mut q.on_full),
        ("on_no_agents", &mut q.on_no_agents),
    ] {
        if let Some(n) = f.get(key) {
            *slot = Some(target(cx, n)?);
        }
    }
    if let Some(n) = f.get("messages") {
        q.messages = wait_messages(cx, n)?;
    }
    if let Some(n) = f.get("callback") {
        q.callback = Some(callback_offer(cx, n)?);
    }
    Some(q)
}

/// `callback: { after: 2m, every: 5m, estimated_wait: 10m, key: "1",
/// play: callback_offer, goto: confirm_callback }` on a queue step.
fn callback_offer(cx: &mut Cx, node: &Node) -> Option<CallbackOffer> {
    let f = fields(
        cx,
        node,
        "callback",
        &["after", "every", "estimated_wait", "key", "play", "goto"],
    )?;
    let Some(goto) = f.get("goto") else {
        cx.missing(
            node,
            node.pos,
            "callback needs `goto: <step>`: where a caller who presses the key confirms their number",
        );
        return None;
    };
    let after = match f.get("after") {
        Some(n) => duration_in(cx, n, "callback after", &CALLBACK_OFFER_AFTER)?,
        None => CALLBACK_OFFER_AFTER_DEFAULT,
    };
    let every = match f.get("every") {
        Some(n) => Some(duration_in(cx, n, "callback every", &MESSAGE_EVERY)?),
        None => None,
    };
    let estimated_wait = match f.get("estimated_wait") {
        Some(n) => Some(duration_in(
            cx,
            n,
            "callback estimated_wait",
            &CALLBACK_OFFER_AFTER,
        )?),
        None => None,
    };
    let key = match f.get("key") {
        Some(n) => digit_key(cx, n)?,
        None => '1',
    };
    let (prompt, origin) = match f.get("play") {
        Some(n) => (name(cx, n, "prompt id")?, cx.origin(n.pos)),
        None => ("callback_offer".to_string(), cx.origin(node.pos)),
    };
    Some(CallbackOffer {
        after,
        every,
        estimated_wait,
        key,
        prompt,
        goto: target(cx, goto)?,
        origin,
    })
}

/// `callback: { number: caller, attempts: 3, retry_after: 10m, max_wait: 24h,
/// window: callbacks, on_invalid: ask_number }`; `number` is `caller` or the
/// variable a `collect` step filled.
fn parse_callback_step(cx: &mut Cx, node: &Node) -> Option<CallbackStep> {
    let f = fields(
        cx,
        node,
        "callback",
        &[
            "number",
            "attempts",
            "retry_after",
            "max_wait",
            "window",
            "on_invalid",
        ],
    )?;
    let number = match f.get("number") {
        None => CallbackNumber::Caller,
        Some(n) => match name(cx, n, "callback number")?.as_str() {
            "caller" => CallbackNumber::Caller,
            var => CallbackNumber::Collected(var.to_string()),
        },
    };
    let attempts = match f.get("attempts") {
        Some(n) => number_in(cx, n, "callback attempts")?,
        None => CALLBACK_ATTEMPTS,
    };
    let retry_after = match f.get("retry_after") {
        Some(n) => duration_in(cx, n, "retry_after", &CALLBACK_RETRY_AFTER)?,
        None => CALLBACK_RETRY_DEFAULT,
    };
    let max_wait = match f.get("max_wait") {
        Some(n) => duration_in(cx, n, "callback max_wait", &CALLBACK_MAX_WAIT)?,
        None => CALLBACK_MAX_WAIT_DEFAULT,
    };
    let window = match f.get("window") {
        Some(n) => Some((name(cx, n, "schedule name")?, cx.origin(n.pos))),
        None => None,
    };
    let on_invalid = match f.get("on_invalid") {
        Some(n) => Some(target(cx, n)?),
        None => None,
    };
    Some(CallbackStep {
        number,
        attempts,
        retry_after,
        max_wait,
        window,
        on_invalid,
    })
}

fn number_in(cx: &mut Cx, node: &Node, what: &str) -> Option<u32> {
    number(cx, node, what, ATTEMPTS).and_then(|n| u32::try_from(n).ok())
}

/// `messages: [{ after: 10m, every: 5m, play: [a, b] }, ...]` on a queue step.
fn wait_messages(cx: &mut Cx, node: &Node) -> Option<Vec<WaitMessage>> {
    let Value::Seq(items) = &node.value else {
        cx.err(
            node.pos,
            "messages is a list: `- { after: 10m, every: 5m, play: self_service }`",
        );
        return None;
    };
    if items.len() > MAX_WAIT_MESSAGES {
        cx.err(
            node.pos,
            format!("at most {MAX_WAIT_MESSAGES} messages per queue step"),
        );
        return None;
    }
    let mut out: Vec<WaitMessage> = Vec::new();
    for item in items {
        let g = fields(cx, item, "message", &["after", "every", "play"])?;
        let (Some(after), Some(play)) = (g.get("after"), g.get("play")) else {
            cx.missing(item, item.pos, "a message needs `after` and `play`");
            return None;
        };
        let every = match g.get("every") {
            Some(e) => Some(duration_in(cx, e, "message every", &MESSAGE_EVERY)?),
            None => None,
        };
        let prompts = text_list(cx, play, "prompt id");
        if prompts.is_empty() {
            cx.err(play.pos, "a message needs at least one prompt in `play`");
            return None;
        }
        out.push(WaitMessage {
            after: duration_in(cx, after, "message after", &MESSAGE_AFTER)?,
            every,
            prompts,
            origin: cx.origin(play.pos),
        });
    }
    out.sort_by_key(|m| m.after);
    Some(out)
}

fn parse_transfer(cx: &mut Cx, node: &Node) -> Option<StepKind> {
    if node.as_map().is_none() {
        return Some(StepKind::Transfer {
            target: text(cx, node, "transfer target")?,
            on_failure: None,
        });
    }
    let f = fields(cx, node, "transfer", &["to", "on_failure"])?;
    let Some(to) = f.get("to") else {
        cx.missing(node, node.pos, "transfer needs `to: <number or sip uri>`");
        return None;
    };
    Some(StepKind::Transfer {
        target: text(cx, to, "transfer target")?,
        on_failure: match f.get("on_failure") {
            Some(n) => Some(target(cx, n)?),
            None => None,
        },
    })
}
