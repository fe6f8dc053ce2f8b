//! Cross-checks over everything loaded: references, languages, prompts and
//! their audio, reachability, loops that never end.

use super::load::{diagnostic, Parsed, Unread};
use super::model::*;
use super::plural;
use super::suggest::did_you_mean;
use super::Catalogue;
use super::Diagnostic;
use crate::language::Language;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// What the checks look at besides the parsed flows.
pub struct Context<'a> {
    pub files: &'a [PathBuf],
    pub catalogue: &'a Catalogue,
    /// `None` when audio is not checked.
    pub audio: Option<&'a BTreeSet<(Language, String)>>,
    pub languages: &'a [Language],
}

struct Checker<'a> {
    cx: &'a Context<'a>,
    diags: Vec<Diagnostic>,
    parsed_queues: BTreeSet<String>,
    schedules: BTreeSet<String>,
    collected_vars: BTreeSet<String>,
    transfer_allow: &'a [String],
    /// What errors kept from being read: references to it are not reported.
    unread: &'a Unread,
    /// Flows with a step reference that did not resolve: their paths are not
    /// the ones meant, so reachability and loops are not judged.
    unresolved_steps: BTreeSet<String>,
    /// A flow reference did not resolve: which flows are used is not known.
    unresolved_flows: bool,
    /// The hotline's languages may have been in a file that could not be
    /// read: which prompts need which languages is not known.
    languages_unknown: bool,
}

impl Checker<'_> {
    fn at(&mut self, origin: Origin, message: impl Into<String>, warning: bool) {
        let path = self.cx.files.get(origin.file).cloned().unwrap_or_default();
        self.diags
            .push(diagnostic(&path, origin.pos, message, warning));
    }
    fn err(&mut self, origin: Origin, message: impl Into<String>) {
        self.at(origin, message, false);
    }
    fn warn(&mut self, origin: Origin, message: impl Into<String>) {
        self.at(origin, message, true);
    }
}

/// Runs every cross-check; resolves targets and sub-flow calls in place.
pub fn validate(parsed: &mut Parsed, cx: &Context) -> Vec<Diagnostic> {
    let mut ck = Checker {
        cx,
        diags: Vec::new(),
        parsed_queues: parsed.queues.iter().map(|q| q.name.clone()).collect(),
        schedules: parsed
            .schedules
            .iter()
            .map(|(s, _)| s.name.clone())
            .collect(),
        collected_vars: BTreeSet::new(),
        transfer_allow: &parsed.transfer_allow,
        unread: &parsed.unread,
        unresolved_steps: BTreeSet::new(),
        unresolved_flows: false,
        languages_unknown: parsed.languages.is_none() && parsed.unread.names,
    };
    ck.schedules.insert(super::schedule::ALWAYS.into());
    for flow in &parsed.flows {
        for step in &flow.steps {
            if let StepKind::Collect(c) = &step.kind {
                ck.collected_vars.insert(c.into.clone());
            }
        }
    }

    if let Some((l, origin)) = parsed.default_language {
        if !cx.languages.contains(&l) {
            ck.err(
                origin,
                format!(
                    "default language `{l}` is not offered (languages: {})",
                    list(cx.languages)
                ),
            );
        }
    }
    let flow_names: BTreeMap<String, usize> = parsed
        .flows
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name.clone(), i))
        .collect();

    let entries_lost = ck.unread.names || ck.unread.entries;
    if parsed.entries.is_empty() && !parsed.flows.is_empty() && !entries_lost {
        if let Some(f) = parsed.flows.first() {
            ck.err(
                f.origin,
                "no entry flows: add `entries: { default: <flow> }` to say which flow answers calls",
            );
        }
    }
    for (dialled, flow, origin) in &parsed.entries {
        ck.unresolved_flows |= !flow_names.contains_key(flow);
        if !flow_known(&ck, &flow_names, flow) {
            let hint = did_you_mean(flow, flow_names.keys().map(String::as_str));
            ck.err(
                *origin,
                format!("entry `{dialled}` names unknown flow `{flow}`{hint}"),
            );
        }
    }

    for q in &parsed.queues {
        check_no_agents(&mut ck, q);
    }

    for flow in &mut parsed.flows {
        for l in &flow.languages {
            if !cx.languages.contains(l) {
                let o = flow.origin;
                ck.err(
                    o,
                    format!(
                        "flow `{}` offers `{l}`, which is not offered (languages: {})",
                        flow.name,
                        list(cx.languages)
                    ),
                );
            }
        }
        if flow.languages.is_empty() {
            flow.languages = cx.languages.to_vec();
        }
        check_flow(&mut ck, flow, &flow_names);
    }

    check_calls(&mut ck, &parsed.flows);
    let waits = flows_waiting(&parsed.flows);
    for flow in &parsed.flows {
        // Where a step could not be read, the paths between the rest are not
        // the ones written.
        if !ck.unread.steps.contains_key(&flow.name) && !ck.unresolved_steps.contains(&flow.name) {
            check_reachable(&mut ck, flow);
            check_loops(&mut ck, flow, &waits);
        }
    }

    let mut used: BTreeSet<usize> = parsed
        .entries
        .iter()
        .filter_map(|(_, f, _)| flow_names.get(f).copied())
        .collect();
    for flow in &parsed.flows {
        for step in &flow.steps {
            if let StepKind::Call { index, .. } = step.kind {
                used.insert(index);
            }
        }
    }
    for (i, flow) in parsed.flows.iter().enumerate() {
        // An entry or call that could not be read may be the one that uses it.
        if !used.contains(&i) && !ck.unread.any() && !ck.unresolved_flows {
            ck.warn(
                flow.origin,
                format!(
                    "flow `{}` is never used: no entry or call names it",
                    flow.name
                ),
            );
        }
    }
    ck.diags
}

/// Whether a flow name is known, or may be one that could not be read.
fn flow_known(ck: &Checker, flow_names: &BTreeMap<String, usize>, flow: &str) -> bool {
    flow_names.contains_key(flow) || ck.unread.names || ck.unread.flows.contains(flow)
}

fn list(langs: &[Language]) -> String {
    langs
        .iter()
        .map(|l| l.code())
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_flow(ck: &mut Checker, flow: &mut Flow, flow_names: &BTreeMap<String, usize>) {
    let labels: BTreeMap<String, usize> = flow
        .steps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.id.clone().map(|id| (id, i)))
        .collect();
    let langs = flow.languages.clone();
    let name = flow.name.clone();
    let resolve = |ck: &mut Checker, t: &mut Target| match labels.get(&t.label) {
        Some(i) => t.index = *i,
        None if ck.unread.step(&name, &t.label) => {
            ck.unresolved_steps.insert(name.clone());
        }
        None => {
            ck.unresolved_steps.insert(name.clone());
            let hint = did_you_mean(&t.label, labels.keys().map(String::as_str));
            ck.err(
                t.origin,
                format!("unknown step `{}` in flow `{name}`{hint}", t.label),
            );
        }
    };
    for step in &mut flow.steps {
        let origin = step.origin;
        match &mut step.kind {
            StepKind::Play { items, .. } => check_items(ck, items, &langs, &name),
            StepKind::Menu(m) => {
                check_items(ck, &m.prompt, &langs, &name);
                check_items(ck, &m.no_input_prompt, &langs, &name);
                check_items(ck, &m.invalid_prompt, &langs, &name);
                for (_, c) in &mut m.choices {
                    check_choice(ck, c, &langs, &name, &resolve);
                }
                check_choice(ck, &mut m.on_no_input, &langs, &name, &resolve);
                check_choice(ck, &mut m.on_invalid, &langs, &name, &resolve);
            }
            StepKind::Collect(c) => {
                check_items(ck, &c.prompt, &langs, &name);
                check_items(ck, &c.no_input_prompt, &langs, &name);
                check_items(ck, &c.invalid_prompt, &langs, &name);
                check_choice(ck, &mut c.on_no_input, &langs, &name, &resolve);
                check_choice(ck, &mut c.on_invalid, &langs, &name, &resolve);
            }
            StepKind::SetLanguage(l) => {
                if !langs.contains(l) {
                    ck.err(origin, not_offered(*l, &name, &langs));
                }
            }
            StepKind::Branch { arms, otherwise } => {
                for (c, t) in arms.iter_mut() {
                    check_condition(ck, c, &langs, &name);
                    resolve(ck, t);
                }
                if let Some(t) = otherwise {
                    resolve(ck, t);
                }
            }
            StepKind::Queue(q) => {
                check_queue(ck, &q.queue, q.queue_origin, &langs);
                for m in &q.messages {
                    for id in &m.prompts {
                        check_prompt(
                            ck,
                            id,
                            &langs,
                            m.origin,
                            &format!("which flow `{name}` offers"),
                        );
                    }
                }
                if let Some(e) = &q.escalate {
                    check_queue(ck, &e.queue, e.origin, &langs);
                }
                for t in [&mut q.on_timeout, &mut q.on_full, &mut q.on_no_agents]
                    .into_iter()
                    .flatten()
                {
                    resolve(ck, t);
                }
                if let Some(c) = &mut q.callback {
                    check_prompt(
                        ck,
                        &c.prompt,
                        &langs,
                        c.origin,
                        &format!("which flow `{name}` offers"),
                    );
                    resolve(ck, &mut c.goto);
                }
            }
            StepKind::Callback(c) => {
                if let Some((schedule, origin)) = &c.window {
                    let lost = ck.unread.names || ck.unread.schedules.contains(schedule);
                    if !ck.schedules.contains(schedule) && !lost {
                        let hint = did_you_mean(schedule, ck.schedules.iter().map(String::as_str));
                        ck.err(*origin, format!("unknown schedule `{schedule}`{hint}"));
                    }
                }
                if let Some(t) = &mut c.on_invalid {
                    resolve(ck, t);
                }
            }
            StepKind::Goto(t) => resolve(ck, t),
            StepKind::Call {
                flow: callee,
                index,
            } => match flow_names.get(callee) {
                Some(i) => *index = *i,
                None if flow_known(ck, flow_names, callee) => ck.unresolved_flows = true,
                None => {
                    ck.unresolved_flows = true;
                    let hint = did_you_mean(callee, flow_names.keys().map(String::as_str));
                    ck.err(origin, format!("unknown flow `{callee}`{hint}"));
                }
            },
            StepKind::Transfer { target, on_failure } => {
                if !transfer_allowed(ck.transfer_allow, target) {
                    let msg = format!(
                        "transfer target `{target}` is not on the allow-list (transfer_allow)"
                    );
                    ck.err(origin, msg);
                }
                if let Some(t) = on_failure {
                    resolve(ck, t);
                }
            }
            StepKind::Return | StepKind::Hangup { .. } => {}
        }
    }
}

/// A queue reference, checked for every language when it holds `{lang}`.
fn check_queue(ck: &mut Checker, queue: &str, origin: Origin, langs: &[Language]) {
    let unknown = |ck: &Checker, name: &str| {
        !ck.parsed_queues.contains(name) && !ck.unread.names && !ck.unread.queues.contains(name)
    };
    let hint =
        |ck: &Checker, name: &str| did_you_mean(name, ck.parsed_queues.iter().map(String::as_str));
    if queue.contains(super::load::LANG_PLACEHOLDER) {
        for l in langs {
            let expanded = queue.replace(super::load::LANG_PLACEHOLDER, l.code());
            if unknown(ck, &expanded) {
                let hint = hint(ck, &expanded);
                ck.err(
                    origin,
                    format!("unknown queue `{expanded}` (`{queue}` in {l}){hint}"),
                );
            }
        }
    } else if unknown(ck, queue) {
        let hint = hint(ck, queue);
        ck.err(origin, format!("unknown queue `{queue}`{hint}"));
    }
}

/// A queue's fallback language must be offered, and its message said in
/// every language the queue takes callers in.
fn check_no_agents(ck: &mut Checker, q: &QueueDef) {
    let Some(NoAgents::Fallback {
        language,
        play,
        origin,
    }) = &q.no_agents
    else {
        return;
    };
    if !ck.cx.languages.contains(language) {
        ck.err(
            *origin,
            format!(
                "queue `{}` falls back to `{language}`, which is not offered (languages: {})",
                q.name,
                list(ck.cx.languages)
            ),
        );
    }
    let own: Vec<Language> = q
        .skills
        .iter()
        .filter_map(|s| s.parse::<Language>().ok())
        .collect();
    if own.contains(language) {
        ck.err(
            *origin,
            format!(
                "queue `{}` falls back to its own language `{language}`: name another language",
                q.name
            ),
        );
    }
    if let Some(id) = play {
        let langs = if own.is_empty() {
            ck.cx.languages.to_vec()
        } else {
            own
        };
        let needed_by = format!("which queue `{}` takes callers in", q.name);
        check_prompt(ck, id, &langs, *origin, &needed_by);
    }
}

fn not_offered(l: Language, flow: &str, langs: &[Language]) -> String {
    format!(
        "language `{l}` is not offered by flow `{flow}` (it offers {})",
        list(langs)
    )
}

fn check_choice(
    ck: &mut Checker,
    c: &mut Choice,
    langs: &[Language],
    flow: &str,
    resolve: &dyn Fn(&mut Checker, &mut Target),
) {
    if let Some((l, origin)) = c.language {
        if !langs.contains(&l) {
            ck.err(origin, not_offered(l, flow, langs));
        }
    }
    if let Some(t) = &mut c.goto {
        resolve(ck, t);
    }
}

fn check_condition(ck: &mut Checker, c: &Condition, langs: &[Language], flow: &str) {
    match c {
        Condition::All(list) | Condition::Any(list) => {
            for c in list {
                check_condition(ck, c, langs, flow);
            }
        }
        Condition::Not(c) => check_condition(ck, c, langs, flow),
        Condition::Language(list) => {
            for (l, origin) in list {
                if !langs.contains(l) {
                    ck.err(*origin, not_offered(*l, flow, langs));
                }
            }
        }
        Condition::Schedule(name, origin) => {
            let lost = ck.unread.names || ck.unread.schedules.contains(name);
            if !ck.schedules.contains(name) && !lost {
                let hint = did_you_mean(name, ck.schedules.iter().map(String::as_str));
                ck.err(*origin, format!("unknown schedule `{name}`{hint}"));
            }
        }
        Condition::QueueWaiting { queue, origin, .. }
        | Condition::EstimatedWait { queue, origin, .. } => {
            check_queue(ck, queue, *origin, langs);
        }
        Condition::Digits { .. }
        | Condition::Caller(_)
        | Condition::CallerPrefix(_)
        | Condition::Dialled(_)
        | Condition::Holiday(_)
        | Condition::AgentsReady { .. } => {}
    }
}

/// `*` in a pattern matches any run of characters.
pub fn transfer_allowed(patterns: &[String], target: &str) -> bool {
    patterns
        .iter()
        .any(|p| glob(p.as_bytes(), target.as_bytes()))
}

fn glob(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative matcher with one backtrack point: linear in practice.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(c) if Some(c) == text.get(t) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|c| *c == b'*'))
}

fn check_items(ck: &mut Checker, items: &[PlayItem], langs: &[Language], flow: &str) {
    for item in items {
        match item {
            PlayItem::Prompt {
                id,
                language,
                origin,
            } => {
                if let Some(l) = language {
                    if !langs.contains(l) {
                        ck.err(*origin, not_offered(*l, flow, langs));
                        continue;
                    }
                }
                let wanted: Vec<Language> = match language {
                    Some(l) => vec![*l],
                    None => langs.to_vec(),
                };
                check_prompt(
                    ck,
                    id,
                    &wanted,
                    *origin,
                    &format!("which flow `{flow}` offers"),
                );
            }
            PlayItem::Count {
                source,
                prompt,
                numbers,
                max,
                origin,
            } => {
                match source {
                    NumberSource::Var(v) => {
                        if !ck.collected_vars.contains(v) {
                            ck.warn(*origin, format!("variable `{v}` is never collected"));
                        }
                    }
                    NumberSource::Waiting(q) | NumberSource::WaitMinutes(q) => {
                        check_queue(ck, q, *origin, langs);
                    }
                    NumberSource::AgentsReady(_) => {}
                }
                if ck.unread.catalogue || ck.languages_unknown {
                    continue;
                }
                // Estimates round up to the next sayable number, so only the
                // largest must be sayable for every value to have a form.
                let rounds_up = matches!(source, NumberSource::WaitMinutes(_));
                for l in langs {
                    let mut missing = if rounds_up {
                        missing_count_forms_for(ck.cx, prompt, numbers, *max..=*max, *l)
                    } else {
                        missing_count_forms(ck.cx, prompt, numbers, *max, *l)
                    };
                    missing.retain(|id| !ck.unread.prompts.contains(id));
                    if !missing.is_empty() {
                        let shown: Vec<&str> = missing.iter().take(6).map(String::as_str).collect();
                        let more = missing.len().saturating_sub(shown.len());
                        let tail = if more > 0 {
                            format!(" and {more} more")
                        } else {
                            String::new()
                        };
                        ck.err(
                            *origin,
                            format!(
                                "counted prompt `{prompt}` cannot say every number up to {max} in {l}, which flow `{flow}` offers: missing {}{tail}",
                                shown.join(", ")
                            ),
                        );
                    }
                }
            }
        }
    }
}

fn has(cx: &Context, id: &str, l: Language) -> bool {
    cx.catalogue.text(id, l).is_some() && cx.audio.is_none_or(|a| a.contains(&(l, id.to_string())))
}

/// Ids (with `(audio)` when only the recording lacks) a counted phrase still needs.
fn missing_count_forms(
    cx: &Context,
    family: &str,
    numbers: &str,
    max: u64,
    l: Language,
) -> Vec<String> {
    missing_count_forms_for(cx, family, numbers, 0..=max, l)
}

/// The same, for the numbers in `range` only.
fn missing_count_forms_for(
    cx: &Context,
    family: &str,
    numbers: &str,
    range: std::ops::RangeInclusive<u64>,
    l: Language,
) -> Vec<String> {
    let mut missing = BTreeSet::new();
    for n in range {
        let whole = format!("{family}.{n}");
        if has(cx, &whole, l) {
            continue;
        }
        let number = format!("{numbers}.{n}");
        let form = format!("{family}.{}", plural::category(l, n));
        for id in [number, form] {
            if !has(cx, &id, l) {
                missing.insert(id);
            }
        }
    }
    missing.into_iter().collect()
}

fn check_prompt(ck: &mut Checker, id: &str, langs: &[Language], origin: Origin, needed_by: &str) {
    let lost = ck.unread.catalogue || ck.unread.prompts.contains(id);
    let Some(texts) = ck.cx.catalogue.prompts.get(id) else {
        if !lost {
            let hint = did_you_mean(id, ck.cx.catalogue.prompts.keys().map(String::as_str));
            ck.err(origin, format!("unknown prompt `{id}`{hint}"));
        }
        return;
    };
    if lost || ck.languages_unknown {
        return;
    }
    let no_text: Vec<Language> = langs
        .iter()
        .copied()
        .filter(|l| !texts.contains_key(l))
        .collect();
    if !no_text.is_empty() {
        ck.err(
            origin,
            format!(
                "prompt `{id}` has no text in {}, {needed_by}",
                list(&no_text)
            ),
        );
    }
    if let Some(audio) = ck.cx.audio {
        let no_audio: Vec<Language> = langs
            .iter()
            .copied()
            .filter(|l| !audio.contains(&(*l, id.to_string())))
            .collect();
        if !no_audio.is_empty() {
            ck.err(
                origin,
                format!(
                    "prompt `{id}` has no audio in {} (audio/<lang>/{id}.wav), {needed_by}",
                    list(&no_audio)
                ),
            );
        }
    }
}

/// Where control can go from a step: another step, or out of the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    Step(usize),
    End,
}

fn next(flow: &Flow, i: usize) -> Edge {
    if i + 1 < flow.steps.len() {
        Edge::Step(i + 1)
    } else {
        Edge::End
    }
}

fn choice_edge(flow: &Flow, i: usize, c: &Choice) -> Edge {
    match (&c.goto, &c.hangup) {
        (_, Some(_)) => Edge::End,
        (Some(t), None) => Edge::Step(t.index),
        (None, None) => next(flow, i),
    }
}

/// Every way control can leave step `i`.
pub fn successors(flow: &Flow, i: usize) -> Vec<Edge> {
    let Some(step) = flow.steps.get(i) else {
        return vec![Edge::End];
    };
    let target = |t: &Option<Target>| match t {
        Some(t) => Edge::Step(t.index),
        None => next(flow, i),
    };
    match &step.kind {
        StepKind::Play { .. } | StepKind::SetLanguage(_) | StepKind::Call { .. } => {
            vec![next(flow, i)]
        }
        StepKind::Menu(m) => {
            let mut out: Vec<Edge> = m
                .choices
                .iter()
                .map(|(_, c)| choice_edge(flow, i, c))
                .collect();
            out.push(choice_edge(flow, i, &m.on_no_input));
            out.push(choice_edge(flow, i, &m.on_invalid));
            out
        }
        StepKind::Collect(c) => vec![
            next(flow, i),
            choice_edge(flow, i, &c.on_no_input),
            choice_edge(flow, i, &c.on_invalid),
        ],
        StepKind::Branch { arms, otherwise } => {
            let mut out: Vec<Edge> = arms.iter().map(|(_, t)| Edge::Step(t.index)).collect();
            out.push(target(otherwise));
            out
        }
        StepKind::Queue(q) => vec![
            Edge::End,
            target(&q.on_timeout),
            target(&q.on_full),
            target(&q.on_no_agents),
            match &q.callback {
                Some(c) => Edge::Step(c.goto.index),
                None => Edge::End,
            },
        ],
        StepKind::Callback(c) => vec![next(flow, i), target(&c.on_invalid)],
        StepKind::Goto(t) => vec![Edge::Step(t.index)],
        StepKind::Transfer { on_failure, .. } => vec![Edge::End, target(on_failure)],
        StepKind::Return | StepKind::Hangup { .. } => vec![Edge::End],
    }
}

fn step_edges(flow: &Flow, i: usize) -> Vec<usize> {
    successors(flow, i)
        .into_iter()
        .filter_map(|e| match e {
            Edge::Step(j) if j < flow.steps.len() => Some(j),
            _ => None,
        })
        .collect()
}

fn reach_from(flow: &Flow, start: usize) -> Vec<bool> {
    let mut seen = vec![false; flow.steps.len()];
    let mut stack = step_edges(flow, start);
    while let Some(j) = stack.pop() {
        if let Some(s) = seen.get_mut(j) {
            if !*s {
                *s = true;
                stack.extend(step_edges(flow, j));
            }
        }
    }
    seen
}

fn check_reachable(ck: &mut Checker, flow: &Flow) {
    if flow.steps.is_empty() {
        return;
    }
    let mut reached = reach_from(flow, 0);
    if let Some(first) = reached.first_mut() {
        *first = true;
    }
    for (i, step) in flow.steps.iter().enumerate() {
        let prev_reached = i == 0 || reached.get(i - 1).copied().unwrap_or(false);
        if !reached.get(i).copied().unwrap_or(true) && prev_reached {
            ck.err(
                step.origin,
                format!("step `{}` is unreachable", flow.step_name(i)),
            );
        }
    }
}

/// Flows that can wait for the caller or the outside world (directly or through
/// sub-flows): a loop through them is not a busy loop.
fn flows_waiting(flows: &[Flow]) -> Vec<bool> {
    let mut waits: Vec<bool> = flows
        .iter()
        .map(|f| {
            f.steps.iter().any(|s| {
                matches!(
                    s.kind,
                    StepKind::Menu(_)
                        | StepKind::Collect(_)
                        | StepKind::Queue(_)
                        | StepKind::Transfer { .. }
                )
            })
        })
        .collect();
    // Propagate through calls until nothing changes (bounded by the flow count).
    for _ in 0..flows.len() {
        let mut changed = false;
        for (i, f) in flows.iter().enumerate() {
            if waits.get(i).copied().unwrap_or(false) {
                continue;
            }
            let calls_waiting = f.steps.iter().any(|s| match s.kind {
                StepKind::Call { index, .. } => waits.get(index).copied().unwrap_or(false),
                _ => false,
            });
            if calls_waiting {
                if let Some(w) = waits.get_mut(i) {
                    *w = true;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    waits
}

fn check_loops(ck: &mut Checker, flow: &Flow, waits: &[bool]) {
    let n = flow.steps.len();
    let reach: Vec<Vec<bool>> = (0..n).map(|i| reach_from(flow, i)).collect();
    let r = |i: usize, j: usize| {
        reach
            .get(i)
            .and_then(|row| row.get(j))
            .copied()
            .unwrap_or(false)
    };
    let mut done = vec![false; n];
    for i in 0..n {
        if done.get(i).copied().unwrap_or(true) || !r(i, i) {
            continue;
        }
        let members: Vec<usize> = (0..n).filter(|&j| r(i, j) && r(j, i)).collect();
        for &m in &members {
            if let Some(d) = done.get_mut(m) {
                *d = true;
            }
        }
        let waits_here = members
            .iter()
            .any(|&m| match flow.steps.get(m).map(|s| &s.kind) {
                Some(
                    StepKind::Menu(_)
                    | StepKind::Collect(_)
                    | StepKind::Queue(_)
                    | StepKind::Transfer { .. },
                ) => true,
                Some(StepKind::Call { index, .. }) => waits.get(*index).copied().unwrap_or(false),
                _ => false,
            });
        if waits_here {
            continue;
        }
        let exits = members.iter().any(|&m| {
            successors(flow, m).into_iter().any(|e| match e {
                Edge::End => true,
                Edge::Step(j) => !members.contains(&j),
            })
        });
        let names: Vec<String> = members.iter().map(|&m| flow.step_name(m)).collect();
        let origin = members
            .first()
            .and_then(|&m| flow.steps.get(m))
            .map(|s| s.origin)
            .unwrap_or(flow.origin);
        if !exits {
            ck.err(
                origin,
                format!(
                    "loop with no exit and no caller input: {} repeat forever",
                    names.join(" → ")
                ),
            );
        } else if !members.iter().any(|&m| {
            matches!(
                flow.steps.get(m).map(|s| &s.kind),
                Some(StepKind::Play { .. })
            )
        }) {
            ck.warn(
                origin,
                format!(
                    "loop without caller input or prompts: {} may spin until the step limit ends the call",
                    names.join(" → ")
                ),
            );
        }
    }
}

/// Sub-flows that call themselves, directly or through others, never return.
fn check_calls(ck: &mut Checker, flows: &[Flow]) {
    let callees = |i: usize| -> Vec<(usize, Origin)> {
        flows
            .get(i)
            .map(|f| {
                f.steps
                    .iter()
                    .filter_map(|s| match s.kind {
                        StepKind::Call { index, .. } if index < flows.len() => {
                            Some((index, s.origin))
                        }
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut reported = BTreeSet::new();
    for start in 0..flows.len() {
        // Depth-first search for a path from `start` back to itself.
        let mut stack: Vec<(usize, Vec<usize>)> = vec![(start, vec![start])];
        let mut seen = BTreeSet::new();
        while let Some((at, path)) = stack.pop() {
            for (callee, origin) in callees(at) {
                if callee == start {
                    if reported.insert(start) {
                        let names: Vec<&str> = path
                            .iter()
                            .chain(std::iter::once(&start))
                            .filter_map(|&i| flows.get(i).map(|f| f.name.as_str()))
                            .collect();
                        ck.err(
                            origin,
                            format!(
                                "sub-flows call each other in a circle: {}",
                                names.join(" → ")
                            ),
                        );
                    }
                } else if seen.insert(callee) {
                    let mut p = path.clone();
                    p.push(callee);
                    stack.push((callee, p));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_allow_list_patterns() {
        let allow = vec![
            "sip:*@pstn.example.org".to_string(),
            "sip:113@emergency".to_string(),
        ];
        assert!(transfer_allowed(&allow, "sip:+4722000000@pstn.example.org"));
        assert!(transfer_allowed(&allow, "sip:113@emergency"));
        assert!(!transfer_allowed(&allow, "sip:x@evil.example.org"));
        assert!(!transfer_allowed(&allow, "sip:x@pstn.example.org.evil"));
        assert!(!transfer_allowed(&[], "sip:a@b"));
    }
}
