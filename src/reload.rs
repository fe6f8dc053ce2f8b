//! Loading a flow version and swapping it in live: on SIGHUP, on a file change in
//! the flow directory, or on `POST /api/flows/reload`. A version that fails to
//! load is refused whole and the running one keeps serving.

use crate::call::FlowBundle;
use crate::control::Control;
use crate::flow::FlowSet;
use crate::media::PromptLibrary;
use crate::metrics::Metrics;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// How often the flow directory is looked at for changes.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// Most files fingerprinted per look (a flow directory is small; this bounds it).
const WATCH_MAX_FILES: usize = 10_000;

/// What the API shows about the live flow version.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadStatus {
    pub version: String,
    /// Unix seconds when the live version was loaded.
    pub loaded_at: f64,
    pub last_error: Option<String>,
    pub last_error_at: Option<f64>,
}

impl ReloadStatus {
    pub fn loaded(version: &str) -> ReloadStatus {
        ReloadStatus {
            version: version.to_string(),
            loaded_at: unix_seconds(),
            last_error: None,
            last_error_at: None,
        }
    }
}

fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Loads agent accounts. A broken file is an error report with
/// `file:line:col` per problem; a missing one is an error when it was
/// configured (`required`), else it means no agents (logged).
pub fn load_agents(path: &Path, required: bool) -> Result<crate::acd::AgentDirectory, String> {
    if !path.exists() {
        if required {
            return Err(format!(
                "{}: the agents file (config key agents_file) is missing",
                path.display()
            ));
        }
        tracing::warn!(file = %path.display(), "no agents file: no agent can register (see docs/queues.md)");
        return Ok(crate::acd::AgentDirectory::default());
    }
    crate::acd::AgentDirectory::load(path).map_err(|errors| {
        errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// Loads and validates flows and their audio. The error is the full report,
/// one `file:line:col: message` per line.
pub fn load_bundle(dir: &Path) -> Result<FlowBundle, String> {
    let flows = FlowSet::load(dir).map_err(|diagnostics| {
        diagnostics
            .iter()
            .filter(|d| !d.is_warning)
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let prompts = PromptLibrary::load(dir, &flows.catalogue).map_err(|e| e.to_string())?;
    Ok(FlowBundle {
        flows: Arc::new(flows),
        prompts: Arc::new(prompts),
    })
}

/// Loads the directory and, if it is valid, swaps it in. Returns the new
/// version or the error report.
pub async fn reload_now(
    dir: PathBuf,
    control: &mpsc::Sender<Control>,
    status: &Mutex<ReloadStatus>,
    metrics: &Metrics,
    trigger: &str,
) -> Result<String, String> {
    let loaded = tokio::task::spawn_blocking(move || load_bundle(&dir))
        .await
        .unwrap_or_else(|e| Err(format!("flow loader stopped: {e}")));
    match loaded {
        Ok(bundle) => {
            let version = bundle.flows.version().to_string();
            if control.send(Control::Swap(Arc::new(bundle))).await.is_err() {
                return Err("service is stopping".to_string());
            }
            metrics.flow_reloads_total.with_label_values(&["ok"]).inc();
            if let Ok(mut s) = status.lock() {
                s.version = version.clone();
                s.loaded_at = unix_seconds();
            }
            tracing::info!(trigger, flow_version = %version, "flow reload accepted");
            Ok(version)
        }
        Err(report) => {
            metrics
                .flow_reloads_total
                .with_label_values(&["error"])
                .inc();
            tracing::error!(trigger, error = %report, "flow reload refused: the running version keeps serving");
            if let Ok(mut s) = status.lock() {
                s.last_error = Some(report.clone());
                s.last_error_at = Some(unix_seconds());
            }
            Err(report)
        }
    }
}

/// Reloads on SIGHUP and when files in the flow directory or the agents file
/// (path, and whether it must exist) change.
pub fn spawn_watchers(
    dir: PathBuf,
    (agents_file, agents_required): (PathBuf, bool),
    control: mpsc::Sender<Control>,
    status: Arc<Mutex<ReloadStatus>>,
    metrics: Arc<Metrics>,
) {
    tokio::spawn(async move {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "SIGHUP reload unavailable");
                None
            }
        };
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen = fingerprint(&dir);
        let mut agents_seen = file_fingerprint(&agents_file);
        let mut agents_settling = false;
        // A change is reloaded once the files have stood still for one look,
        // so that an editor's half-written save is not taken for an error.
        let mut settling = false;
        loop {
            let trigger = tokio::select! {
                _ = tick.tick() => {
                    let agents_now = file_fingerprint(&agents_file);
                    if agents_now != agents_seen {
                        agents_seen = agents_now;
                        agents_settling = true;
                    } else if agents_settling {
                        agents_settling = false;
                        reload_agents(&agents_file, agents_required, &control, "file change").await;
                    }
                    let now = fingerprint(&dir);
                    if now != seen {
                        seen = now;
                        settling = true;
                        continue;
                    }
                    if !settling { continue; }
                    settling = false;
                    "file change"
                }
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    reload_agents(&agents_file, agents_required, &control, "SIGHUP").await;
                    "SIGHUP"
                }
            };
            if control.is_closed() {
                return;
            }
            let _ = reload_now(dir.clone(), &control, &status, &metrics, trigger).await;
        }
    });
}

/// Loads the agents file and swaps it in, or logs why not.
async fn reload_agents(
    path: &Path,
    required: bool,
    control: &mpsc::Sender<Control>,
    trigger: &str,
) {
    let p = path.to_path_buf();
    let loaded = tokio::task::spawn_blocking(move || load_agents(&p, required))
        .await
        .unwrap_or_else(|e| Err(format!("agents loader stopped: {e}")));
    match loaded {
        Ok(directory) => {
            tracing::info!(trigger, agents = directory.len(), "agents reloaded");
            let _ = control.send(Control::SwapAgents(directory)).await;
        }
        Err(report) => {
            tracing::error!(trigger, error = %report, "agents reload refused: the running accounts stay");
        }
    }
}

fn file_fingerprint(path: &Path) -> Option<(u64, Option<SystemTime>)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()))
}

/// Names, sizes and modification times of every file under `dir`.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            if out.len() >= WATCH_MAX_FILES {
                return out;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                out.push((entry.path(), meta.len(), meta.modified().ok()));
            }
        }
    }
    out.sort();
    out
}
