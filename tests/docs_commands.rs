//! Every `hotline ...` command line shown in README.md and docs/*.md parses
//! against the command's own clap definition (`hotline::cli::args::Cli`, the
//! one the binary runs), and every subcommand they use answers `--help` in the
//! real binary. Parsing runs nothing, so no command has side effects here.
//!
//! Command lines are taken from fenced code blocks and inline code spans:
//! `hotline`, `./target/release/hotline` and the like in command position
//! (start of a line, after a pipe, `&&`, `;`, `$ ` or `sudo`), with `\`
//! continuations joined. Usage synopses are read too: `[...]` marks an optional
//! part (it is checked as if given), `day|hour` inside a word is a choice (the
//! first is checked), and `FILE`, `LO-HI` or `<username>` are placeholders,
//! given a sample value of the argument's type. An inline span is a mention and
//! may leave out required arguments (`hotline flows simulate`); a code block
//! must be complete.

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use hotline::cli::args::Cli;
use std::any::TypeId;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// A command line found in a document.
#[derive(Debug, Clone, PartialEq)]
struct Found {
    /// 1-based line where it starts.
    line: usize,
    /// In an inline code span (a mention) rather than a code block.
    inline: bool,
    /// The words after `hotline`, placeholders as written.
    words: Vec<Word>,
}

#[derive(Debug, Clone, PartialEq)]
struct Word {
    text: String,
    /// Written in quotes: taken literally, never a synopsis mark.
    quoted: bool,
}

impl Found {
    fn text(&self) -> String {
        let words: Vec<&str> = self.words.iter().map(|w| w.text.as_str()).collect();
        format!("hotline {}", words.join(" "))
    }
}

// ---- extraction ----

/// Every hotline command line in a Markdown document.
fn extract(doc: &str) -> Vec<Found> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut out = Vec::new();
    let mut prose: Vec<(usize, &str)> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let Some(fence) = fence(line) else {
            prose.push((i + 1, line));
            i += 1;
            continue;
        };
        out.extend(from_prose(&prose));
        prose.clear();
        let mut block = Vec::new();
        i += 1;
        while i < lines.len() && !lines[i].trim_start().starts_with(fence) {
            block.push((i + 1, lines[i]));
            i += 1;
        }
        out.extend(from_block(&block));
        i += 1;
    }
    out.extend(from_prose(&prose));
    out
}

/// The fence a line opens (```` ``` ```` or `~~~`), if it opens one.
fn fence(line: &str) -> Option<&'static str> {
    let t = line.trim_start();
    if t.starts_with("```") {
        Some("```")
    } else if t.starts_with("~~~") {
        Some("~~~")
    } else {
        None
    }
}

/// Command lines in a code block: `\` continuations and indented `[...]`
/// synopsis lines are joined to the line before.
fn from_block(block: &[(usize, &str)]) -> Vec<Found> {
    let mut logical: Vec<(usize, String)> = Vec::new();
    let mut continues = false;
    for (n, line) in block {
        let synopsis_tail = line.starts_with(char::is_whitespace)
            && line.trim_start().starts_with('[')
            && !logical.is_empty();
        let (text, next_continues) = match line.trim_end().strip_suffix('\\') {
            Some(t) => (t, true),
            None => (line.trim_end(), false),
        };
        match logical.last_mut() {
            Some((_, last)) if continues || synopsis_tail => {
                last.push(' ');
                last.push_str(text.trim());
            }
            _ => logical.push((*n, text.to_string())),
        }
        continues = next_continues;
    }
    logical
        .iter()
        .flat_map(|(n, text)| commands(text, *n, false))
        .collect()
}

/// Command lines in inline code spans (which may run over a line break).
fn from_prose(lines: &[(usize, &str)]) -> Vec<Found> {
    let mut out = Vec::new();
    let text: Vec<(usize, char)> = lines
        .iter()
        .flat_map(|(n, l)| l.chars().chain(std::iter::once('\n')).map(move |c| (*n, c)))
        .collect();
    let run_at = |i: usize| text[i..].iter().take_while(|(_, c)| *c == '`').count();
    let mut i = 0;
    while i < text.len() {
        if text[i].1 != '`' {
            i += 1;
            continue;
        }
        let open = run_at(i);
        let start = i + open;
        // The span closes at the next run of exactly as many backticks.
        let mut j = start;
        let mut close = None;
        while j < text.len() {
            if text[j].1 == '`' {
                let run = run_at(j);
                if run == open {
                    close = Some(j);
                    break;
                }
                j += run;
            } else {
                j += 1;
            }
        }
        let Some(end) = close else {
            i = start;
            continue;
        };
        let content: String = text[start..end]
            .iter()
            .map(|(_, c)| if *c == '\n' { ' ' } else { *c })
            .collect();
        out.extend(commands(content.trim(), text[start.min(end)].0, true));
        i = end + open;
    }
    out
}

enum Tok {
    Word(Word),
    /// `|`, `||`, `&&`, `;`, `&`: the next word is in command position.
    Op,
    /// `>` or `<`: the next word is a file, not an argument.
    Redirect,
}

/// Splits a shell line into words and operators. Quotes and `\` escapes as
/// in sh; `#` at the start of a word begins a comment; `|` inside a word is a
/// synopsis choice, not a pipe; `<name>` is one word.
fn tokenize(line: &str) -> Vec<Tok> {
    let chars: Vec<char> = line.chars().collect();
    let mut toks = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut in_word = false;
    let mut i = 0;
    let end_word =
        |toks: &mut Vec<Tok>, word: &mut String, quoted: &mut bool, in_word: &mut bool| {
            if *in_word {
                toks.push(Tok::Word(Word {
                    text: std::mem::take(word),
                    quoted: *quoted,
                }));
            }
            *quoted = false;
            *in_word = false;
        };
    while i < chars.len() {
        let c = chars[i];
        let at_start = word.chars().all(|w| w == '[') && !quoted;
        match c {
            c if c.is_whitespace() => end_word(&mut toks, &mut word, &mut quoted, &mut in_word),
            '#' if !in_word => break,
            ';' => {
                end_word(&mut toks, &mut word, &mut quoted, &mut in_word);
                toks.push(Tok::Op);
            }
            '&' | '|' if !in_word || (c == '&' && chars.get(i + 1) == Some(&'&')) => {
                end_word(&mut toks, &mut word, &mut quoted, &mut in_word);
                while chars.get(i + 1) == Some(&c) {
                    i += 1;
                }
                toks.push(Tok::Op);
            }
            '<' if at_start
                && chars.get(i + 1).is_some_and(|n| !n.is_whitespace())
                && chars[i..].contains(&'>') =>
            {
                while i < chars.len() {
                    word.push(chars[i]);
                    in_word = true;
                    if chars[i] == '>' {
                        break;
                    }
                    i += 1;
                }
            }
            '>' | '<' if !in_word => {
                toks.push(Tok::Redirect);
            }
            '\'' => {
                in_word = true;
                quoted = true;
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    word.push(chars[i]);
                    i += 1;
                }
            }
            '"' => {
                in_word = true;
                quoted = true;
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    word.push(chars[i]);
                    i += 1;
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.get(i + 1) {
                    word.push(*n);
                    i += 1;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
        i += 1;
    }
    end_word(&mut toks, &mut word, &mut quoted, &mut in_word);
    toks
}

/// The hotline commands on one logical line.
fn commands(line: &str, at: usize, inline: bool) -> Vec<Found> {
    let mut out = Vec::new();
    let mut segment: Vec<Word> = Vec::new();
    let mut skip_next = false;
    let mut flush = |segment: &mut Vec<Word>| {
        let words = std::mem::take(segment);
        let mut rest = words
            .iter()
            .skip_while(|w| {
                !w.quoted && (w.text == "$" || w.text == "sudo" || is_assignment(&w.text))
            })
            .peekable();
        let is_hotline = rest
            .peek()
            .is_some_and(|w| !w.quoted && (w.text == "hotline" || w.text.ends_with("/hotline")));
        if is_hotline {
            out.push(Found {
                line: at,
                inline,
                words: rest.skip(1).cloned().collect(),
            });
        }
    };
    for tok in tokenize(line) {
        match tok {
            Tok::Word(w) if skip_next => {
                let _ = w;
                skip_next = false;
            }
            Tok::Word(w) => segment.push(w),
            Tok::Redirect => skip_next = true,
            Tok::Op => flush(&mut segment),
        }
    }
    flush(&mut segment);
    out
}

/// `NAME=value` before a command.
fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit())
    })
}

// ---- checking ----

/// A synopsis placeholder: `FILE`, `LO-HI`, `YYYY-MM-DD`, `<username>`.
fn is_placeholder(word: &str) -> bool {
    (word.starts_with('<') && word.ends_with('>'))
        || (word.starts_with(|c: char| c.is_ascii_uppercase())
            && word.split(['-', '_']).all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            }))
}

/// A value of the argument's type to stand for a placeholder; the placeholder
/// itself when any text will do.
fn sample(arg: Option<&clap::Arg>, placeholder: &str) -> String {
    let Some(arg) = arg else {
        return placeholder.to_string();
    };
    let parser = arg.get_value_parser();
    if let Some(first) = parser.possible_values().and_then(|mut v| v.next()) {
        return first.get_name().to_string();
    }
    let t = parser.type_id();
    let samples: [(TypeId, &str); 7] = [
        (TypeId::of::<SocketAddr>(), "127.0.0.1:5060"),
        (TypeId::of::<IpAddr>(), "192.0.2.10"),
        (TypeId::of::<hotline::config::PortRange>(), "20000-30000"),
        (TypeId::of::<u16>(), "1"),
        (TypeId::of::<u32>(), "1"),
        (TypeId::of::<u64>(), "1"),
        (TypeId::of::<usize>(), "1"),
    ];
    samples
        .iter()
        .find(|(id, _)| t == *id)
        .map(|(_, s)| s.to_string())
        .unwrap_or_else(|| placeholder.to_string())
}

/// The argv to parse: synopsis marks read, placeholders filled; and the
/// subcommand path it takes.
fn argv(found: &Found) -> (Vec<String>, Vec<String>) {
    let root = Cli::command();
    let mut cmd = &root;
    let mut path = Vec::new();
    let mut out = Vec::new();
    let mut positional = 0;
    let mut value_of: Option<&clap::Arg> = None;
    let mut options_seen = false;
    for w in &found.words {
        let text = if w.quoted {
            w.text.clone()
        } else {
            let t = w.text.trim_start_matches('[').trim_end_matches(']');
            if t.is_empty() || t == "..." {
                continue;
            }
            t.split('|').next().unwrap_or(t).to_string()
        };
        let placeholder = !w.quoted && is_placeholder(&text);
        if let Some(arg) = value_of.take() {
            out.push(if placeholder {
                sample(Some(arg), &text)
            } else {
                text
            });
            continue;
        }
        if !placeholder && !options_seen && positional == 0 {
            if let Some(sub) = cmd.find_subcommand(&text) {
                cmd = sub;
                path.push(text.clone());
                out.push(text);
                continue;
            }
        }
        if let Some(long) = text.strip_prefix("--").filter(|_| !w.quoted) {
            options_seen = true;
            let (name, inline_value) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            let arg = cmd.get_arguments().find(|a| a.get_long() == Some(name));
            if let Some(arg) = arg {
                if arg.get_action().takes_values() && inline_value.is_none() {
                    value_of = Some(arg);
                }
            }
            out.push(text);
            continue;
        }
        let arg = cmd.get_positionals().nth(positional);
        positional += 1;
        out.push(if placeholder {
            sample(arg, &text)
        } else {
            text
        });
    }
    (out, path)
}

/// Whether the command line parses; the error as clap words it if not.
fn check(found: &Found) -> Result<(), String> {
    let (args, _) = argv(found);
    let parsed = Cli::try_parse_from(std::iter::once("hotline".to_string()).chain(args.clone()));
    match parsed {
        Ok(_) => Ok(()),
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Ok(()),
            ErrorKind::MissingRequiredArgument
            | ErrorKind::MissingSubcommand
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                if found.inline =>
            {
                Ok(())
            }
            _ => Err(format!(
                "checked as `hotline {}`: {}",
                args.join(" "),
                e.render().to_string().lines().next().unwrap_or("")
            )),
        },
    }
}

fn documents() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs = vec![root.join("README.md")];
    let mut more: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    more.sort();
    docs.extend(more);
    docs
}

fn all_commands() -> Vec<(PathBuf, Found)> {
    documents()
        .into_iter()
        .flat_map(|path| {
            let text = std::fs::read_to_string(&path).expect("read doc");
            extract(&text).into_iter().map(move |f| (path.clone(), f))
        })
        .collect()
}

#[test]
fn every_documented_command_parses() {
    let found = all_commands();
    let mut failures = Vec::new();
    for (path, f) in &found {
        if let Err(e) = check(f) {
            failures.push(format!(
                "{}:{}: {}\n    {e}",
                path.file_name().unwrap_or_default().to_string_lossy(),
                f.line,
                f.text()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The extractor does find the documents' commands.
    let texts: BTreeSet<String> = found.iter().map(|(_, f)| f.text()).collect();
    for expected in [
        "hotline serve --config examples/demo.yaml",
        "hotline agents hash anna --realm hotline",
        "hotline agents hash <username>",
        "hotline flows simulate ivr-flows --flow main --digits ,3,1 --at 2025-03-05T10:00:00+01:00",
    ] {
        assert!(
            texts.contains(expected),
            "{expected} not found in {texts:#?}"
        );
    }
    assert!(found.len() >= 25, "only {} commands found", found.len());
}

#[test]
fn every_documented_subcommand_answers_help_in_the_binary() {
    let paths: BTreeSet<Vec<String>> = all_commands()
        .iter()
        .map(|(_, f)| argv(f).1)
        .filter(|p| !p.is_empty())
        .collect();
    assert!(paths.len() >= 6, "{paths:?}");
    for path in paths {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hotline"))
            .args(&path)
            .arg("--help")
            .output()
            .expect("run hotline");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "hotline {} --help: {:?}",
            path.join(" "),
            out
        );
        let usage = format!("Usage: hotline {}", path.join(" "));
        assert!(stdout.contains(&usage), "{usage} not in {stdout}");
    }
}

// ---- the extractor and checker on small documents ----

fn texts(doc: &str) -> Vec<String> {
    extract(doc).iter().map(Found::text).collect()
}

fn check_doc(doc: &str) -> Vec<Result<(), String>> {
    extract(doc).iter().map(check).collect()
}

#[test]
fn a_flag_that_does_not_exist_fails_the_check() {
    let results = check_doc("```\nhotline agents hash --username anna --realm hotline\n```\n");
    assert_eq!(results.len(), 1);
    let e = results[0].clone().expect_err("no --username flag");
    assert!(e.contains("--username"), "{e}");
    // The same in inline code, in a synopsis, and after a pipe.
    for doc in [
        "Run `hotline flows check --strict`.",
        "```\nhotline serve [--config FILE] [--listen ADDR]\n```",
        "```\necho -n pw | hotline agents hash anna --realm x --md5\n```",
        "```\nhotline serve --sip-listen 127.0.0.1:5060 \\\n    --flow-dir x\n```",
        "```\nhotline serve [--config FILE]\n              [--flow-dir DIR]\n```",
    ] {
        let results = check_doc(doc);
        assert_eq!(results.len(), 1, "{doc}");
        assert!(results[0].is_err(), "{doc}: {results:?}");
    }
    // A subcommand that does not exist, a value of the wrong type, an extra
    // argument.
    for doc in [
        "`hotline flows chek ivr-flows`",
        "`hotline serve --sip-listen localhost`",
        "`hotline flows check a b`",
    ] {
        assert!(check_doc(doc)[0].is_err(), "{doc}");
    }
}

#[test]
fn commands_are_found_where_docs_write_them() {
    let doc = r#"
Prose about the hotline and /etc/hotline is not a command, nor is `hotline_calls_total`
or `399 hotline "agent is paused"`.

```sh
./target/release/hotline serve --config examples/demo.yaml
./target/debug/hotline flows check ivr-flows # a comment
echo -n 'secret pw' | hotline agents hash anna --realm "the realm"
sudo mkdir -p /etc/hotline && RUST_LOG=debug hotline flows test \
     ivr-flows
$ hotline serve --http-listen 127.0.0.1:9090 > serve.log
```

Check with `hotline flows
check`, then ``hotline flows test``.
"#;
    assert_eq!(
        texts(doc),
        [
            "hotline serve --config examples/demo.yaml",
            "hotline flows check ivr-flows",
            "hotline agents hash anna --realm the realm",
            "hotline flows test ivr-flows",
            "hotline serve --http-listen 127.0.0.1:9090",
            "hotline flows check",
            "hotline flows test",
        ]
    );
    let found = extract(doc);
    assert_eq!(found[0].line, 6);
    assert!(!found[0].inline);
    assert_eq!(found[5].line, 14);
    assert!(found[5].inline);
    assert!(
        check_doc(doc).iter().all(Result::is_ok),
        "{:?}",
        check_doc(doc)
    );
}

#[test]
fn synopses_are_read_with_their_placeholders() {
    let doc = "```\nhotline serve [--config FILE] [--sip-listen ADDR] [--http-listen ADDR]\n              [--flows DIR] [--rtp-ports LO-HI] [--public-ip IP]\nhotline report [--by day|hour] [--from YYYY-MM-DD] [--threshold 20]\n```\nAnd `hotline serve --public-ip <this host's address>`.";
    let found = extract(doc);
    assert_eq!(found.len(), 3);
    assert_eq!(
        argv(&found[0]).0.join(" "),
        "serve --config FILE --sip-listen 127.0.0.1:5060 --http-listen 127.0.0.1:5060 --flows DIR --rtp-ports 20000-30000 --public-ip 192.0.2.10"
    );
    assert_eq!(
        argv(&found[1]).0.join(" "),
        "report --by day --from YYYY-MM-DD --threshold 20"
    );
    assert_eq!(argv(&found[2]).0.join(" "), "serve --public-ip 192.0.2.10");
    assert!(found.iter().map(check).all(|r| r.is_ok()));
}

#[test]
fn a_mention_may_leave_out_what_a_code_block_must_give() {
    assert!(check_doc("Walk it with `hotline flows simulate`.")[0].is_ok());
    assert!(check_doc("```\nhotline flows simulate ivr-flows\n```")[0].is_err());
}
