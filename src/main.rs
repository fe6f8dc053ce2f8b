//! The `hotline` command: `serve`, `flows check|simulate|test`, `prompts render`,
//! `agents hash`, `report` (defined in `hotline::cli::args`).

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    hotline::cli::args::run(hotline::cli::args::Cli::parse())
}
