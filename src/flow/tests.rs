//! Loader, validator and engine tests on in-memory flow sets with a fake clock.

use super::*;
use crate::language::Language;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Instant;

const HEADER: &str = "\
entries: { default: main, \"80080000\": other }
queues:
  q_nb: { skills: [general, nb], max_wait: 20m }
  q_en: { skills: [general, en] }
schedules:
  office:
    weekly: { mon-fri: \"08:00-16:00\" }
    holidays: norway
transfer_allow: [\"sip:*@pstn.example.org\"]
";

/// A catalogue with every id in every language.
pub fn catalogue(ids: &[&str]) -> String {
    let mut out = String::from("prompts:\n");
    for id in ids {
        out.push_str(&format!("  {id}:\n"));
        for l in Language::ALL {
            out.push_str(&format!("    {}: \"{id} in {l}\"\n", l.code()));
        }
    }
    out
}

const PROMPTS: &[&str] = &[
    "welcome",
    "menu",
    "invalid",
    "no_input",
    "bye",
    "confirm",
    "closed",
    "enter",
    "minutes.one",
    "minutes.few",
    "minutes.many",
    "minutes.other",
    "minutes.zero",
    "minutes.two",
    "minutes.1",
    "lang_confirmed",
];

fn sources_with(flows: &str, prompts: &str) -> Sources {
    let mut audio = BTreeSet::new();
    for id in PROMPTS {
        for l in Language::ALL {
            audio.insert((l, id.to_string()));
        }
    }
    for n in 0..=30 {
        for l in Language::ALL {
            audio.insert((l, format!("number.{n}")));
        }
    }
    Sources {
        dir: PathBuf::from("flows"),
        files: vec![(PathBuf::from("f.yaml"), format!("{HEADER}{flows}"))],
        catalogue: Some((PathBuf::from("prompts.yaml"), prompts.to_string())),
        audio: Some(audio),
        unreadable: false,
    }
}

fn full_catalogue() -> String {
    let mut ids: Vec<String> = PROMPTS.iter().map(|s| s.to_string()).collect();
    ids.extend((0..=30).map(|n| format!("number.{n}")));
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    catalogue(&refs)
}

fn diags(flows: &str) -> Vec<String> {
    let (_, d) = load_sources(&sources_with(flows, &full_catalogue()));
    d.iter().map(|d| d.to_string()).collect()
}

fn load(flows: &str) -> Arc<FlowSet> {
    let (set, d) = load_sources(&sources_with(flows, &full_catalogue()));
    let errors: Vec<String> = d
        .iter()
        .filter(|d| !d.is_warning)
        .map(|d| d.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    Arc::new(set.expect("set"))
}

/// The header takes 9 lines; flows start at line 10.
fn assert_diag(flows: &str, expected: &str) {
    let d = diags(flows);
    assert!(
        d.iter().any(|x| x == expected),
        "expected {expected}\ngot {d:#?}"
    );
}

const OTHER: &str = "  other:\n    steps:\n      - hangup: done\n";

// ---- parser and validator: each error kind at its exact place ----

#[test]
fn valid_set_loads_with_version_and_entries() {
    let set = load(&format!(
        "flows:\n  main:\n    steps:\n      - play: welcome\n{OTHER}"
    ));
    assert_eq!(set.entry_for("80080000"), Some("other"));
    assert_eq!(set.entry_for("12345"), Some("main"));
    assert_eq!(set.version().len(), 12);
    let again = load(&format!(
        "flows:\n  main:\n    steps:\n      - play: welcome\n{OTHER}"
    ));
    assert_eq!(set.version(), again.version());
    let changed = load(&format!(
        "flows:\n  main:\n    steps:\n      - play: bye\n{OTHER}"
    ));
    assert_ne!(set.version(), changed.version());
}

#[test]
fn yaml_syntax_error_has_position() {
    let d = diags("flows:\n  main:\n    steps: [\n");
    assert!(d.iter().any(|x| x.starts_with("f.yaml:")), "{d:?}");
    let d = diags("flows:\n  main:\n    steps:\n      - play: a\n     bad: x\n");
    assert!(
        d.first().is_some_and(|x| x.starts_with("f.yaml:14:")),
        "{d:?}"
    );
}

#[test]
fn unknown_step_kind() {
    assert_diag(
        &format!("flows:\n  main:\n    steps:\n      - plya: welcome\n{OTHER}"),
        "f.yaml:13:9: unknown step kind `plya`; did you mean `play`?",
    );
    assert_diag(
        &format!("flows:\n  main:\n    steps:\n      - dance: welcome\n{OTHER}"),
        "f.yaml:13:9: unknown step kind `dance`: expected one of play, menu, collect, set_language, branch, queue, goto, call, return, transfer, callback, hangup",
    );
}

#[test]
fn unknown_prompt_queue_schedule_flow_and_step() {
    let flows = format!(
        "flows:\n  main:\n    steps:\n      - play: welcom\n      - queue: q_xx\n      - branch:\n          - when: {{ schedule: offce }}\n            goto: nowhere\n      - call: nosuch\n{OTHER}"
    );
    assert_diag(
        &flows,
        "f.yaml:13:15: unknown prompt `welcom`; did you mean `welcome`?",
    );
    assert_diag(&flows, "f.yaml:14:16: unknown queue `q_xx`");
    assert_diag(
        &flows,
        "f.yaml:16:31: unknown schedule `offce`; did you mean `office`?",
    );
    assert_diag(
        &flows,
        "f.yaml:17:19: unknown step `nowhere` in flow `main`",
    );
    assert_diag(&flows, "f.yaml:18:9: unknown flow `nosuch`");
}

#[test]
fn a_misspelt_name_gets_the_closest_known_one() {
    let flows = format!(
        "flows:\n  main:\n    steps:\n      - play: lang_confirmd\n      - queue: q_nbb\n      - call: ohter\n      - goto: closd\n      - id: closed\n        hangup: done\n{OTHER}"
    );
    assert_diag(
        &flows,
        "f.yaml:13:15: unknown prompt `lang_confirmd`; did you mean `lang_confirmed`?",
    );
    assert_diag(
        &flows,
        "f.yaml:14:16: unknown queue `q_nbb`; did you mean `q_nb`?",
    );
    assert_diag(
        &flows,
        "f.yaml:15:9: unknown flow `ohter`; did you mean `other`?",
    );
    assert_diag(
        &flows,
        "f.yaml:16:15: unknown step `closd` in flow `main`; did you mean `closed`?",
    );
    // An entry naming a flow, and a queue named per language.
    let flows = "flows:\n  mian:\n    steps:\n      - queue: q_{lang}\n  other:\n    steps:\n      - hangup: x\n";
    assert_diag(
        flows,
        "f.yaml:1:12: entry `default` names unknown flow `main`; did you mean `mian`?",
    );
    assert_diag(
        flows,
        "f.yaml:13:16: unknown queue `q_pl` (`q_{lang}` in pl)",
    );
    // Nothing close: no guess.
    assert_diag(
        &format!("flows:\n  main:\n    steps:\n      - goto: nowhere\n      - id: closed\n        hangup: done\n{OTHER}"),
        "f.yaml:13:15: unknown step `nowhere` in flow `main`",
    );
}

#[test]
fn a_misspelt_key_in_a_step_is_called_a_key() {
    assert_only(
        "      - play: welcome\n        barge_inn: true\n",
        "f.yaml:14:9: unknown key `barge_inn`; did you mean `barge_in`?",
    );
    assert_only(
        "      - play: welcome\n        volume: 3\n",
        "f.yaml:14:9: unknown key `volume` beside `play`: a step holds one kind, an `id` and (play only) `barge_in`",
    );
    // An unknown kind is still a kind, and the step it would have been is
    // not also "unknown" where a goto names it.
    assert_only(
        "      - goto: closed\n      - id: closed\n        paly: closed\n",
        "f.yaml:15:9: unknown step kind `paly`; did you mean `play`?",
    );
    // A key misspelt inside a kind's mapping is not also "missing".
    assert_only(
        "      - menu:\n          prompt: menu\n          choises: { \"1\": { hangup: a } }\n",
        "f.yaml:15:11: unknown key `choises` in menu; did you mean `choices`?",
    );
}

/// Steps of flow `main` (written from line 13) give this one diagnostic.
fn assert_only(steps: &str, expected: &str) {
    let d = diags(&format!("flows:\n  main:\n    steps:\n{steps}{OTHER}"));
    assert_eq!(d, [expected]);
}

/// The default sources with other flow files.
fn diags_of_files(files: &[(&str, &str)], prompts: &str) -> Vec<String> {
    let mut sources = sources_with("", prompts);
    sources.files = files
        .iter()
        .map(|(name, text)| (PathBuf::from(name), text.to_string()))
        .collect();
    let (set, d) = load_sources(&sources);
    assert!(set.is_none());
    d.iter().map(|d| d.to_string()).collect()
}

#[test]
fn a_syntax_error_is_one_message_without_its_consequences() {
    let main = "flows:\n  main:\n    steps:\n      - call: sub\n      - goto: end\n      - id: end\n        hangup: done\n";
    let broken_sub = "flows:\n  sub:\n    steps: [\n      - play: welcome\n";
    let d = diags_of_files(
        &[
            (
                "a.yaml",
                HEADER.replace("\"80080000\": other", "\"1\": sub").as_str(),
            ),
            ("b.yaml", main),
            ("c.yaml", broken_sub),
        ],
        &full_catalogue(),
    );
    // No "unknown flow `sub`" for the call or the entry, no "never used".
    assert_eq!(d, ["c.yaml:4:7: \"-\" is only valid inside a block"]);

    // A syntax error in the catalogue: no prompt is "unknown".
    let d = diags_of_files(
        &[(
            "a.yaml",
            &format!("{HEADER}{main}  sub:\n    steps:\n      - play: welcome\n{OTHER}"),
        )],
        "prompts:\n  welcome: { nb: \"Hei\"\n",
    );
    assert_eq!(d, ["prompts.yaml:2:12: unclosed bracket '{'"]);
}

#[test]
fn a_step_that_cannot_be_read_makes_no_unreachable_steps() {
    // The menu (timeout out of range) is the only way to `info` and `end`.
    assert_only(
        "      - menu:\n          prompt: menu\n          timeout: 5m\n          choices: { \"1\": info, \"2\": end }\n      - hangup: x\n      - id: info\n        play: welcome\n      - id: end\n        hangup: done\n",
        "f.yaml:15:20: timeout 5m is out of range: 1s to 1m",
    );
    // Nor does a goto to a misspelt step: the steps after it are not
    // "unreachable" for want of the jump meant.
    assert_only(
        "      - goto: closd\n      - play: welcome\n      - id: closed\n        hangup: done\n",
        "f.yaml:13:15: unknown step `closd` in flow `main`; did you mean `closed`?",
    );
    // A queue that cannot be read is not also unknown where a step uses it.
    let d = queue_file_diags("q_lt: 5");
    assert_eq!(
        d,
        ["q.yaml:2:9: queue `q_lt` must be a mapping, found a number"]
    );
}

#[test]
fn prompt_missing_text_or_audio_in_an_offered_language() {
    let mut cat = full_catalogue();
    cat = cat.replace("    ar: \"welcome in ar\"\n", "");
    let mut s = sources_with(
        &format!("flows:\n  main:\n    steps:\n      - play: welcome\n      - play: bye\n{OTHER}"),
        &cat,
    );
    if let Some(a) = s.audio.as_mut() {
        a.remove(&(Language::Lt, "bye".to_string()));
    }
    let (set, d) = load_sources(&s);
    assert!(set.is_none());
    let d: Vec<String> = d.iter().map(|d| d.to_string()).collect();
    assert!(
        d.contains(
            &"f.yaml:13:15: prompt `welcome` has no text in ar, which flow `main` offers"
                .to_string()
        ),
        "{d:#?}"
    );
    assert!(d.contains(&"f.yaml:14:15: prompt `bye` has no audio in lt (audio/<lang>/bye.wav), which flow `main` offers".to_string()), "{d:#?}");
    // A flow that does not offer Arabic does not need it.
    let s = sources_with(
        &format!(
            "flows:\n  main:\n    languages: [nb, en]\n    steps:\n      - play: welcome\n{OTHER}"
        ),
        &cat,
    );
    let (set, d) = load_sources(&s);
    assert!(set.is_some(), "{d:?}");
}

#[test]
fn unreachable_steps() {
    assert_diag(
        &format!("flows:\n  main:\n    steps:\n      - goto: end\n      - play: welcome\n      - play: bye\n      - id: end\n        hangup: done\n{OTHER}"),
        "f.yaml:14:9: step `main/#2` is unreachable",
    );
}

#[test]
fn duplicate_menu_choices() {
    assert_diag(
        &format!("flows:\n  main:\n    steps:\n      - menu:\n          prompt: menu\n          choices:\n            \"1\": {{ hangup: a }}\n            1: {{ hangup: b }}\n{OTHER}"),
        "f.yaml:17:13: duplicate menu choice `1`",
    );
}

#[test]
fn loop_with_no_exit_and_no_input() {
    assert_diag(
        &format!("flows:\n  main:\n    steps:\n      - id: again\n        play: welcome\n      - goto: again\n{OTHER}"),
        "f.yaml:14:9: loop with no exit and no caller input: main/again → main/#2 repeat forever",
    );
    // A loop through a menu is fine: the caller decides.
    let d = diags(&format!("flows:\n  main:\n    steps:\n      - id: m\n        menu:\n          prompt: menu\n          choices: {{ \"1\": m, \"2\": {{ hangup: bye }} }}\n{OTHER}"));
    assert!(d.is_empty(), "{d:#?}");
}

#[test]
fn durations_out_of_range_or_malformed() {
    assert_diag(
        &format!("flows:\n  main:\n    steps:\n      - menu:\n          prompt: menu\n          timeout: 5m\n          choices: {{ \"1\": {{ hangup: a }} }}\n{OTHER}"),
        "f.yaml:15:20: timeout 5m is out of range: 1s to 1m",
    );
    assert_diag(
        &format!("flows:\n  main:\n    steps:\n      - menu:\n          prompt: menu\n          timeout: 30\n          choices: {{ \"1\": {{ hangup: a }} }}\n{OTHER}"),
        "f.yaml:15:20: timeout: duration `30` needs a unit: ms, s, m or h (e.g. `30s`)",
    );
}

#[test]
fn language_not_offered() {
    assert_diag(
        &format!("flows:\n  main:\n    languages: [nb, en]\n    steps:\n      - set_language: ar\n{OTHER}"),
        "f.yaml:14:9: language `ar` is not offered by flow `main` (it offers nb, en)",
    );
    assert_diag(
        &format!("languages: [nb, en]\nflows:\n  main:\n    languages: [nb, pl]\n    steps:\n      - hangup: x\n{OTHER}"),
        "f.yaml:12:3: flow `main` offers `pl`, which is not offered (languages: nb, en)",
    );
}

#[test]
fn transfer_must_be_allowed() {
    assert_diag(
        &format!("flows:\n  main:\n    steps:\n      - transfer: sip:x@evil.example.com\n{OTHER}"),
        "f.yaml:13:9: transfer target `sip:x@evil.example.com` is not on the allow-list (transfer_allow)",
    );
}

#[test]
fn recursive_sub_flows_and_unused_flows() {
    let d = diags("flows:\n  main:\n    steps:\n      - call: main\n  other:\n    steps:\n      - hangup: x\n  spare:\n    steps:\n      - hangup: x\n");
    assert!(
        d.contains(&"f.yaml:13:9: sub-flows call each other in a circle: main → main".to_string()),
        "{d:#?}"
    );
    assert!(
        d.contains(
            &"f.yaml:17:3: warning: flow `spare` is never used: no entry or call names it"
                .to_string()
        ),
        "{d:#?}"
    );
}

#[test]
fn counted_prompt_needs_every_form() {
    let cat = full_catalogue().replace("  minutes.many:\n", "  minutes_many_gone:\n");
    let s = sources_with(&format!("flows:\n  main:\n    steps:\n      - play:\n          - prompt: minutes\n            count: {{ wait_minutes: q_nb }}\n            max: 6\n{OTHER}"), &cat);
    let (_, d) = load_sources(&s);
    let d: Vec<String> = d.iter().map(|d| d.to_string()).collect();
    assert!(
        d.contains(&"f.yaml:14:19: counted prompt `minutes` cannot say every number up to 6 in ar, which flow `main` offers: missing minutes.many".to_string())
            || d.iter().any(|x| x.contains("in pl, which flow `main` offers: missing minutes.many")),
        "{d:#?}"
    );
}

// ---- engine ----

struct Env {
    at: DateTime<Utc>,
    queue: QueueState,
}

impl FlowEnv for Env {
    fn now_wall(&self) -> DateTime<Utc> {
        self.at
    }
    fn queue_state(&self, _: &str) -> QueueState {
        self.queue
    }
}

fn env() -> Env {
    Env {
        at: DateTime::parse_from_rfc3339("2025-03-05T10:00:00+01:00")
            .unwrap()
            .with_timezone(&Utc),
        queue: QueueState::default(),
    }
}

fn drain(run: &mut FlowRun) -> Vec<FlowAction> {
    std::iter::from_fn(|| run.poll_action()).collect()
}

fn play(id: u64, prompts: &[(&str, Language)]) -> FlowAction {
    FlowAction::Play {
        play_id: id,
        prompts: prompts
            .iter()
            .map(|(p, l)| PromptRef {
                id: p.to_string(),
                language: *l,
            })
            .collect(),
    }
}

fn hangup(reason: &str) -> FlowAction {
    FlowAction::Hangup {
        reason: reason.into(),
    }
}

const LANGUAGE_MENU: &str = "\
flows:
  main:
    steps:
      - play: welcome
      - call: language
      - play: confirm
      - hangup: done
  language:
    steps:
      - menu:
          prompt:
            - { prompt: menu, in: nb }
            - { prompt: menu, in: en }
          choices:
            \"1\": { language: nb }
            \"2\": { language: en }
          timeout: 5s
          attempts: 2
          no_input_prompt: no_input
          invalid_prompt: invalid
          on_no_input: { language: nb }
          on_invalid: { hangup: invalid_input }
      - return:
";

#[test]
fn menu_barge_in_choice_and_language_selected_once() {
    let set = load(&format!("{LANGUAGE_MENU}{OTHER}"));
    let e = env();
    let t0 = Instant::now();
    let mut run = FlowRun::start(set, "main", CallInfo::default(), t0, &e);
    assert_eq!(drain(&mut run), vec![play(1, &[("welcome", Language::Nb)])]);
    assert_eq!(run.poll_timeout(), None);
    run.handle_event(
        t0 + Duration::from_secs(2),
        FlowEvent::PlaybackFinished { play_id: 1 },
        &e,
    );
    assert_eq!(
        drain(&mut run),
        vec![play(2, &[("menu", Language::Nb), ("menu", Language::En)])]
    );
    // The timeout only starts once the prompt has played.
    assert_eq!(run.poll_timeout(), None);
    run.handle_event(t0 + Duration::from_secs(3), FlowEvent::Digit('2'), &e);
    assert_eq!(
        drain(&mut run),
        vec![
            FlowAction::StopPlayback,
            FlowAction::LanguageSelected(Language::En),
            play(3, &[("confirm", Language::En)])
        ]
    );
    // A late finish of the stopped prompt changes nothing.
    run.handle_event(
        t0 + Duration::from_secs(3),
        FlowEvent::PlaybackFinished { play_id: 2 },
        &e,
    );
    assert!(drain(&mut run).is_empty());
    run.handle_event(
        t0 + Duration::from_secs(5),
        FlowEvent::PlaybackFinished { play_id: 3 },
        &e,
    );
    assert_eq!(drain(&mut run), vec![hangup("done")]);
    assert_eq!(run.language(), Some(Language::En));
    assert_eq!(
        run.path(),
        [
            "main/#1",
            "main/#2",
            "language/#1",
            "language/#2",
            "main/#3",
            "main/#4"
        ]
    );
    assert_eq!(
        run.end(),
        Some(&FlowEnd::Hangup {
            reason: "done".into()
        })
    );
}

#[test]
fn menu_no_input_retries_then_defaults() {
    let set = load(&format!("{LANGUAGE_MENU}{OTHER}"));
    let e = env();
    let t0 = Instant::now();
    let mut run = FlowRun::start(set, "main", CallInfo::default(), t0, &e);
    drain(&mut run);
    run.handle_event(t0, FlowEvent::PlaybackFinished { play_id: 1 }, &e);
    drain(&mut run);
    let t1 = t0 + Duration::from_secs(4);
    run.handle_event(t1, FlowEvent::PlaybackFinished { play_id: 2 }, &e);
    assert_eq!(run.poll_timeout(), Some(t1 + Duration::from_secs(5)));
    // Too early: nothing.
    run.handle_timeout(t1 + Duration::from_secs(4), &e);
    assert!(drain(&mut run).is_empty());
    run.handle_timeout(t1 + Duration::from_secs(5), &e);
    assert_eq!(
        drain(&mut run),
        vec![play(
            3,
            &[
                ("no_input", Language::Nb),
                ("menu", Language::Nb),
                ("menu", Language::En)
            ]
        )]
    );
    let t2 = t1 + Duration::from_secs(9);
    run.handle_event(t2, FlowEvent::PlaybackFinished { play_id: 3 }, &e);
    run.handle_timeout(t2 + Duration::from_secs(5), &e);
    assert_eq!(
        drain(&mut run),
        vec![
            FlowAction::LanguageSelected(Language::Nb),
            play(4, &[("confirm", Language::Nb)])
        ]
    );
}

#[test]
fn menu_invalid_choice_replays_then_gives_up() {
    let set = load(&format!("{LANGUAGE_MENU}{OTHER}"));
    let e = env();
    let t0 = Instant::now();
    let mut run = FlowRun::start(set, "main", CallInfo::default(), t0, &e);
    run.handle_event(t0, FlowEvent::PlaybackFinished { play_id: 1 }, &e);
    run.handle_event(t0, FlowEvent::PlaybackFinished { play_id: 2 }, &e);
    drain(&mut run);
    run.handle_event(t0, FlowEvent::Digit('9'), &e);
    assert_eq!(
        drain(&mut run),
        vec![play(
            3,
            &[
                ("invalid", Language::Nb),
                ("menu", Language::Nb),
                ("menu", Language::En)
            ]
        )]
    );
    run.handle_event(t0, FlowEvent::Digit('8'), &e);
    assert_eq!(
        drain(&mut run),
        vec![FlowAction::StopPlayback, hangup("invalid_input")]
    );
}

#[test]
fn type_ahead_digits_feed_the_next_menu() {
    let set = load(&format!("{LANGUAGE_MENU}{OTHER}"));
    let e = env();
    let t0 = Instant::now();
    let mut run = FlowRun::start(set, "main", CallInfo::default(), t0, &e);
    drain(&mut run);
    // Pressed during the welcome (no barge-in there): kept for the menu.
    run.handle_event(t0, FlowEvent::Digit('2'), &e);
    assert!(drain(&mut run).is_empty());
    run.handle_event(t0, FlowEvent::PlaybackFinished { play_id: 1 }, &e);
    assert_eq!(
        drain(&mut run),
        vec![
            FlowAction::LanguageSelected(Language::En),
            play(2, &[("confirm", Language::En)])
        ]
    );
}

#[test]
fn collect_with_terminator_inter_digit_timeout_and_length() {
    let set = load(&format!(
        "flows:\n  main:\n    steps:\n      - collect:\n          into: account\n          prompt: enter\n          min_digits: 3\n          max_digits: 6\n          inter_digit_timeout: 2s\n          attempts: 2\n          invalid_prompt: invalid\n      - branch:\n          - when: {{ digits: {{ var: account, prefix: \"12\" }} }}\n            goto: yes\n        id: b\n      - hangup: other\n      - id: yes\n        hangup: matched\n{OTHER}"
    ));
    let e = env();
    let t0 = Instant::now();
    let mut run = FlowRun::start(Arc::clone(&set), "main", CallInfo::default(), t0, &e);
    drain(&mut run);
    run.handle_event(t0, FlowEvent::PlaybackFinished { play_id: 1 }, &e);
    // Too short, ended by the inter-digit timeout.
    run.handle_event(t0, FlowEvent::Digit('1'), &e);
    assert_eq!(run.poll_timeout(), Some(t0 + Duration::from_secs(2)));
    run.handle_timeout(t0 + Duration::from_secs(2), &e);
    assert_eq!(
        drain(&mut run),
        vec![play(
            2,
            &[("invalid", Language::Nb), ("enter", Language::Nb)]
        )]
    );
    for d in ['1', '2', '3', '#'] {
        run.handle_event(t0 + Duration::from_secs(3), FlowEvent::Digit(d), &e);
    }
    assert_eq!(
        drain(&mut run),
        vec![FlowAction::StopPlayback, hangup("matched")]
    );
    assert_eq!(
        run.variables().get("account").map(String::as_str),
        Some("123")
    );

    // The maximum length ends entry without a terminator.
    let mut run = FlowRun::start(set, "main", CallInfo::default(), t0, &e);
    run.handle_event(t0, FlowEvent::PlaybackFinished { play_id: 1 }, &e);
    for d in "987654".chars() {
        run.handle_event(t0, FlowEvent::Digit(d), &e);
    }
    assert_eq!(
        run.variables().get("account").map(String::as_str),
        Some("987654")
    );
    assert_eq!(
        run.end(),
        Some(&FlowEnd::Hangup {
            reason: "other".into()
        })
    );
}

#[test]
fn queue_exits_follow_the_flow() {
    let set = load(&format!(
        "flows:\n  main:\n    steps:\n      - queue:\n          to: q_nb\n          max_wait: 10m\n          escalate: {{ after: 5m, to: q_en }}\n          on_timeout: late\n      - hangup: no_agents\n      - id: late\n        hangup: timed_out\n{OTHER}"
    ));
    let e = env();
    let t0 = Instant::now();
    let mut run = FlowRun::start(Arc::clone(&set), "main", CallInfo::default(), t0, &e);
    let actions = drain(&mut run);
    let Some(FlowAction::Queue { queue, options }) = actions.first() else {
        panic!("{actions:?}")
    };
    assert_eq!(queue, "q_nb");
    assert_eq!(options.skills, ["general", "nb"]);
    assert_eq!(options.max_wait, Some(Duration::from_secs(600)));
    assert_eq!(options.escalate_after, Some(Duration::from_secs(300)));
    assert_eq!(options.escalate_to.as_deref(), Some("q_en"));
    run.handle_event(t0, FlowEvent::QueueTimeout, &e);
    assert_eq!(drain(&mut run), vec![hangup("timed_out")]);

    let mut run = FlowRun::start(Arc::clone(&set), "main", CallInfo::default(), t0, &e);
    run.handle_event(t0, FlowEvent::QueueNoAgents, &e);
    assert_eq!(
        run.end(),
        Some(&FlowEnd::Hangup {
            reason: "no_agents".into()
        })
    );

    let mut run = FlowRun::start(set, "main", CallInfo::default(), t0, &e);
    drain(&mut run);
    run.handle_event(t0, FlowEvent::QueueAnswered, &e);
    assert!(drain(&mut run).is_empty());
    assert_eq!(
        run.end(),
        Some(&FlowEnd::Answered {
            queue: "q_nb".into()
        })
    );
}

#[test]
fn busy_loop_is_ended_by_the_step_limit() {
    let set = load(&format!(
        "flows:\n  main:\n    steps:\n      - id: spin\n        branch:\n          - when: {{ holiday: true }}\n            goto: out\n          - else: spin\n      - id: out\n        hangup: holiday\n{OTHER}"
    ));
    let e = env();
    let mut run = FlowRun::start(set, "main", CallInfo::default(), Instant::now(), &e);
    assert_eq!(drain(&mut run), vec![hangup("step_limit")]);
    assert_eq!(run.path().len(), engine::MAX_STEPS_PER_EVENT);
}

#[test]
fn counted_prompts_take_the_plural_form() {
    let set = load(&format!(
        "flows:\n  main:\n    steps:\n      - set_language: ru\n      - play:\n          - prompt: minutes\n            count: {{ wait_minutes: q_nb }}\n            max: 30\n{OTHER}"
    ));
    let mut e = env();
    let say = |e: &Env| {
        let mut run = FlowRun::start(
            Arc::clone(&set),
            "main",
            CallInfo::default(),
            Instant::now(),
            e,
        );
        drain(&mut run)
            .into_iter()
            .find_map(|a| match a {
                FlowAction::Play { prompts, .. } => {
                    Some(prompts.into_iter().map(|p| p.id).collect::<Vec<_>>())
                }
                _ => None,
            })
            .unwrap_or_default()
    };
    e.queue.estimated_wait = Duration::from_secs(150);
    assert_eq!(say(&e), ["number.3", "minutes.few"]);
    e.queue.estimated_wait = Duration::from_secs(21 * 60);
    assert_eq!(say(&e), ["number.21", "minutes.one"]);
    e.queue.estimated_wait = Duration::from_secs(25 * 60);
    assert_eq!(say(&e), ["number.25", "minutes.many"]);
    // A whole recording wins over number + form.
    e.queue.estimated_wait = Duration::from_secs(30);
    assert_eq!(say(&e), ["minutes.1"]);
    // Clamped to max.
    e.queue.estimated_wait = Duration::from_secs(3600);
    assert_eq!(say(&e), ["number.30", "minutes.many"]);
}

#[test]
fn branches_on_schedule_caller_and_queue_state() {
    let set = load(&format!(
        "flows:\n  main:\n    steps:\n      - branch:\n          - when: {{ caller_prefix: \"+4722\" }}\n            goto: oslo\n          - when: {{ not: {{ schedule: office }} }}\n            goto: closed\n          - when: {{ estimated_wait: {{ queue: q_nb, at_least: 10m }} }}\n            goto: long\n      - hangup: open\n      - id: oslo\n        hangup: oslo\n      - id: closed\n        hangup: closed\n      - id: long\n        hangup: long\n{OTHER}"
    ));
    let reason = |caller: &str, at: &str, wait: u64| {
        let e = Env {
            at: DateTime::parse_from_rfc3339(at)
                .unwrap()
                .with_timezone(&Utc),
            queue: QueueState {
                waiting: 3,
                estimated_wait: Duration::from_secs(wait),
            },
        };
        let call = CallInfo {
            caller: caller.into(),
            dialled: "1".into(),
        };
        let run = FlowRun::start(Arc::clone(&set), "main", call, Instant::now(), &e);
        match run.end() {
            Some(FlowEnd::Hangup { reason }) => reason.clone(),
            other => format!("{other:?}"),
        }
    };
    assert_eq!(
        reason("+4722334455", "2025-03-05T10:00:00+01:00", 0),
        "oslo"
    );
    assert_eq!(
        reason("+4791234567", "2025-03-05T10:00:00+01:00", 0),
        "open"
    );
    assert_eq!(
        reason("+4791234567", "2025-03-05T10:00:00+01:00", 900),
        "long"
    );
    // Saturday, and Langfredag (a Friday holiday).
    assert_eq!(
        reason("+4791234567", "2025-03-08T10:00:00+01:00", 0),
        "closed"
    );
    assert_eq!(
        reason("+4791234567", "2025-04-18T10:00:00+02:00", 0),
        "closed"
    );
    // 07:30 local in summer time is before opening.
    assert_eq!(
        reason("+4791234567", "2025-06-03T07:30:00+02:00", 0),
        "closed"
    );
}

#[test]
fn play_barge_in_skips_to_the_next_step_keeping_the_digit() {
    let set = load(&format!(
        "flows:\n  main:\n    steps:\n      - play: welcome\n        barge_in: true\n      - menu:\n          prompt: menu\n          choices: {{ \"1\": {{ hangup: one }} }}\n{OTHER}"
    ));
    let e = env();
    let t0 = Instant::now();
    let mut run = FlowRun::start(set, "main", CallInfo::default(), t0, &e);
    drain(&mut run);
    run.handle_event(t0, FlowEvent::Digit('1'), &e);
    assert_eq!(
        drain(&mut run),
        vec![FlowAction::StopPlayback, hangup("one")]
    );
}

#[test]
fn unknown_entry_hangs_up() {
    let set = load(&format!(
        "flows:\n  main:\n    steps:\n      - hangup: x\n{OTHER}"
    ));
    let mut run = FlowRun::start(set, "nope", CallInfo::default(), Instant::now(), &env());
    assert_eq!(drain(&mut run), vec![hangup("unknown_flow")]);
}

#[test]
fn simulate_walks_with_digits_and_timeouts() {
    let set = load(&format!("{LANGUAGE_MENU}{OTHER}"));
    let options = SimulateOptions {
        flow: Some("main".into()),
        digits: vec!["".into(), "2".into()],
        at: env().at,
        ..SimulateOptions::default()
    };
    let report = simulate(&set, &options);
    assert_eq!(report.language, Some(Language::En));
    assert_eq!(
        report.end,
        Some(FlowEnd::Hangup {
            reason: "done".into()
        })
    );
    let ids: Vec<&str> = report.prompts.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(
        ids,
        ["welcome", "menu", "menu", "no_input", "menu", "menu", "confirm"]
    );
    let text = report.to_string();
    assert!(text.contains("[en] confirm: \"confirm in en\""), "{text}");
    assert!(text.contains("no input (timeout)"), "{text}");
    assert!(text.contains("caller presses 2"), "{text}");
    assert!(text.contains("end: hangup (done)"), "{text}");
}

/// Prompt ids the default flows in `ivr-flows/` use (besides `number.0` to
/// `number.60`).
/// The shipped ivr-flows/ load with their real catalogue and audio, and pass
/// their own flow tests.
#[test]
fn default_flows_load_and_pass_their_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("ivr-flows");
    let diagnostics = check(&dir);
    let shown: Vec<String> = diagnostics.iter().map(|d| d.to_string()).collect();
    assert!(shown.is_empty(), "{shown:#?}");
    let report = run_tests(&dir);
    assert!(report.passed(), "{report}");
    assert!(report.results.len() >= 10, "{report}");
}

#[test]
fn flow_tests_report_failures_at_the_case() {
    let set = load(&format!("{LANGUAGE_MENU}{OTHER}"));
    let cases = "tests:\n  - name: wrong language\n    flow: main\n    digits: [\"1\"]\n    expect:\n      language: en\n      prompts: [confirm@en]\n  - name: right\n    flow: main\n    digits: [\"2\"]\n    expect: { language: en, outcome: hangup, reason: done }\n";
    let report = testing::run_test_sources(&set, &[(PathBuf::from("t.test.yaml"), cases.into())]);
    assert!(!report.passed());
    let text = report.to_string();
    assert!(
        text.contains("FAIL  t.test.yaml:2:5: wrong language: language: expected en, got nb"),
        "{text}"
    );
    assert!(text.contains("ok    right"), "{text}");
    assert!(text.contains("1 passed, 1 failed"), "{text}");
}

#[test]
fn check_and_run_tests_read_a_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(
        d.join("hotline.yaml"),
        "entries: { default: main }\nflows:\n  main:\n    languages: [nb, en]\n    steps:\n      - play: welcome\n      - hangup: done\n",
    )
    .expect("write");
    std::fs::write(d.join("prompts.yaml"), catalogue(&["welcome"])).expect("write");
    std::fs::write(
        d.join("hotline.test.yaml"),
        "tests:\n  - name: says welcome\n    expect: { prompts: [welcome@nb], reason: done }\n",
    )
    .expect("write");
    // No audio yet: an error per offered language, and the set does not load.
    let diags = check(d);
    let shown: Vec<String> = diags.iter().map(|x| x.to_string()).collect();
    let file = d.join("hotline.yaml");
    assert_eq!(
        shown,
        [format!(
            "{}:6:15: prompt `welcome` has no audio in nb, en (audio/<lang>/welcome.wav), which flow `main` offers",
            file.display()
        )]
    );
    assert!(FlowSet::load(d).is_err());
    assert!(format_report(&diags).ends_with("1 error(s), 0 warning(s)\n"));
    assert!(!run_tests(d).passed());
    for l in ["nb", "en"] {
        std::fs::create_dir_all(d.join("audio").join(l)).expect("mkdir");
        std::fs::write(d.join("audio").join(l).join("welcome.wav"), b"").expect("write");
    }
    assert!(check(d).is_empty());
    let set = FlowSet::load(d).expect("loads");
    assert_eq!(set.entry_for("123"), Some("main"));
    let report = run_tests(d);
    assert!(report.passed(), "{report}");
    // A missing catalogue is named.
    std::fs::remove_file(d.join("prompts.yaml")).expect("rm");
    assert!(check(d)
        .iter()
        .any(|x| x.file.ends_with("prompts.yaml") && x.message.starts_with("prompt catalogue:")));
}

#[test]
fn wait_messages_on_a_queue_step_reach_the_queue_in_order() {
    let set = load(&format!(
        "flows:\n  main:\n    steps:\n      - queue:\n          to: q_nb\n          messages:\n            - {{ after: 20m, play: closed }}\n            - {{ after: 5m, every: 5m, play: [welcome, enter] }}\n{OTHER}"
    ));
    let e = env();
    let mut run = FlowRun::start(set, "main", CallInfo::default(), Instant::now(), &e);
    let actions = drain(&mut run);
    let Some(FlowAction::Queue { options, .. }) = actions.first() else {
        panic!("{actions:?}")
    };
    let got: Vec<(u64, Option<u64>, Vec<String>)> = options
        .messages
        .iter()
        .map(|m| {
            (
                m.after.as_secs(),
                m.every.map(|e| e.as_secs()),
                m.prompts.clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (300, Some(300), vec!["welcome".into(), "enter".into()]),
            (1200, None, vec!["closed".into()]),
        ]
    );
}

#[test]
fn wait_message_mistakes_are_reported_where_they_are() {
    let step = |messages: &str| {
        format!("flows:\n  main:\n    steps:\n      - queue:\n          to: q_nb\n          messages: {messages}\n{OTHER}")
    };
    assert_diag(
        &step("{ after: 5m, play: closed }"),
        "f.yaml:15:21: messages is a list: `- { after: 10m, every: 5m, play: self_service }`",
    );
    assert_diag(
        &step("[{ after: 5m }]"),
        "f.yaml:15:22: a message needs `after` and `play`",
    );
    assert_diag(
        &step("[{ after: 5m, play: clsoed }]"),
        "f.yaml:15:41: unknown prompt `clsoed`; did you mean `closed`?",
    );
    assert_diag(
        &step("[{ after: 5m, every: 5s, play: closed }]"),
        "f.yaml:15:42: message every 5s is out of range: 30s to 4h",
    );
    assert_diag(
        &step("[{ after: 5m, pley: closed }]"),
        "f.yaml:15:35: unknown key `pley` in message; did you mean `play`?",
    );
    // The misspelt key is the one error: `play` is not also missing.
    let d = diags(&step("[{ after: 5m, pley: closed }]"));
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_diag(
        &step("[{ after: 5m, sound: closed }]"),
        "f.yaml:15:35: unknown key `sound` in message: expected one of after, every, play",
    );
}

fn queue_file_diags(queues: &str) -> Vec<String> {
    let mut sources = sources_with(
        &format!("flows:\n  main:\n    steps:\n      - queue: q_lt\n{OTHER}"),
        &full_catalogue(),
    );
    sources
        .files
        .push((PathBuf::from("q.yaml"), format!("queues:\n  {queues}\n")));
    let (_, d) = load_sources(&sources);
    d.iter().map(|d| d.to_string()).collect()
}

#[test]
fn no_agents_fallback_is_checked() {
    let ok = queue_file_diags(
        "q_lt: { skills: [general, lt], no_agents: { fallback: en, play: welcome } }",
    );
    assert!(ok.iter().all(|d| !d.contains("q.yaml")), "{ok:#?}");
    let cases = [
        (
            "q_lt: { skills: [general, lt], no_agents: sometimes }",
            "q.yaml:2:45: no_agents is `wait`, `reject` or `{ fallback: <language>, play: <prompt> }`, not `sometimes`",
        ),
        (
            "q_lt: { skills: [general, lt], no_agents: { fallback: lt } }",
            "q.yaml:2:57: queue `q_lt` falls back to its own language `lt`: name another language",
        ),
        (
            "q_lt: { skills: [general, lt], no_agents: { fallback: en, play: nosuch } }",
            "q.yaml:2:57: unknown prompt `nosuch`",
        ),
        (
            "q_lt: { skills: [general, lt], no_agents: { play: welcome } }",
            "q.yaml:2:45: no_agents is `wait`, `reject` or `{ fallback: <language>, play: <prompt> }`",
        ),
    ];
    for (queues, expected) in cases {
        let d = queue_file_diags(queues);
        assert!(
            d.iter().any(|x| x == expected),
            "expected {expected}\ngot {d:#?}"
        );
    }
}

#[test]
fn queue_file_errors_have_positions() {
    let d = queue_file_diags("q_lt: { skills: [general, lt], ring_timeout: soon }");
    assert!(
        d.iter()
            .any(|x| x.starts_with("q.yaml:2:48: ring_timeout: invalid duration `soon`")),
        "{d:#?}"
    );
    let d = queue_file_diags("q_lt: { skills: [general, lt] }\n  q_lt: { skills: [general, lt] }");
    assert!(
        d.iter()
            .any(|x| x == "q.yaml:3:3: duplicate key `q_lt` in queues"),
        "{d:#?}"
    );
}

// ---- opening hours of the line (hotline_language_offered) ----

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("instant")
        .with_timezone(&Utc)
}

#[test]
fn the_line_is_open_when_a_schedule_its_flows_use_is_open() {
    // The schedule sits in a flow the entry calls, behind `not`.
    let set = load(&format!(
        "flows:
  main:
    steps:
      - call: adviser
  adviser:
    steps:
      - branch:
          - when: {{ not: {{ schedule: office }} }}
            goto: closed
          - else: open
      - id: open
        play: welcome
      - id: closed
        hangup: closed
{OTHER}"
    ));
    assert_eq!(set.line_schedules(), vec!["office"]);
    // Wednesday 10:00 in Oslo: open, every language offered.
    let open = at("2025-03-05T10:00:00+01:00");
    assert!(set.is_line_open(open));
    assert_eq!(set.languages_offered_at(open), set.languages);
    // The same day at 17:00, a Saturday, and Easter Monday: closed, none offered.
    for closed in [
        "2025-03-05T17:00:00+01:00",
        "2025-03-08T10:00:00+01:00",
        "2025-04-21T10:00:00+02:00",
    ] {
        assert!(!set.is_line_open(at(closed)), "{closed}");
        assert!(set.languages_offered_at(at(closed)).is_empty(), "{closed}");
    }
}

#[test]
fn a_line_whose_flows_name_no_schedule_is_always_open() {
    let set = load(&format!(
        "flows:\n  main:\n    steps:\n      - play: welcome\n{OTHER}"
    ));
    assert!(set.line_schedules().is_empty());
    assert!(set.is_line_open(at("2025-03-08T03:00:00+01:00")));
    assert_eq!(
        set.languages_offered_at(at("2025-03-08T03:00:00+01:00"))
            .len(),
        Language::ALL.len()
    );
}

// ---- callbacks ----

const CALLBACK_FLOW: &str = "flows:
  main:
    steps:
      - id: wait
        queue:
          to: q_nb
          callback: { after: 1m, every: 5m, estimated_wait: 10m, key: \"1\", play: confirm, goto: confirm }
      - hangup: answered
      - id: confirm
        menu:
          prompt: confirm
          choices: { \"1\": book, \"2\": typed, \"3\": wait }
      - id: book
        callback: { number: caller, attempts: 2, retry_after: 5m, window: office, on_invalid: wait }
      - id: booked
        play: bye
      - hangup: callback
      - id: typed
        collect: { into: number, prompt: enter }
      - callback: { number: number, on_invalid: wait }
      - goto: booked
";

#[test]
fn a_callback_offer_and_step_load_with_their_defaults() {
    let set = load(&format!("{CALLBACK_FLOW}{OTHER}"));
    let main = set.flow("main").expect("main");
    let Some(model::StepKind::Queue(q)) = main.steps.first().map(|s| &s.kind) else {
        panic!("queue step");
    };
    let offer = q.callback.as_ref().expect("offer");
    assert_eq!(offer.after, Duration::from_secs(60));
    assert_eq!(offer.estimated_wait, Some(Duration::from_secs(600)));
    assert_eq!((offer.key, offer.prompt.as_str()), ('1', "confirm"));
    let Some(model::StepKind::Callback(c)) = main.steps.get(7).map(|s| &s.kind) else {
        panic!("callback step");
    };
    assert_eq!(c.number, model::CallbackNumber::Collected("number".into()));
    assert_eq!(c.attempts, 3, "the default");
    assert_eq!(c.retry_after, Duration::from_secs(600));
}

#[test]
fn callback_mistakes_are_named_where_they_are() {
    let d = diags(&format!(
        "flows:\n  main:\n    steps:\n      - queue: {{ to: q_nb, callback: {{ after: 1m }} }}\n{OTHER}"
    ));
    assert!(
        d.iter()
            .any(|x| x.starts_with("f.yaml:13:") && x.contains("callback needs `goto: <step>`")),
        "{d:#?}"
    );
    assert_diag(
        &format!("flows:\n  main:\n    steps:\n      - callback: {{ window: ofice }}\n{OTHER}"),
        "f.yaml:13:29: unknown schedule `ofice`; did you mean `office`?",
    );
    assert_diag(
        &format!("flows:\n  main:\n    steps:\n      - callback: {{ retry_after: 10s }}\n{OTHER}"),
        "f.yaml:13:34: retry_after 10s is out of range: 30s to 24h",
    );
}

#[test]
fn the_callback_key_holds_the_place_and_the_step_books_it() {
    let set = load(&format!("{CALLBACK_FLOW}{OTHER}"));
    let e = env();
    let t0 = Instant::now();
    let call = CallInfo {
        caller: "+4791234567".into(),
        dialled: "116123".into(),
    };
    let mut run = FlowRun::start(Arc::clone(&set), "main", call, t0, &e);
    drain(&mut run);
    // Before the offer is said, the key does nothing.
    run.handle_event(t0, FlowEvent::Digit('1'), &e);
    assert!(drain(&mut run).is_empty());
    assert!(run.callback_offer().is_some());
    run.handle_event(t0, FlowEvent::CallbackOffered, &e);
    run.handle_event(t0, FlowEvent::Digit('2'), &e);
    assert!(drain(&mut run).is_empty(), "only its own key");
    run.handle_event(t0, FlowEvent::Digit('1'), &e);
    let actions = drain(&mut run);
    assert_eq!(actions.first(), Some(&FlowAction::HoldPlace));
    assert!(
        matches!(actions.get(1), Some(FlowAction::Play { .. })),
        "{actions:?}"
    );
    run.handle_event(t0, FlowEvent::Digit('1'), &e);
    let actions = drain(&mut run);
    let Some(FlowAction::BookCallback(request)) = actions.last() else {
        panic!("{actions:?}")
    };
    assert_eq!(request.number.as_deref(), Some("+4791234567"));
    assert!(!request.typed);
    assert_eq!(request.attempts, 2);
    assert_eq!(request.window.as_deref(), Some("office"));
    assert_eq!(run.awaiting(), Awaiting::Callback);
    run.handle_event(t0, FlowEvent::CallbackBooked, &e);
    let Some(FlowAction::Play { play_id, .. }) = drain(&mut run).first().cloned() else {
        panic!("the goodbye")
    };
    run.handle_event(t0, FlowEvent::PlaybackFinished { play_id }, &e);
    assert_eq!(drain(&mut run), vec![hangup("callback")]);
}

#[test]
fn a_typed_number_is_booked_as_typed_and_a_refusal_goes_back_to_the_queue() {
    let set = load(&format!("{CALLBACK_FLOW}{OTHER}"));
    let e = env();
    let t0 = Instant::now();
    let mut run = FlowRun::start(Arc::clone(&set), "main", CallInfo::default(), t0, &e);
    drain(&mut run);
    run.handle_event(t0, FlowEvent::CallbackOffered, &e);
    run.handle_event(t0, FlowEvent::Digit('1'), &e);
    drain(&mut run);
    run.handle_event(t0, FlowEvent::Digit('2'), &e);
    drain(&mut run);
    for d in "4722334455#".chars() {
        run.handle_event(t0, FlowEvent::Digit(d), &e);
    }
    let actions = drain(&mut run);
    let Some(FlowAction::BookCallback(request)) = actions.last() else {
        panic!("{actions:?}")
    };
    assert_eq!(request.number.as_deref(), Some("4722334455"));
    assert!(request.typed);
    run.handle_event(t0, FlowEvent::CallbackRefused, &e);
    let actions = drain(&mut run);
    assert!(
        matches!(actions.first(), Some(FlowAction::Queue { queue, .. }) if queue == "q_nb"),
        "back to the queue step: {actions:?}"
    );
}
