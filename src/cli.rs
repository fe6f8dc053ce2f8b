//! The offline commands: `flows check|simulate|test` and `prompts render`.
//! Each prints for people and returns the process exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `hotline flows ...`, with defaults already applied.
pub enum FlowsCommand {
    Check {
        dir: PathBuf,
    },
    Simulate {
        dir: PathBuf,
        flow: String,
        digits: Vec<String>,
        at: Option<String>,
        caller: Option<String>,
    },
    Test {
        dir: PathBuf,
    },
}

pub fn flows(cmd: FlowsCommand) -> ExitCode {
    match cmd {
        FlowsCommand::Check { dir } => {
            let diagnostics = crate::flow::check(&dir);
            let errors = diagnostics.iter().filter(|d| !d.is_warning).count();
            for d in &diagnostics {
                println!("{d}");
            }
            if errors > 0 {
                eprintln!(
                    "{}: {errors} error(s), {} warning(s)",
                    dir.display(),
                    diagnostics.len() - errors
                );
                ExitCode::FAILURE
            } else {
                eprintln!("{}: ok ({} warning(s))", dir.display(), diagnostics.len());
                ExitCode::SUCCESS
            }
        }
        FlowsCommand::Simulate {
            dir,
            flow,
            digits,
            at,
            caller,
        } => crate::flow::simulate_command(&dir, &flow, &digits, at.as_deref(), caller.as_deref()),
        FlowsCommand::Test { dir } => crate::flow::test_command(&dir),
    }
}

pub fn render_prompts(dir: &Path, force: bool) -> ExitCode {
    crate::prompts::render::render_command(dir, force)
}
