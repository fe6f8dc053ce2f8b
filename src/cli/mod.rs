//! The commands behind the command line (`args`): `serve`, `flows
//! check|simulate|test`, `prompts render`, `agents hash`, `report`. Each
//! prints for people and returns the process exit code.

pub mod args;

use crate::config::{Config, Overrides};
use crate::flow::{self, FlowSet, QueueOutcome, SimulateOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// `hotline serve`: the config (defaults, file, flags), then the service until
/// SIGINT/SIGTERM.
pub fn serve(config_file: Option<&Path>, flags: Overrides) -> ExitCode {
    crate::logging::init();
    let config = match Config::load(config_file, flags).and_then(|c| c.validate().map(|()| c)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(crate::server::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "hotline cannot serve");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `hotline flows simulate` arguments, with defaults already applied.
pub struct SimulateArgs {
    pub dir: PathBuf,
    pub flow: String,
    /// As written on the command line: `2,1` (an empty item is silence).
    pub digits: String,
    pub at: Option<String>,
    pub caller: Option<String>,
    pub dialled: Option<String>,
    /// `QUEUE=WAITING[:WAIT]`, e.g. `advice_en=12:8m`.
    pub queues: Vec<String>,
    /// `SKILL=N`.
    pub agents_ready: Vec<String>,
    /// answered | timeout | full | no_agents, one per queue step in turn.
    pub queue_outcomes: Vec<String>,
}

/// `hotline flows ...`, with defaults already applied.
pub enum FlowsCommand {
    Check { dir: PathBuf },
    Simulate(SimulateArgs),
    Test { dir: PathBuf },
}

pub fn flows(cmd: FlowsCommand) -> ExitCode {
    match cmd {
        FlowsCommand::Check { dir } => check(&dir),
        FlowsCommand::Simulate(args) => match simulate(args) {
            Ok(code) => code,
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::from(2)
            }
        },
        FlowsCommand::Test { dir } => {
            let report = flow::run_tests(&dir);
            let text = report.to_string();
            println!("{}", text.trim_end());
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn check(dir: &Path) -> ExitCode {
    let diagnostics = flow::check(dir);
    let errors = diagnostics.iter().filter(|d| !d.is_warning).count();
    for d in &diagnostics {
        println!("{d}");
    }
    let warnings = diagnostics.len() - errors;
    if errors > 0 {
        eprintln!(
            "{}: {errors} error(s), {warnings} warning(s)",
            dir.display()
        );
        ExitCode::FAILURE
    } else {
        eprintln!("{}: ok, {warnings} warning(s)", dir.display());
        ExitCode::SUCCESS
    }
}

fn simulate(args: SimulateArgs) -> Result<ExitCode, String> {
    let set = match FlowSet::load(&args.dir) {
        Ok(set) => Arc::new(set),
        Err(diagnostics) => {
            for d in &diagnostics {
                println!("{d}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let at = match args.at.as_deref() {
        None => chrono::Utc::now(),
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map_err(|e| {
                format!("--at {text}: {e}; write it as RFC 3339, e.g. 2026-03-05T10:00:00+01:00")
            })?
            .with_timezone(&chrono::Utc),
    };
    let mut queues = BTreeMap::new();
    for q in &args.queues {
        let (name, state) = parse_queue_state(q)?;
        queues.insert(name, state);
    }
    let mut agents_ready = BTreeMap::new();
    for a in &args.agents_ready {
        let (skill, n) = a
            .split_once('=')
            .ok_or_else(|| format!("--agents-ready {a}: write it as SKILL=N, e.g. en=3"))?;
        let n: u32 = n
            .parse()
            .map_err(|_| format!("--agents-ready {a}: `{n}` is not a whole number"))?;
        agents_ready.insert(skill.to_string(), n);
    }
    let queue_outcomes = args
        .queue_outcomes
        .iter()
        .map(|o| {
            QueueOutcome::parse(o).ok_or_else(|| {
                format!(
                    "--queue-outcome {o}: expected answered, timeout, full, no_agents or callback"
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let options = SimulateOptions {
        flow: Some(args.flow),
        dialled: args.dialled.unwrap_or_default(),
        caller: args.caller.unwrap_or_default(),
        digits: flow::parse_digits(&args.digits).map_err(|e| format!("--digits: {e}"))?,
        at,
        queues,
        agents_ready,
        queue_outcomes,
        // Times in the walk follow the real length of each prompt.
        prompt_durations: true,
        ..SimulateOptions::default()
    };
    let report = flow::simulate(&set, &options);
    print!("{report}");
    Ok(ExitCode::SUCCESS)
}

/// `advice_en=12:8m` → (advice_en, 12 waiting, 8 minutes estimated).
fn parse_queue_state(text: &str) -> Result<(String, flow::QueueState), String> {
    let usage =
        || format!("--queue {text}: write it as QUEUE=WAITING[:WAIT], e.g. advice_en=12:8m");
    let (name, rest) = text.split_once('=').ok_or_else(usage)?;
    let (waiting, wait) = match rest.split_once(':') {
        Some((w, d)) => (w, Some(d)),
        None => (rest, None),
    };
    let waiting: u32 = waiting.parse().map_err(|_| usage())?;
    let estimated_wait = match wait {
        Some(d) => crate::duration::parse(d).map_err(|e| format!("--queue {text}: {e}"))?,
        None => std::time::Duration::ZERO,
    };
    Ok((
        name.to_string(),
        flow::QueueState {
            waiting,
            estimated_wait,
        },
    ))
}

/// `hotline agents hash USER`: reads a password from standard input and prints
/// the `ha1`/`ha1_sha256` lines for agents.yaml.
pub fn hash_password(username: &str, realm: &str) -> ExitCode {
    let mut password = String::new();
    if std::io::stdin().read_line(&mut password).is_err() {
        eprintln!("error: cannot read the password from standard input");
        return ExitCode::FAILURE;
    }
    let password = password.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        eprintln!("error: empty password; type it on standard input, e.g. `echo -n 'secret' | hotline agents hash anna`");
        return ExitCode::FAILURE;
    }
    use crate::registrar::{ha1, Algorithm};
    println!(
        "    ha1: {}",
        ha1(Algorithm::Md5, username, realm, password)
    );
    println!(
        "    ha1_sha256: {}",
        ha1(Algorithm::Sha256, username, realm, password)
    );
    ExitCode::SUCCESS
}

pub fn render_prompts(dir: &Path, force: bool, only: Option<String>) -> ExitCode {
    let options = crate::prompts::render::RenderOptions {
        force,
        only,
        ..Default::default()
    };
    match crate::prompts::render::render(dir, &options) {
        Ok(report) => {
            for r in &report.rendered {
                println!(
                    "rendered {} ({:.1} s)",
                    r.path.display(),
                    r.duration.as_secs_f64()
                );
            }
            for k in &report.kept_recordings {
                println!("kept recording {}", k.display());
            }
            eprintln!(
                "{} rendered, {} unchanged, {} recordings kept",
                report.rendered.len(),
                report.unchanged,
                report.kept_recordings.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `hotline report` arguments, with defaults already applied.
pub struct ReportArgs {
    pub data_dir: PathBuf,
    /// `day` or `hour`.
    pub by: String,
    /// First day included, `YYYY-MM-DD` (UTC).
    pub from: Option<String>,
    /// Last day included, `YYYY-MM-DD` (UTC).
    pub to: Option<String>,
    pub csv: Option<PathBuf>,
    pub threshold_s: u32,
    /// The queue event log instead of the summary.
    pub queue_log: bool,
}

/// Service level, abandonment and speed of answer from the call records.
pub fn report(args: ReportArgs) -> ExitCode {
    match report_inner(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn day_start_ms(text: &str) -> Result<i64, String> {
    let day = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("{text:?} is not a date like 2025-01-31"))?;
    let start = day
        .and_hms_opt(0, 0, 0)
        .ok_or_else(|| format!("{text:?} is not a date"))?;
    Ok(start.and_utc().timestamp_millis())
}

fn report_inner(args: &ReportArgs) -> Result<(), String> {
    use crate::cdr::{self, Bucket, ReportOptions, Store};
    let by = match args.by.as_str() {
        "day" => Bucket::Day,
        "hour" => Bucket::Hour,
        other => return Err(format!("--by {other:?}: expected day or hour")),
    };
    let from_ms = args.from.as_deref().map(day_start_ms).transpose()?;
    let to_ms = args
        .to
        .as_deref()
        .map(|t| day_start_ms(t).map(|ms| ms.saturating_add(86_400_000)))
        .transpose()?;
    let path = args.data_dir.join(cdr::DB_FILE);
    if !path.is_file() {
        return Err(format!("{}: no call records yet", path.display()));
    }
    let store = Store::open_read_only(&path).map_err(|e| e.to_string())?;
    if args.queue_log {
        if !store.has_queue_log().map_err(|e| e.to_string())? {
            return Err(format!(
                "{}: no queue log yet (written by an older version; the service adds it when it starts)",
                path.display()
            ));
        }
        let rows = cdr::queue_log(&store, from_ms, to_ms).map_err(|e| e.to_string())?;
        print!("{}", cdr::queue_log_text(&rows));
        if let Some(csv) = &args.csv {
            std::fs::write(csv, cdr::queue_log_csv(&rows))
                .map_err(|e| format!("{}: {e}", csv.display()))?;
        }
        return Ok(());
    }
    let options = ReportOptions {
        by,
        from_ms,
        to_ms,
        threshold_s: args.threshold_s,
    };
    let rows = cdr::report(&store, &options).map_err(|e| e.to_string())?;
    print!("{}", cdr::to_text(&rows, args.threshold_s));
    if store.has_legs().map_err(|e| e.to_string())? {
        let legs = cdr::legs_summary(&store, from_ms, to_ms).map_err(|e| e.to_string())?;
        print!("{}", cdr::legs_text(&legs));
    }
    let callbacks = store
        .callbacks_summary(from_ms, to_ms)
        .map_err(|e| e.to_string())?;
    if !callbacks.is_empty() {
        let parts: Vec<String> = callbacks
            .iter()
            .map(|(state, n)| format!("{n} {state}"))
            .collect();
        println!("callbacks: {}", parts.join(", "));
    }
    if let Some(csv) = &args.csv {
        std::fs::write(csv, cdr::to_csv(&rows)).map_err(|e| format!("{}: {e}", csv.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_queue_state;
    use std::time::Duration;

    #[test]
    fn queue_state_argument() {
        let (name, s) = parse_queue_state("advice_en=12:8m").expect("valid");
        assert_eq!(name, "advice_en");
        assert_eq!(s.waiting, 12);
        assert_eq!(s.estimated_wait, Duration::from_secs(480));
        assert!(parse_queue_state("advice_en").is_err());
        assert!(parse_queue_state("advice_en=x").is_err());
    }
}
