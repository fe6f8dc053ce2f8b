//! The `hotline` command line: `serve`, `flows check|simulate|test`, `prompts render`.

use clap::{Args, Parser, Subcommand};
use hotline::config::{Config, PortRange};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "hotline",
    version,
    about = "Multilingual 24/7 telephone hotline"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
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

#[derive(Subcommand)]
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

#[derive(Args)]
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

#[derive(Args)]
struct ServeArgs {
    /// YAML config file; every setting has a default without it.
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
}

#[derive(Subcommand)]
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

#[derive(Args)]
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
    /// Outcome of each queue step in turn: answered, timeout, full, no_agents
    #[arg(long = "queue-outcome")]
    queue_outcomes: Vec<String>,
}

#[derive(Subcommand)]
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Flows(cmd) => hotline::cli::flows(cmd.into()),
        Command::Agents(AgentsCommand::Hash { username, realm }) => {
            hotline::cli::hash_password(&username, &realm)
        }
        Command::Prompts(PromptsCommand::Render { dir, force, only }) => {
            hotline::cli::render_prompts(&dir.unwrap_or_else(default_flows), force, only)
        }
        Command::Report(a) => hotline::cli::report(hotline::cli::ReportArgs {
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

impl From<FlowsCommand> for hotline::cli::FlowsCommand {
    fn from(c: FlowsCommand) -> Self {
        match c {
            FlowsCommand::Check { dir } => hotline::cli::FlowsCommand::Check {
                dir: dir.unwrap_or_else(default_flows),
            },
            FlowsCommand::Test { dir } => hotline::cli::FlowsCommand::Test {
                dir: dir.unwrap_or_else(default_flows),
            },
            FlowsCommand::Simulate(a) => {
                hotline::cli::FlowsCommand::Simulate(hotline::cli::SimulateArgs {
                    dir: a.dir.unwrap_or_else(default_flows),
                    flow: a.flow,
                    digits: a.digits,
                    at: a.at,
                    caller: a.caller,
                    dialled: a.dialled,
                    queues: a.queues,
                    agents_ready: a.agents_ready,
                    queue_outcomes: a.queue_outcomes,
                })
            }
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    hotline::logging::init();
    let mut config = match &args.config {
        Some(path) => match Config::from_file(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => Config::default(),
    };
    if let Some(v) = args.sip_listen {
        config.sip_listen = v;
    }
    if let Some(v) = args.http_listen {
        config.http_listen = v;
    }
    if let Some(v) = args.flows {
        config.flows = v;
    }
    if let Some(v) = args.data_dir {
        config.data_dir = v;
    }
    if let Some(v) = args.rtp_ports {
        config.rtp_ports = v;
    }
    if let Some(v) = args.public_ip {
        config.public_ip = Some(v);
    }
    if let Err(e) = config.validate() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
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
    match runtime.block_on(hotline::server::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "hotline cannot serve");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
