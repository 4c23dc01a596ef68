//! The command line: `dev`, `serve`, `ctl`, `config check`, `version`. Parses arguments,
//! loads config (a bad one exits 64 before any port is bound), and runs the node
//! ([`crate::run`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use floodgate_projector::ProjectorSettings;

use crate::config::{self, Mode, ProcessEnv};
use crate::roles::LedgerRole;
use crate::run::Plan;
use crate::telemetry;

/// Exit code for a bad configuration or command line (EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;

/// Floodgate: a distributed LLM gateway.
#[derive(Debug, Parser)]
#[command(name = "floodgate", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a development gateway: mock endpoints, no auth, a one-member ledger and a local
    /// usage event log in `./floodgate-data`, nothing else to install.
    Dev {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where the ledger keeps its data (and the dev key file, the usage spool and the
        /// local event log).
        #[arg(long, default_value = "floodgate-data")]
        data_dir: PathBuf,
        /// Where the JSON admin API listens.
        #[arg(long, default_value = "127.0.0.1:8081")]
        admin_listen: SocketAddr,
        /// Where the usage query JSON API (the in-process projector) listens; its gRPC
        /// `UsageService` takes a free port (logged).
        #[arg(long, default_value = "127.0.0.1:8082")]
        usage_listen: SocketAddr,
        /// This edge's id in usage events (default: the one kept in the data dir).
        #[arg(long, env = crate::edge_id::ENV)]
        edge_id: Option<String>,
    },
    /// Run a node: an edge from a config file, or edges and ledger members of a cluster.
    Serve(ServeArgs),
    /// Administer a running ledger.
    Ctl(crate::ctl::CtlArgs),
    /// Projector tools.
    Projector {
        #[command(subcommand)]
        command: ProjectorCommand,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print the version.
    Version,
}

/// `floodgate serve`.
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The config file (Floodgate or MLflow 2.x gateway YAML). Alone, it is the edge's
    /// whole config, hot-reloaded; with the ledger role, its objects are applied to the
    /// ledger at start and it gives the edge-local settings.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Roles: `edge`, `ledger`, or both (`edge,ledger`); or `projector` alone.
    #[arg(long, value_delimiter = ',', default_value = "edge")]
    roles: Vec<Role>,
    /// Ledger role: this member's id (unique, stable across restarts).
    #[arg(long)]
    node_id: Option<u64>,
    /// Ledger or projector role: the data dir. Edge role: where the edge keeps its id
    /// (default: the usage spool's dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Edge role: this edge's id in usage events and quota leases (default: the one kept
    /// in the data dir, made on first start).
    #[arg(long, env = crate::edge_id::ENV)]
    edge_id: Option<String>,
    /// Ledger role: the gRPC address (Raft, LedgerService, ConfigService).
    #[arg(long, default_value = "127.0.0.1:7070")]
    ledger_listen: SocketAddr,
    /// Ledger role: the JSON admin API's address.
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// Ledger role: form a new cluster of these voters (`1=host:port,2=host:port,...`) if
    /// this member never belonged to one. Give the same list to every first member.
    #[arg(long, value_delimiter = ',')]
    init: Vec<String>,
    /// Edge role: the ledger members to follow (`http://host:port`, comma-separated).
    #[arg(long, value_delimiter = ',')]
    ledger: Vec<String>,
    /// Projector role: the gRPC `UsageService` address.
    #[arg(long, default_value = "127.0.0.1:7080")]
    projector_listen: SocketAddr,
    /// Projector role: the usage JSON API's address.
    #[arg(long, default_value = "127.0.0.1:8082")]
    usage_listen: SocketAddr,
    /// Projector role: the durable JetStream consumer to read through (each projector
    /// replica needs its own).
    #[arg(long, default_value = crate::projector_role::DURABLE)]
    consumer: String,
}

/// `floodgate projector`.
#[derive(Debug, Subcommand)]
enum ProjectorCommand {
    /// Replay the whole usage event stream into a new, empty projection store.
    Rebuild {
        /// The config file whose `events.nats` names the stream.
        #[arg(long, short)]
        config: PathBuf,
        /// The new store's directory (must be empty).
        #[arg(long)]
        data_dir: PathBuf,
        /// The durable consumer to replay through (recreated from the stream's start); run
        /// the rebuilt projector with the same `--consumer` so it resumes where the
        /// rebuild ended.
        #[arg(long, default_value = crate::projector_role::DURABLE)]
        consumer: String,
    },
}

/// A role a node plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Role {
    /// Serve the HTTP API.
    Edge,
    /// Be a member of the Raft ledger.
    Ledger,
    /// Fold usage events and serve the usage query API.
    Projector,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a config file; prints every problem and exits 64 if there is one.
    Check {
        /// The file to check.
        file: PathBuf,
    },
}

const DEV_BANNER: &str = "\
*********************************************************************************
* FLOODGATE DEVELOPMENT MODE: no authentication, built-in mock provider only.   *
* Do not expose this to a network. Use `floodgate serve --config FILE`.         *
*********************************************************************************";

impl Cli {
    /// Runs the command.
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Version => {
                println!("floodgate {}", env!("CARGO_PKG_VERSION"));
                ExitCode::SUCCESS
            }
            Command::Config {
                command: ConfigCommand::Check { file },
            } => match config::load_file(&file, Mode::Serve, &ProcessEnv) {
                Ok(config) => {
                    println!(
                        "{}: ok ({} endpoints, listen {})",
                        file.display(),
                        config.endpoints.len(),
                        config.listen
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("{}: invalid configuration\n{error}", file.display());
                    ExitCode::from(EXIT_CONFIG)
                }
            },
            Command::Dev {
                listen,
                data_dir,
                admin_listen,
                usage_listen,
                edge_id,
            } => dev(listen, data_dir, admin_listen, usage_listen, edge_id),
            Command::Serve(args) => serve_command(args),
            Command::Ctl(args) => crate::ctl::run(args),
            Command::Projector {
                command:
                    ProjectorCommand::Rebuild {
                        config,
                        data_dir,
                        consumer,
                    },
            } => match nats_events(&config) {
                Ok(nats) => crate::projector_role::rebuild(&nats, &data_dir, &consumer),
                Err(message) => {
                    eprintln!("{message}");
                    ExitCode::from(EXIT_CONFIG)
                }
            },
        }
    }
}

fn dev(
    listen: SocketAddr,
    data_dir: PathBuf,
    admin_listen: SocketAddr,
    usage_listen: SocketAddr,
    edge_id: Option<String>,
) -> ExitCode {
    let mut projector = ProjectorSettings::new(data_dir.join("projection"));
    projector.http_listen = usage_listen;
    projector.grpc_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut local = match config::load_str(config::DEV_CONFIG, Mode::Dev, &ProcessEnv) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("built-in dev config is invalid: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    local.listen = listen;
    local.events = Some(config::events::EventsConfig::local(&data_dir));
    let keyring = match crate::kek::for_dev(&ProcessEnv, &data_dir) {
        Ok(keyring) => keyring,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let edge_id = match crate::edge_id::resolve(edge_id.as_deref(), Some(&data_dir)) {
        Ok(id) => id,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    eprintln!("{DEV_BANNER}");
    start(Plan {
        local,
        declare: Some(config::DEV_CONFIG.to_owned()),
        mode: Mode::Dev,
        watched: None,
        ledger: Some(LedgerRole {
            id: 1,
            data_dir: data_dir.join("ledger"),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            init: Some(BTreeMap::from([(1, String::new())])),
        }),
        admin_listen: Some(admin_listen),
        ledger_urls: Vec::new(),
        edge: Some(edge_id),
        keyring: Some(keyring),
        projector: Some(projector),
    })
}

fn serve_command(args: ServeArgs) -> ExitCode {
    let usage = |message: String| {
        eprintln!("{message}");
        ExitCode::from(EXIT_CONFIG)
    };
    if args.roles.contains(&Role::Projector) {
        return projector_command(args);
    }
    let ledger_role = args.roles.contains(&Role::Ledger);
    let edge = args.roles.contains(&Role::Edge);
    let file_mode = !ledger_role && args.ledger.is_empty();
    let mode = if file_mode { Mode::Serve } else { Mode::Ledger };
    let text = match &args.config {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) => return usage(format!("{}: cannot read: {e}", path.display())),
        },
        None => None,
    };
    let local = match &text {
        Some(text) => match config::load_str(text, mode, &ProcessEnv) {
            Ok(config) => config,
            Err(error) => {
                let name = args
                    .config
                    .as_deref()
                    .unwrap_or(std::path::Path::new("config"));
                return usage(format!(
                    "{}: invalid configuration\n{error}",
                    name.display()
                ));
            }
        },
        None => match config::load_str("{}", mode, &ProcessEnv) {
            Ok(config) => config,
            Err(error) => return usage(format!("{error}")),
        },
    };
    let keyring = match crate::kek::from_env(&ProcessEnv) {
        Ok(keyring) => keyring,
        Err(error) => return usage(error.to_string()),
    };
    if file_mode && text.is_none() {
        return usage("give --config FILE, or --ledger URLS to follow a ledger".to_owned());
    }
    if file_mode && !local.budgets.is_empty() {
        return usage(
            "budgets are enforced through the ledger: run with --roles edge,ledger (or follow one with --ledger)"
                .to_owned(),
        );
    }
    let edge = if edge {
        // The edge's own dir: the data dir, else its usage spool's.
        let dir = args
            .data_dir
            .clone()
            .or_else(|| local.events.as_ref().map(|e| e.spool_dir.clone()));
        match crate::edge_id::resolve(args.edge_id.as_deref(), dir.as_deref()) {
            Ok(id) => Some(id),
            Err(error) => return usage(error.to_string()),
        }
    } else {
        None
    };
    let ledger = if ledger_role {
        let (Some(id), Some(data_dir)) = (args.node_id, args.data_dir.clone()) else {
            return usage("the ledger role needs --node-id and --data-dir".to_owned());
        };
        let init = match parse_voters(&args.init) {
            Ok(init) => init,
            Err(message) => return usage(message),
        };
        Some(LedgerRole {
            id,
            data_dir,
            listen: args.ledger_listen,
            init,
        })
    } else {
        None
    };
    start(Plan {
        local,
        declare: if ledger_role { text } else { None },
        mode,
        watched: if file_mode { args.config } else { None },
        ledger,
        admin_listen: args.admin_listen,
        ledger_urls: args.ledger,
        edge,
        keyring,
        projector: None,
    })
}

fn projector_command(args: ServeArgs) -> ExitCode {
    if args.roles.iter().any(|role| *role != Role::Projector) {
        eprintln!("the projector role runs in its own process for now: --roles projector");
        return ExitCode::from(EXIT_CONFIG);
    }
    let Some(data_dir) = args.data_dir else {
        eprintln!("the projector role needs --data-dir");
        return ExitCode::from(EXIT_CONFIG);
    };
    let Some(file) = args.config else {
        eprintln!("the projector role needs --config with an `events:` section (backend nats)");
        return ExitCode::from(EXIT_CONFIG);
    };
    let nats = match nats_events(&file) {
        Ok(nats) => nats,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    crate::projector_role::serve(crate::projector_role::ProjectorRole {
        data_dir,
        grpc_listen: args.projector_listen,
        http_listen: args.usage_listen,
        feed: crate::projector_role::Feed::Nats {
            nats,
            consumer: args.consumer,
        },
    })
}

/// The JetStream settings of the config file's `events:` section (backend `nats`: a local
/// log belongs to the one process that writes it).
fn nats_events(file: &Path) -> Result<crate::config::events::NatsEvents, String> {
    let config = config::load_file(file, Mode::Ledger, &ProcessEnv)
        .map_err(|e| format!("{}: invalid configuration\n{e}", file.display()))?;
    match config.events.map(|events| events.backend) {
        Some(crate::config::events::EventsBackend::Nats(nats)) => Ok(nats),
        _ => Err(format!(
            "{}: the projector reads NATS JetStream: add an `events:` section with `backend: nats`",
            file.display()
        )),
    }
}

fn parse_voters(list: &[String]) -> Result<Option<BTreeMap<u64, String>>, String> {
    if list.is_empty() {
        return Ok(None);
    }
    let mut voters = BTreeMap::new();
    for item in list {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| format!("--init: `{item}` is not `id=host:port`"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("--init: `{id}` is not a member id"))?;
        voters.insert(id, addr.trim().to_owned());
    }
    Ok(Some(voters))
}

/// Starts the async runtime and runs the plan until SIGINT/SIGTERM.
fn start(plan: Plan) -> ExitCode {
    let _log_guard = telemetry::init(telemetry::LogFormat::from_env());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(crate::run::run(plan)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "floodgate stopped");
            ExitCode::FAILURE
        }
    }
}
