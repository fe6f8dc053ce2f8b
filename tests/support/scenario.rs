//! A staffed line for queue tests: flows open around the clock and an agents
//! file, on which a service (or each node of a cluster) is started.

use super::agents::{agents_yaml, test_flows, Account};
use super::{Hotline, Options};
use std::path::{Path, PathBuf};

/// The files a service runs on; keep the site as long as its services.
pub struct Site {
    flows: tempfile::TempDir,
    agents_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Site {
    /// Flows open every day, every queue with `queue_settings` added (e.g.
    /// `wrap_up: 1s`), and an agents file with `agents`.
    pub fn new(queue_settings: &str, agents: &[Account]) -> Site {
        let flows = test_flows(queue_settings);
        let dir = tempfile::tempdir().expect("tempdir");
        let agents_file = dir.path().join("agents.yaml");
        std::fs::write(&agents_file, agents_yaml(agents)).expect("write agents");
        Site {
            flows,
            agents_file,
            _dir: dir,
        }
    }

    pub fn flows(&self) -> &Path {
        self.flows.path()
    }

    /// Edits a flow file before the service starts: `from`, which the
    /// shipped file must hold, becomes `to`.
    pub fn edit_flow(&self, file: &str, from: &str, to: &str) {
        let path = self.flows().join(file);
        let text = std::fs::read_to_string(&path).expect("read flow");
        assert!(text.contains(from), "{file} holds {from:?}");
        std::fs::write(&path, text.replace(from, to)).expect("write flow");
    }

    /// `hotline serve` on these flows and agents; `config` follows the
    /// `agents_file:` line of its config file.
    pub fn start(&self, config: &str) -> Hotline {
        Hotline::start_with(Options {
            flows: Some(self.flows().to_path_buf()),
            config: Some(format!(
                "agents_file: {}\n{config}",
                self.agents_file.display()
            )),
        })
    }
}
