//! Running a node: the roles it plays (edge, ledger) and how they are wired together.
//!
//! * **edge, config file** (`serve --config FILE`): the file is the config, watched and
//!   hot-reloaded; no ledger, so no budgets.
//! * **ledger** (`--roles ledger`): a Raft member (gRPC for Raft, `LedgerService` and
//!   `ConfigService`) plus the JSON admin API; forms the cluster once with `--init`; applies
//!   the config file's declarations (idempotently) when one is given.
//! * **edge, ledger-fed** (`--roles edge --ledger URLS`, or with the ledger role in the same
//!   process): watches the ledger and serves each config revision; the file, if any, gives
//!   only the edge-local settings (listen, limits, timeouts, auth mode).
//! * `floodgate dev` is edge + a one-member ledger in one process, in `./floodgate-data`,
//!   with usage events in a local sled log there.
//! * **usage events**: with an `events:` section (or under `dev`), every usage record goes
//!   to the spool and on to NATS JetStream or the local log ([`crate::events`]); without
//!   one, records are logged.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use floodgate_cluster::admin::Admin;
use floodgate_cluster::secrets::Keyring;
use floodgate_projector::ProjectorSettings;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ledger::EdgeValidator;
use crate::config::{self, Config, Mode, ProcessEnv};
use crate::edge::Gateway;
use crate::edge::quota::ledger::QuotaLedger;
use crate::edge::quota::{QuotaSettings, Quotas};
use crate::follow::Follower;
use crate::http_client::HttpClients;
use crate::projector_role::{self, Feed};
use crate::providers::Providers;
use crate::roles::{self, LedgerRole, RoleError};
use crate::usage::{LogSink, UsageSink};
use crate::{admin_http, server};

/// Capacity of the usage queue between requests and the log writer.
const USAGE_QUEUE: usize = 65_536;

/// What one node runs.
pub struct Plan {
    /// The edge-local config (the whole config in file mode).
    pub local: Config,
    /// The config file's text to declare into the ledger (ledger role only).
    pub declare: Option<String>,
    /// The config mode the file is checked in.
    pub mode: Mode,
    /// Watch this file and hot-reload it (file mode only).
    pub watched: Option<PathBuf>,
    /// Run a ledger member.
    pub ledger: Option<LedgerRole>,
    /// Where the JSON admin API listens (ledger role only).
    pub admin_listen: Option<SocketAddr>,
    /// Follow the ledger at these URLs (edge role; empty with a local member means itself).
    pub ledger_urls: Vec<String>,
    /// Serve HTTP traffic (the edge role), with this edge id ([`crate::edge_id`]).
    pub edge: Option<String>,
    /// The key-encryption keys.
    pub keyring: Option<Keyring>,
    /// Run a projector in this process over the edge's local event log (`dev`).
    pub projector: Option<ProjectorSettings>,
}

/// Why the node stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The upstream HTTP clients could not be built.
    #[error("cannot build the upstream HTTP clients: {0}")]
    Client(#[from] reqwest::Error),
    /// The config watcher could not start.
    #[error(transparent)]
    Watch(#[from] config::watch::WatchError),
    /// The in-process projector did not start.
    #[error(transparent)]
    Projector(#[from] floodgate_projector::StartError),
    /// The ledger side failed.
    #[error(transparent)]
    Ledger(#[from] RoleError),
    /// The ledger client could not be built.
    #[error(transparent)]
    LedgerClient(#[from] floodgate_cluster::client::ClientError),
    /// The ledger's watch stream ended before the first config.
    #[error("the ledger's watch stream ended before the first config arrived")]
    NoConfig,
    /// The usage event pipeline could not start.
    #[error(transparent)]
    Events(#[from] crate::events::EventsError),
    /// Serving failed.
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// Runs the plan until SIGINT/SIGTERM.
pub async fn run(plan: Plan) -> Result<(), NodeError> {
    let tracker = TaskTracker::new();
    let stop = CancellationToken::new();
    let grace = plan.local.shutdown_grace;

    let validator = Arc::new(EdgeValidator::new(plan.keyring.clone(), plan.local.clone()));
    let member = match &plan.ledger {
        Some(role) => {
            Some(roles::start_ledger(role, plan.keyring.clone(), validator.clone()).await?)
        }
        None => None,
    };
    let mut urls = plan.ledger_urls.clone();
    if let (Some(member), true) = (&member, urls.is_empty()) {
        urls.push(format!("http://{}", member.addr()));
    }
    let client = if urls.is_empty() {
        None
    } else {
        Some(roles::client(urls)?)
    };
    if let (Some(member), Some(addr)) = (&member, plan.admin_listen) {
        let admin = Admin::new(
            member.handle().clone(),
            plan.keyring.clone(),
            Some(validator),
        );
        let token = std::env::var(admin_http::ADMIN_TOKEN_VAR).ok();
        if token.is_none() && !addr.ip().is_loopback() {
            tracing::error!(%addr, "the admin API binds beyond loopback only with {} set", admin_http::ADMIN_TOKEN_VAR);
        } else {
            let listener = server::bind(addr)
                .await
                .map_err(|source| NodeError::Bind { addr, source })?;
            tracing::info!(address = %listener.local_addr().map_err(NodeError::Serve)?, "admin API listening");
            let app = admin_http::router(admin, token);
            let stopped = stop.clone();
            tracker.spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stopped.cancelled().await })
                    .await;
            });
        }
    }
    if let (Some(text), Some(client)) = (&plan.declare, &client) {
        roles::declare(client, text, plan.mode, &ProcessEnv, plan.keyring.as_ref()).await?;
        tracing::info!("the config file's declarations are in the ledger");
    }

    if let Some(edge_id) = plan.edge.clone() {
        let mut local = plan.local.clone();
        let follower = match &client {
            Some(client) => {
                let follower = Follower {
                    local: plan.local.clone(),
                    keyring: plan.keyring.clone(),
                };
                let mut updates = Box::pin(futures::StreamExt::map(client.watch(0), |update| {
                    update.state
                }));
                let config = follower
                    .first(&mut updates)
                    .await
                    .ok_or(NodeError::NoConfig)?;
                local = config;
                Some((follower, updates))
            }
            None => None,
        };
        let clients = HttpClients::with_timeouts(local.connect_timeouts())?;
        // Edge-local and read once: a reload does not move the spool or the event log.
        let sink: Arc<dyn UsageSink> = match &plan.local.events {
            Some(events) => {
                let started =
                    crate::events::start(events, edge_id.clone(), &tracker, &stop).await?;
                if let (Some(settings), Some(log)) = (plan.projector.clone(), started.local) {
                    projector_role::start(settings, Feed::Local(log), &stop, &tracker).await?;
                }
                started.sink
            }
            None => Arc::new(LogSink::start(USAGE_QUEUE, &tracker)),
        };
        let listen = local.listen;
        let providers = Providers::new(clients);
        let gateway = match &client {
            Some(client) => {
                // In the ledger's own process, quota calls skip the network.
                let ledger: Arc<dyn QuotaLedger> = match &member {
                    Some(member) => Arc::new(member.handle().clone()),
                    None => Arc::new(client.clone()),
                };
                let quotas =
                    Quotas::start(ledger, edge_id.clone(), QuotaSettings::default(), &tracker);
                Gateway::with_quotas(local, providers, sink, quotas)
            }
            None => Gateway::new(local, providers, sink),
        };
        if let Some((follower, updates)) = follower {
            let target = gateway.clone();
            let stopped = stop.clone();
            tracker.spawn(async move {
                tokio::select! {
                    () = follower.run(updates, target) => {}
                    () = stopped.cancelled() => {}
                }
            });
        }
        if let Some(path) = &plan.watched {
            let target = gateway.clone();
            config::watch::watch(
                path,
                Mode::Serve,
                Box::new(ProcessEnv),
                stop.clone(),
                &tracker,
                move |config| {
                    if config.listen != target.runtime().config.listen {
                        tracing::warn!("`listen` changed: the new address takes effect at restart");
                    }
                    if config.events != target.runtime().config.events {
                        tracing::warn!("`events` changed: the new settings take effect at restart");
                    }
                    target.apply(config);
                },
            )?;
        }
        let listener = server::bind(listen)
            .await
            .map_err(|source| NodeError::Bind {
                addr: listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(NodeError::Serve)?;
        tracing::info!(address = %local_addr, version = env!("CARGO_PKG_VERSION"), %edge_id, "floodgate listening");
        let drained = server::run(listener, gateway.clone(), server::shutdown_signal(), grace)
            .await
            .map_err(NodeError::Serve)?;
        if let Some(quotas) = gateway.quotas() {
            // Settle and close this edge's leases so their rest returns to the budgets now.
            let open = quotas.close(grace).await;
            if open > 0 {
                tracing::warn!(
                    open,
                    "quota leases left open; the ledger charges them at expiry"
                );
            }
        }
        // The last handle on the usage sink: dropping it lets the usage log writer finish;
        // the spool writer flushes and stops at `stop` below.
        drop(gateway);
        tracing::info!(drained, "edge stopped");
    } else {
        server::shutdown_signal().await;
    }
    stop.cancel();
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!("background tasks did not finish within the grace period");
    }
    if let Some(member) = member
        && let Err(error) = member.shutdown().await
    {
        tracing::warn!(%error, "the ledger member did not stop cleanly");
    }
    tracing::info!("floodgate stopped");
    Ok(())
}
