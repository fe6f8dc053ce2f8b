//! The `hotline` command line as clap parses it. The binary only calls
//! [`run`]; tests parse documented command lines with [`Cli`] itself.

use super::{FlowsCommand as Flows, ReportArgs as Report, SimulateArgs as Simulate};
use crate::config::{Overrides, PortRange};
use clap::{Args, Parser, Subcommand};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "hotline",
    version,
    about = "Multilingual 24/7 telephone hotline"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Answer calls: SIP (UDP and TCP), RTP, HTTP metrics and API.
    Serve(ServeArgs),
    /// Check, simulate and test the call flows.
    #[command(subcommand)]
    Flows(FlowsCommand),
    /// Work with the prompt catalogue and its audio.
    #[command(subcommand)]
    Prompts(PromptsCommand),
    /// Agent accounts.
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// Service level, abandonment and average speed of answer per language,
    /// from the call records.
    Report(ReportArgs),
}

#[derive(Subcommand, Debug)]
enum AgentsCommand {
    /// Print the HA1 digests of a password for agents.yaml (the password itself
    /// is never stored). Reads the password from standard input.
    Hash {
        /// The SIP username the softphone authenticates as
        username: String,
        /// Digest realm (agents.yaml `realm`)
        #[arg(long, default_value = "hotline")]
        realm: String,
    },
}

#[derive(Args, Debug)]
struct ReportArgs {
    /// Data directory [default: ./data]
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// Period of each row: day or hour.
    #[arg(long, default_value = "day")]
    by: String,
    /// First day included, YYYY-MM-DD (UTC).
    #[arg(long)]
    from: Option<String>,
    /// Last day included, YYYY-MM-DD (UTC).
    #[arg(long)]
    to: Option<String>,
    /// Also write the rows to this CSV file.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// List the queue event log (one line per event) instead of the summary.
    #[arg(long)]
    queue_log: bool,
    /// Seconds within which an answer counts toward the service level.
    #[arg(long, default_value_t = 20)]
    threshold: u32,
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// YAML config file; every setting has a default without it. Paths in it
    /// are relative to the file's folder; paths given as flags are relative
    /// to the working directory.
    #[arg(long)]
    config: Option<PathBuf>,
    /// SIP address for UDP and TCP [default: 127.0.0.1:5060]
    #[arg(long)]
    sip_listen: Option<SocketAddr>,
    /// HTTP address [default: 127.0.0.1:8080]
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Flow directory [default: ./ivr-flows]
    #[arg(long)]
    flows: Option<PathBuf>,
    /// Data directory [default: ./data]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// RTP port range LO-HI [default: 20000-30000]
    #[arg(long)]
    rtp_ports: Option<PortRange>,
    /// Address to announce in SDP and Contact (behind NAT)
    #[arg(long)]
    public_ip: Option<IpAddr>,
    /// Cluster mode: this node's name (letters, digits, - and _)
    #[arg(long)]
    node_id: Option<String>,
    /// Cluster mode: the shared store, e.g. redis://127.0.0.1:6379/0
    #[arg(long)]
    redis: Option<String>,
}

#[derive(Subcommand, Debug)]
enum FlowsCommand {
    /// Validate a flow directory: one `file:line:col: message` per problem.
    Check {
        /// Flow directory [default: ./ivr-flows]
        dir: Option<PathBuf>,
    },
    /// Walk a flow without a phone and print what the caller hears.
    Simulate(SimulateArgs),
    /// Run the flow test cases next to the flows.
    Test {
        /// Flow directory [default: ./ivr-flows]
        dir: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
struct SimulateArgs {
    /// Flow directory [default: ./ivr-flows]
    dir: Option<PathBuf>,
    /// Entry flow to walk
    #[arg(long)]
    flow: String,
    /// What the caller presses at each wait, comma-separated; an empty item is
    /// silence (e.g. `2,1` or `,3`)
    #[arg(long, default_value = "")]
    digits: String,
    /// Wall-clock time of the call (RFC 3339) [default: now]
    #[arg(long)]
    at: Option<String>,
    /// Caller number
    #[arg(long)]
    caller: Option<String>,
    /// Dialled number
    #[arg(long)]
    dialled: Option<String>,
    /// Queue state QUEUE=WAITING[:WAIT], e.g. advice_en=12:8m (repeatable)
    #[arg(long = "queue")]
    queues: Vec<String>,
    /// Agents ready SKILL=N, e.g. en=3 (repeatable)
    #[arg(long)]
    agents_ready: Vec<String>,
    /// Outcome of each queue step in turn: answered, timeout, full, no_agents, callback (the caller takes the queue step's callback offer)
    #[arg(long = "queue-outcome")]
    queue_outcomes: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum PromptsCommand {
    /// Render every prompt text to 8 kHz WAV with espeak-ng.
    Render {
        /// Flow directory [default: ./ivr-flows]
        dir: Option<PathBuf>,
        /// Render even prompts whose text has not changed.
        #[arg(long)]
        force: bool,
        /// Render only this prompt id (every language).
        #[arg(long)]
        only: Option<String>,
    },
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(a) => super::serve(
            a.config.as_deref(),
            Overrides {
                sip_listen: a.sip_listen,
                http_listen: a.http_listen,
                flows: a.flows,
                data_dir: a.data_dir,
                rtp_ports: a.rtp_ports,
                public_ip: a.public_ip,
                node_id: a.node_id,
                redis: a.redis,
            },
        ),
        Command::Flows(cmd) => super::flows(cmd.into()),
        Command::Agents(AgentsCommand::Hash { username, realm }) => {
            super::hash_password(&username, &realm)
        }
        Command::Prompts(PromptsCommand::Render { dir, force, only }) => {
            super::render_prompts(&dir.unwrap_or_else(default_flows), force, only)
        }
        Command::Report(a) => super::report(Report {
            data_dir: a.data_dir,
            by: a.by,
            from: a.from,
            to: a.to,
            csv: a.csv,
            threshold_s: a.threshold,
            queue_log: a.queue_log,
        }),
    }
}

fn default_flows() -> PathBuf {
    PathBuf::from("ivr-flows")
}

impl From<FlowsCommand> for Flows {
    fn from(c: FlowsCommand) -> Self {
        match c {
            FlowsCommand::Check { dir } => Flows::Check {
                dir: dir.unwrap_or_else(default_flows),
            },
            FlowsCommand::Test { dir } => Flows::Test {
                dir: dir.unwrap_or_else(default_flows),
            },
            FlowsCommand::Simulate(a) => Flows::Simulate(Simulate {
                dir: a.dir.unwrap_or_else(default_flows),
                flow: a.flow,
                digits: a.digits,
                at: a.at,
                caller: a.caller,
                dialled: a.dialled,
                queues: a.queues,
                agents_ready: a.agents_ready,
                queue_outcomes: a.queue_outcomes,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn agents_hash_takes_the_username_as_an_argument() {
        assert!(Cli::try_parse_from(["hotline", "agents", "hash", "anna"]).is_ok());
        assert!(Cli::try_parse_from(["hotline", "agents", "hash", "anna", "--realm", "x"]).is_ok());
        let e = Cli::try_parse_from(["hotline", "agents", "hash", "--username", "anna"])
            .expect_err("no such flag");
        assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);
    }
}
