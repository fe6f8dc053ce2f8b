//! `flows test`: declarative cases kept next to the flows (`*.test.yaml`), each
//! a simulated call with what it must end in, so a change is checked before
//! it is reloaded.

use super::load::{self, Cx, Fields};
use super::simulate::{simulate, QueueOutcome, SimulateOptions, SimulationReport};
use super::yaml::{self, Node, Value};
use super::{Diagnostic, FlowEnd, FlowSet, QueueState};
use crate::language::Language;
use chrono::{DateTime, Utc};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Cases in one run, at most.
const MAX_CASES: usize = 2000;

/// The outcome of one case.
#[derive(Debug, Clone)]
pub struct TestResult {
    pub name: String,
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// Empty when the case passed.
    pub failures: Vec<String>,
}

#[derive(Debug, Default)]
pub struct TestReport {
    /// Problems loading the flows or reading the test files.
    pub diagnostics: Vec<Diagnostic>,
    pub results: Vec<TestResult>,
}

impl TestReport {
    /// True when the flows loaded, every case file was read and every case passed.
    pub fn passed(&self) -> bool {
        !super::has_errors(&self.diagnostics) && self.results.iter().all(|r| r.failures.is_empty())
    }
}

impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.diagnostics {
            writeln!(f, "{d}")?;
        }
        for r in &self.results {
            if r.failures.is_empty() {
                writeln!(f, "ok    {}", r.name)?;
            } else {
                for failure in &r.failures {
                    writeln!(
                        f,
                        "FAIL  {}:{}:{}: {}: {failure}",
                        r.file.display(),
                        r.line,
                        r.column,
                        r.name
                    )?;
                }
            }
        }
        let failed = self
            .results
            .iter()
            .filter(|r| !r.failures.is_empty())
            .count();
        writeln!(
            f,
            "{} passed, {failed} failed{}",
            self.results.len() - failed,
            if super::has_errors(&self.diagnostics) {
                ", flows or tests did not load"
            } else {
                ""
            }
        )
    }
}

/// Loads the flows of `dir` and runs every `*.test.yaml` case next to them.
pub fn run_tests(dir: &Path) -> TestReport {
    let set = match FlowSet::load(dir) {
        Ok(set) => Arc::new(set),
        Err(diagnostics) => {
            return TestReport {
                diagnostics,
                results: Vec::new(),
            }
        }
    };
    let mut report = TestReport::default();
    let test_files = match load::list_yaml(dir) {
        Ok((_, tests)) => tests,
        Err(e) => {
            report
                .diagnostics
                .push(load::diagnostic(dir, yaml::Pos::default(), e, false));
            return report;
        }
    };
    let mut sources = Vec::new();
    for path in test_files {
        match load::read_bounded(&path) {
            Ok(text) => sources.push((path, text)),
            Err(e) => {
                report
                    .diagnostics
                    .push(load::diagnostic(&path, yaml::Pos::default(), e, false))
            }
        }
    }
    let more = run_test_sources(&set, &sources);
    report.diagnostics.extend(more.diagnostics);
    report.results = more.results;
    report
}

/// Runs the cases of test files given as text against a loaded set.
pub fn run_test_sources(set: &Arc<FlowSet>, files: &[(PathBuf, String)]) -> TestReport {
    let mut report = TestReport::default();
    for (path, text) in files {
        let mut diags = Vec::new();
        let mut cx = Cx::new(0, path, &mut diags);
        let cases = match yaml::parse(text) {
            Ok(doc) => parse_cases(&mut cx, &doc),
            Err(e) => {
                cx.err(e.pos, e.message);
                Vec::new()
            }
        };
        report.diagnostics.extend(diags);
        for case in cases {
            if report.results.len() >= MAX_CASES {
                break;
            }
            let sim = simulate(set, &case.options);
            report.results.push(TestResult {
                name: case.name.clone(),
                file: path.clone(),
                line: case.pos.line,
                column: case.pos.column,
                failures: compare(&case.expect, &sim),
            });
        }
    }
    report
}

/// One case as written.
#[derive(Debug)]
struct Case {
    name: String,
    pos: yaml::Pos,
    options: SimulateOptions,
    expect: Expect,
}

#[derive(Debug, Default)]
struct Expect {
    path: Vec<String>,
    prompts: Vec<String>,
    not_prompts: Vec<String>,
    language: Option<Language>,
    queue: Option<String>,
    outcome: Option<String>,
    reason: Option<String>,
    transfer: Option<String>,
}

const CASE_KEYS: [&str; 11] = [
    "name",
    "flow",
    "dialled",
    "caller",
    "at",
    "digits",
    "queues",
    "agents_ready",
    "queue_outcomes",
    "transfer",
    "expect",
];

fn parse_cases(cx: &mut Cx, doc: &Node) -> Vec<Case> {
    let Some(top) = load::fields(cx, doc, "a test file", &["tests"]) else {
        return Vec::new();
    };
    let Some(list) = top.get("tests") else {
        cx.missing(doc, doc.pos, "a test file needs `tests:`");
        return Vec::new();
    };
    let Some(items) = list.as_seq() else {
        cx.err(list.pos, "`tests` must be a list of cases");
        return Vec::new();
    };
    items.iter().filter_map(|n| parse_case(cx, n)).collect()
}

fn parse_case(cx: &mut Cx, node: &Node) -> Option<Case> {
    let f = load::fields(cx, node, "a test case", &CASE_KEYS)?;
    let name = match f.get("name") {
        Some(n) => load::text(cx, n, "test name")?,
        None => {
            cx.missing(node, node.pos, "a test case needs `name`");
            return None;
        }
    };
    let mut options = SimulateOptions::default();
    if let Some(n) = f.get("flow") {
        options.flow = Some(load::name(cx, n, "flow name")?);
    }
    if let Some(n) = f.get("dialled") {
        options.dialled = load::text(cx, n, "dialled number")?;
    }
    if let Some(n) = f.get("caller") {
        options.caller = load::text(cx, n, "caller number")?;
    }
    match f.get("at") {
        Some(n) => {
            let s = load::text(cx, n, "at")?;
            match DateTime::parse_from_rfc3339(&s) {
                Ok(t) => options.at = t.with_timezone(&Utc),
                Err(_) => {
                    cx.err(n.pos, format!("`at` must be an RFC 3339 time such as 2025-03-05T10:00:00+01:00, found `{s}`"));
                    return None;
                }
            }
        }
        None => {
            // A fixed ordinary weekday morning, so cases do not depend on today.
            options.at = DateTime::parse_from_rfc3339("2025-03-05T10:00:00+01:00")
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default();
        }
    }
    if let Some(n) = f.get("digits") {
        options.digits = digits(cx, n)?;
    }
    if let Some(n) = f.get("queues") {
        let queues = load::fields(cx, n, "queues", &[])?;
        for (queue, _, v) in &queues.entries {
            let g = load::fields(cx, v, "queue state", &["waiting", "estimated_wait"])?;
            let mut state = QueueState::default();
            if let Some(w) = g.get("waiting") {
                state.waiting = load::number(cx, w, "waiting", 0..=1_000_000)? as u32;
            }
            if let Some(w) = g.get("estimated_wait") {
                state.estimated_wait = load::duration_in(
                    cx,
                    w,
                    "estimated_wait",
                    &(Duration::ZERO..=Duration::from_secs(86_400)),
                )?;
            }
            options.queues.insert(queue.clone(), state);
        }
    }
    if let Some(n) = f.get("agents_ready") {
        let skills = load::fields(cx, n, "agents_ready", &[])?;
        for (skill, _, v) in &skills.entries {
            let count = load::number(cx, v, "agents", 0..=100_000)? as u32;
            options.agents_ready.insert(skill.clone(), count);
        }
    }
    if let Some(n) = f.get("queue_outcomes") {
        for item in load::text_list(cx, n, "queue outcome") {
            match QueueOutcome::parse(&item) {
                Some(o) => options.queue_outcomes.push(o),
                None => {
                    cx.err(n.pos, format!("unknown queue outcome `{item}`: use answered, timeout, full or no_agents"));
                    return None;
                }
            }
        }
    }
    if let Some(n) = f.get("transfer") {
        options.transfer_succeeds = match n.as_text().as_deref() {
            Some("succeeds") => true,
            Some("fails") => false,
            _ => {
                cx.err(n.pos, "`transfer` must be `succeeds` or `fails`");
                return None;
            }
        };
    }
    let expect = match f.get("expect") {
        Some(n) => parse_expect(cx, n)?,
        None => {
            cx.missing(node, node.pos, format!("test `{name}` needs `expect`"));
            return None;
        }
    };
    Some(Case {
        name,
        pos: node.pos,
        options,
        expect,
    })
}

/// `[2, 1]`, `"2,1"` or `["", "1234#"]`: one item per wait; empty or `~` is silence.
fn digits(cx: &mut Cx, node: &Node) -> Option<Vec<String>> {
    let items: Vec<String> = match &node.value {
        Value::Seq(items) => items
            .iter()
            .map(|i| match i.value {
                Value::Null => String::new(),
                _ => i.as_text().unwrap_or_default(),
            })
            .collect(),
        Value::Null => Vec::new(),
        _ => node
            .as_text()
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .collect(),
    };
    for item in &items {
        if !item
            .chars()
            .all(|c| c.is_ascii_digit() || c == '*' || c == '#')
        {
            cx.err(
                node.pos,
                format!("digits `{item}` may hold only 0-9, * and #"),
            );
            return None;
        }
    }
    Some(items)
}

fn parse_expect(cx: &mut Cx, node: &Node) -> Option<Expect> {
    let f: Fields = load::fields(
        cx,
        node,
        "expect",
        &[
            "path",
            "prompts",
            "not_prompts",
            "language",
            "queue",
            "outcome",
            "reason",
            "transfer",
        ],
    )?;
    let mut e = Expect::default();
    if let Some(n) = f.get("path") {
        e.path = load::text_list(cx, n, "step");
    }
    if let Some(n) = f.get("prompts") {
        e.prompts = load::text_list(cx, n, "prompt");
    }
    if let Some(n) = f.get("not_prompts") {
        e.not_prompts = load::text_list(cx, n, "prompt");
    }
    if let Some(n) = f.get("language") {
        e.language = Some(load::language(cx, n)?);
    }
    if let Some(n) = f.get("queue") {
        e.queue = Some(load::text(cx, n, "queue")?);
    }
    if let Some(n) = f.get("outcome") {
        let o = load::text(cx, n, "outcome")?;
        if !["answered", "hangup", "transferred"].contains(&o.as_str()) {
            cx.err(n.pos, "`outcome` must be answered, hangup or transferred");
            return None;
        }
        e.outcome = Some(o);
    }
    if let Some(n) = f.get("reason") {
        e.reason = Some(load::text(cx, n, "reason")?);
    }
    if let Some(n) = f.get("transfer") {
        e.transfer = Some(load::text(cx, n, "transfer target")?);
    }
    Some(e)
}

/// The first of `expected` not found in `seen` in order (other entries may come
/// between), or `None` when all are.
fn subsequence<'a>(
    expected: &'a [String],
    seen: &[String],
    matches: impl Fn(&str, &str) -> bool,
) -> Option<&'a str> {
    let mut it = seen.iter();
    expected
        .iter()
        .find(|want| !it.any(|s| matches(want, s)))
        .map(String::as_str)
}

fn compare(expect: &Expect, sim: &SimulationReport) -> Vec<String> {
    let mut failures = Vec::new();
    for (_, line) in &sim.lines {
        if let super::simulate::SimLine::Error(e) = line {
            failures.push(e.clone());
        }
    }
    // `flow/id` matches exactly; a bare `id` matches that id in any flow.
    let step_matches = |want: &str, seen: &str| {
        seen == want || (!want.contains('/') && seen.rsplit('/').next() == Some(want))
    };
    if let Some(missing) = subsequence(&expect.path, &sim.path, step_matches) {
        failures.push(format!(
            "path: expected step `{missing}` (in order), walked {}",
            sim.path.join(" → ")
        ));
    }
    let heard: Vec<String> = sim
        .prompts
        .iter()
        .map(|p| format!("{}@{}", p.id, p.language))
        .collect();
    // `id` matches in any language; `id@lang` only in that one.
    let prompt_matches = |want: &str, seen: &str| {
        seen == want || (!want.contains('@') && seen.split('@').next() == Some(want))
    };
    if let Some(missing) = subsequence(&expect.prompts, &heard, prompt_matches) {
        failures.push(format!(
            "prompts: expected `{missing}` (in order), heard {}",
            heard.join(", ")
        ));
    }
    for banned in &expect.not_prompts {
        if heard.iter().any(|h| prompt_matches(banned, h)) {
            failures.push(format!("prompts: `{banned}` was heard but must not be"));
        }
    }
    if let Some(l) = expect.language {
        if sim.language != Some(l) {
            failures.push(format!(
                "language: expected {l}, got {}",
                sim.language.map(|l| l.code()).unwrap_or("none")
            ));
        }
    }
    if let Some(q) = &expect.queue {
        if sim.queues.last() != Some(q) {
            failures.push(format!(
                "queue: expected {q}, got {}",
                sim.queues.last().map(String::as_str).unwrap_or("none")
            ));
        }
    }
    let (outcome, reason, target) = match &sim.end {
        Some(FlowEnd::Answered { .. }) => ("answered", None, None),
        Some(FlowEnd::Hangup { reason }) => ("hangup", Some(reason.as_str()), None),
        Some(FlowEnd::Transferred { target }) => ("transferred", None, Some(target.as_str())),
        None => ("none", None, None),
    };
    if let Some(o) = &expect.outcome {
        if o != outcome {
            failures.push(format!("outcome: expected {o}, got {outcome}"));
        }
    }
    if let Some(r) = &expect.reason {
        if Some(r.as_str()) != reason {
            failures.push(format!(
                "reason: expected {r}, got {}",
                reason.unwrap_or("none")
            ));
        }
    }
    if let Some(t) = &expect.transfer {
        if Some(t.as_str()) != target {
            failures.push(format!(
                "transfer: expected {t}, got {}",
                target.unwrap_or("none")
            ));
        }
    }
    failures
}
