//! `floodgate ctl`: administer a running ledger. Object commands go to the JSON admin API
//! (`--admin`, with `FLOODGATE_ADMIN_TOKEN` when the ledger requires it); cluster
//! membership goes to the ledger's gRPC `LedgerService` (`--ledger`); `events init` sets up
//! the JetStream stream from a config file's `events.nats`; `usage` and `traces` go to a
//! projector ([`crate::ctl_usage`]). Output is JSON on stdout (tables for `usage` and
//! `traces`); errors go to stderr with exit code 1.

use std::collections::BTreeSet;
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::Value;

use crate::admin_http::ADMIN_TOKEN_VAR;

/// `floodgate ctl` arguments.
#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// The JSON admin API of any ledger member.
    #[arg(long, default_value = "http://127.0.0.1:8081", global = true)]
    admin: String,
    /// Ledger members' gRPC URLs (for membership commands), comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "http://127.0.0.1:7070",
        global = true
    )]
    ledger: Vec<String>,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// Revisions, leader, members and budget usage.
    Status,
    /// List objects of a kind (endpoint, price, credential, key, team, user, budget,
    /// lease_policy).
    List {
        /// The kind.
        kind: String,
    },
    /// Show one object.
    Get {
        /// The kind.
        kind: String,
        /// Its id.
        id: String,
    },
    /// Create or replace an object from JSON (a file, or `-` for stdin).
    Put {
        /// The kind.
        kind: String,
        /// The JSON file.
        file: String,
    },
    /// Delete an object.
    Delete {
        /// The kind.
        kind: String,
        /// Its id.
        id: String,
    },
    /// Create a gateway key (printed once). Options as JSON: `{"team": "...", ...}`.
    CreateKey {
        /// The key's settings as JSON.
        #[arg(default_value = "{}")]
        json: String,
    },
    /// Revoke a gateway key on every edge.
    RevokeKey {
        /// The key's id.
        id: String,
    },
    /// Add a member as a learner (it catches up before this returns).
    AddLearner {
        /// Its id.
        id: u64,
        /// Its gRPC `host:port`.
        addr: String,
    },
    /// Usage from a projector: totals, series or a ranking, as a table (or `--json`).
    Usage(crate::ctl_usage::UsageArgs),
    /// Request traces from a projector, newest first (or one with `--id`).
    Traces(crate::ctl_usage::TracesArgs),
    /// Set the voters (every id must already be a member); removed voters leave.
    SetVoters {
        /// The voter ids, comma-separated.
        #[arg(value_delimiter = ',')]
        ids: Vec<u64>,
    },
    /// The usage event stream.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Create or update the JetStream stream `FLOODGATE_USAGE` from the `events.nats`
    /// section of a config file (what an edge also does at start).
    Init {
        /// The config file.
        #[arg(long, short)]
        config: std::path::PathBuf,
    },
}

/// Runs a `ctl` command.
pub fn run(args: CtlArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(args)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command; the text to print.
async fn execute(args: CtlArgs) -> Result<String, String> {
    let base = args.admin.trim_end_matches('/').to_owned();
    let http = Admin {
        client: reqwest::Client::new(),
        base,
        token: std::env::var(ADMIN_TOKEN_VAR).ok(),
    };
    let value = match args.command {
        CtlCommand::Usage(usage) => return crate::ctl_usage::usage(usage).await,
        CtlCommand::Traces(traces) => return crate::ctl_usage::traces(traces).await,
        CtlCommand::Status => http.call(reqwest::Method::GET, "status", None).await,
        CtlCommand::List { kind } => http.call(reqwest::Method::GET, &kind, None).await,
        CtlCommand::Get { kind, id } => {
            http.call(reqwest::Method::GET, &format!("{kind}/{id}"), None)
                .await
        }
        CtlCommand::Put { kind, file } => {
            let body = if file == "-" {
                std::io::read_to_string(std::io::stdin())
            } else {
                std::fs::read_to_string(&file)
            }
            .map_err(|e| format!("cannot read {file}: {e}"))?;
            http.call(reqwest::Method::PUT, &kind, Some(body)).await
        }
        CtlCommand::Delete { kind, id } => {
            http.call(reqwest::Method::DELETE, &format!("{kind}/{id}"), None)
                .await
        }
        CtlCommand::CreateKey { json } => {
            http.call(reqwest::Method::POST, "keys", Some(json)).await
        }
        CtlCommand::RevokeKey { id } => {
            http.call(reqwest::Method::POST, &format!("keys/{id}/revoke"), None)
                .await
        }
        CtlCommand::AddLearner { id, addr } => {
            let client = crate::roles::client(args.ledger).map_err(|e| e.to_string())?;
            let changed = client
                .add_learner(id, addr, true)
                .await
                .map_err(|e| e.to_string())?;
            membership(&changed)
        }
        CtlCommand::Events {
            command: EventsCommand::Init { config },
        } => events_init(&config).await,
        CtlCommand::SetVoters { ids } => {
            let client = crate::roles::client(args.ledger).map_err(|e| e.to_string())?;
            let voters: BTreeSet<u64> = ids.into_iter().collect();
            let changed = client
                .change_membership(voters, false)
                .await
                .map_err(|e| e.to_string())?;
            membership(&changed)
        }
    }?;
    Ok(format!(
        "{}\n",
        serde_json::to_string_pretty(&value).unwrap_or_default()
    ))
}

/// Time to reach NATS and set the stream up.
const EVENTS_INIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn events_init(path: &std::path::Path) -> Result<Value, String> {
    use crate::config::events::EventsBackend;
    use floodgate_events::stream;

    let config = crate::config::load_file(
        path,
        crate::config::Mode::Ledger,
        &crate::config::ProcessEnv,
    )
    .map_err(|e| format!("{}: invalid configuration\n{e}", path.display()))?;
    let Some(EventsBackend::Nats(nats)) = config.events.map(|e| e.backend) else {
        return Err(format!(
            "{}: no `events:` section with backend `nats`",
            path.display()
        ));
    };
    let client = stream::connect(&nats.urls, EVENTS_INIT_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let js = async_nats::jetstream::new(client);
    let info = tokio::time::timeout(
        EVENTS_INIT_TIMEOUT,
        stream::ensure_stream(&js, &nats.stream),
    )
    .await
    .map_err(|_| format!("NATS did not answer within {EVENTS_INIT_TIMEOUT:?}"))?
    .map_err(|e| e.to_string())?;
    Ok(serde_json::json!({
        "stream": info.config.name,
        "subjects": info.config.subjects,
        "replicas": info.config.num_replicas,
        "duplicate_window_seconds": info.config.duplicate_window.as_secs(),
        "max_age_seconds": info.config.max_age.as_secs(),
        "max_bytes": info.config.max_bytes,
        "messages": info.state.messages,
    }))
}

fn membership(changed: &floodgate_cluster::consensus::MembershipChanged) -> Result<Value, String> {
    let membership: Value = serde_json::from_slice(&changed.membership_json)
        .map_err(|e| format!("the ledger answered an unreadable membership: {e}"))?;
    Ok(serde_json::json!({"index": changed.index, "membership": membership}))
}

struct Admin {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Admin {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Value, String> {
        let url = format!("{}/admin/v1/{path}", self.base);
        let mut request = self.client.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("cannot reach the admin API at {}: {e}", self.base))?;
        let status = response.status();
        let value: Value = response
            .json()
            .await
            .map_err(|e| format!("the admin API answered {status} without JSON: {e}"))?;
        if status.is_success() {
            Ok(value)
        } else {
            Err(serde_json::to_string_pretty(&value).unwrap_or_else(|_| status.to_string()))
        }
    }
}
