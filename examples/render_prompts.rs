//! Renders the prompt catalogue with espeak-ng and prints what was written.
//!
//! cargo run --example render_prompts -- [DIR] [--force] [--only ID] [--speed WPM]

use hotline::prompts::render::{render, RenderOptions};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut dir = PathBuf::from("ivr-flows");
    let mut options = RenderOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--force" => options.force = true,
            "--only" => options.only = args.next(),
            "--speed" => match args.next().and_then(|s| s.parse().ok()) {
                Some(speed) => options.speed_wpm = speed,
                None => {
                    eprintln!("--speed needs words per minute");
                    return ExitCode::FAILURE;
                }
            },
            _ => dir = PathBuf::from(arg),
        }
    }
    match render(&dir, &options) {
        Ok(report) => {
            for r in &report.rendered {
                println!(
                    "{:>6.2} s  {}/{}",
                    r.duration.as_secs_f64(),
                    r.language,
                    r.id
                );
            }
            for path in &report.kept_recordings {
                println!("kept recording {}", path.display());
            }
            println!(
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
