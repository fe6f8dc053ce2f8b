//! The operator commands, run as the real binary: `flows check|simulate|test`
//! and `prompts render` (with espeak-ng).

mod support;

use std::process::Command;
use support::{copy_flows, repo};

fn hotline(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(args)
        .output()
        .expect("run hotline");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_the_default_flows_and_names_the_line_of_a_mistake() {
    let dir = repo().join("ivr-flows");
    let (code, stdout, stderr) = hotline(&["flows", "check", dir.to_str().expect("path")]);
    assert_eq!(code, 0, "{stdout}{stderr}");

    let copy = copy_flows(&dir);
    let main = copy.path().join("main.yaml");
    let text = std::fs::read_to_string(&main).expect("read");
    let check = |broken: &str| {
        std::fs::write(&main, broken).expect("write");
        let (code, stdout, _) = hotline(&["flows", "check", copy.path().to_str().expect("path")]);
        assert_eq!(code, 1, "{stdout}");
        stdout
    };
    let line =
        |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).expect("line") + 1;
    // An unknown prompt, at its line.
    let broken = text.replace("prompt: main_menu", "prompt: main_menuu");
    let stdout = check(&broken);
    let at = format!("main.yaml:{}:", line(&broken, "main_menuu"));
    assert!(
        stdout
            .lines()
            .any(|l| l.contains(&at) && l.contains("unknown prompt `main_menuu`")),
        "{stdout}"
    );
    // A duplicate menu choice, at the second one.
    let broken = text.replace(
        "            \"2\": health\n",
        "            \"2\": health\n            \"1\": health\n",
    );
    let stdout = check(&broken);
    let second = broken
        .lines()
        .position(|l| l.trim() == "\"1\": health")
        .expect("line")
        + 1;
    assert!(
        stdout
            .lines()
            .any(|l| l.contains(&format!("main.yaml:{second}:"))
                && l.contains("duplicate menu choice `1`")),
        "{stdout}"
    );
    // Every error line is `file:line:col: message`.
    for l in stdout.lines() {
        let mut parts = l.splitn(4, ':');
        let (file, line, col) = (parts.next(), parts.next(), parts.next());
        assert!(file.is_some_and(|f| f.ends_with(".yaml")), "{l}");
        assert!(line.is_some_and(|n| n.parse::<u32>().is_ok()), "{l}");
        assert!(col.is_some_and(|n| n.parse::<u32>().is_ok()), "{l}");
    }
}

/// `file:line:col` of the first `needle` in `text`.
fn place(file: &str, text: &str, needle: &str) -> String {
    let (n, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(needle))
        .expect("needle in text");
    let col = line.find(needle).expect("column") + 1;
    format!("{file}:{}:{col}", n + 1)
}

#[test]
fn check_suggests_the_name_meant_and_says_one_thing_per_mistake() {
    let dir = repo().join("ivr-flows");
    let copy = copy_flows(&dir);
    let adviser = copy.path().join("adviser.yaml");
    let main = copy.path().join("main.yaml");
    let adviser_text = std::fs::read_to_string(&adviser).expect("read");
    let main_text = std::fs::read_to_string(&main).expect("read");
    let flows_check = || hotline(&["flows", "check", copy.path().to_str().expect("path")]);

    // Three slips: a step name, a prompt id, a key.
    let broken_adviser = adviser_text.replacen("goto: closed", "goto: closd", 1);
    let broken_main = main_text
        .replacen("play: lang_confirmed", "play: lang_confirmd", 1)
        .replacen("barge_in: true", "barge_inn: true", 1);
    std::fs::write(&adviser, &broken_adviser).expect("write");
    std::fs::write(&main, &broken_main).expect("write");
    let (code, stdout, stderr) = flows_check();
    assert_eq!(code, 1, "{stdout}{stderr}");
    let expected = [
        format!(
            "{}: unknown step `closd` in flow `adviser`; did you mean `closed`?",
            place("adviser.yaml", &broken_adviser, "closd")
        ),
        format!(
            "{}: unknown key `barge_inn`; did you mean `barge_in`?",
            place("main.yaml", &broken_main, "barge_inn")
        ),
        format!(
            "{}: unknown prompt `lang_confirmd`; did you mean `lang_confirmed`?",
            place("main.yaml", &broken_main, "lang_confirmd")
        ),
    ];
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{stdout}");
    for (line, want) in lines.iter().zip(&expected) {
        assert!(line.ends_with(want.as_str()), "{line}\nwanted …{want}");
    }
    assert!(stderr.contains("3 error(s)"), "{stderr}");

    // A YAML syntax error in the file that defines `adviser`: that one
    // message, not "unknown flow `adviser`" where main calls it.
    std::fs::write(&main, &main_text).expect("write");
    std::fs::write(
        &adviser,
        adviser_text.replacen("    steps:", "    steps: [", 1),
    )
    .expect("write");
    let (code, stdout, stderr) = flows_check();
    assert_eq!(code, 1, "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert!(lines[0].contains("adviser.yaml:"), "{stdout}");
    assert!(!stdout.contains("unknown flow"), "{stdout}");
    assert!(stderr.contains("1 error(s), 0 warning(s)"), "{stderr}");
}

#[test]
fn simulate_prints_the_walk_with_the_prompts_heard() {
    let simulate = |options: &[&str]| {
        let dir = repo().join("ivr-flows");
        let flows = dir.to_str().expect("path");
        hotline(&[&["flows", "simulate", flows, "--flow", "main"], options].concat())
    };
    let (code, stdout, stderr) = simulate(&[
        "--digits",
        "2,1",
        "--at",
        "2026-03-05T10:00:00+01:00",
        "--queue",
        "advice_en=5:4m",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("You have chosen English."), "{stdout}");
    assert!(
        stdout.contains("[en] wait_minutes.4: \"four minutes\""),
        "{stdout}"
    );
    assert!(stdout.contains("queued to advice_en"), "{stdout}");
    let (code, _, stderr) = simulate(&["--at", "yesterday"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("RFC 3339"), "{stderr}");
}

#[test]
fn flow_tests_pass_and_a_broken_expectation_fails() {
    let dir = repo().join("ivr-flows");
    let (code, stdout, _) = hotline(&["flows", "test", dir.to_str().expect("path")]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");

    let copy = copy_flows(&dir);
    let tests = copy.path().join("hotline.test.yaml");
    let text = std::fs::read_to_string(&tests).expect("read");
    std::fs::write(
        &tests,
        text.replacen("queue: advice_en", "queue: advice_pl", 1),
    )
    .expect("write");
    let (code, stdout, _) = hotline(&["flows", "test", copy.path().to_str().expect("path")]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAIL  "), "{stdout}");
    assert!(stdout.contains("hotline.test.yaml:"), "{stdout}");
}

#[test]
fn render_turns_an_edited_text_into_8khz_speech() {
    let copy = copy_flows(&repo().join("ivr-flows"));
    let catalogue = copy.path().join("prompts.yaml");
    let text = std::fs::read_to_string(&catalogue).expect("read");
    let edited = text.replace(
        "en: \"Thank you for calling. Goodbye.\"",
        "en: \"Thank you for calling the hotline today. Goodbye.\"",
    );
    assert_ne!(
        edited, text,
        "the goodbye text is where the test expects it"
    );
    std::fs::write(&catalogue, edited).expect("write");
    let wav = copy.path().join("audio/en/goodbye.wav");
    let before = std::fs::read(&wav).expect("old audio");

    let (code, stdout, stderr) =
        hotline(&["prompts", "render", copy.path().to_str().expect("path")]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("audio/en/goodbye.wav"),
        "only the edited prompt: {stdout}"
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("rendered")).count(),
        1,
        "{stdout}"
    );

    let after = std::fs::read(&wav).expect("new audio");
    assert_ne!(before, after);
    let reader = hound::WavReader::open(&wav).expect("wav");
    let spec = reader.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (8000, 1, 16)
    );
    let samples: Vec<i16> = reader
        .into_samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect();
    assert!(samples.len() > 8000, "at least a second of speech");
    let rms =
        (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt();
    assert!(rms > 500.0, "speech, not silence: rms {rms}");

    // Nothing changed since: nothing is rendered again.
    let (code, stdout, _) = hotline(&["prompts", "render", copy.path().to_str().expect("path")]);
    assert_eq!(code, 0);
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("rendered")).count(),
        0,
        "{stdout}"
    );
}
