//! The ledger role of a node and the link between a node and its ledger: starting a
//! member (and forming the cluster once), the client every role uses, and applying the
//! config file's declarations to the ledger.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use floodgate_cluster::client::{ClientConfig, ClientError, LedgerClient};
use floodgate_cluster::consensus::{Formation, LedgerNodeError, NodeId};
use floodgate_cluster::secrets::Keyring;
use floodgate_cluster::token::ClusterToken;
use floodgate_cluster::{LedgerNode, LedgerNodeConfig};

use crate::alerts::WebhookSender;
use crate::config::ledger::EdgeValidator;
use crate::config::{self, ConfigError, Env, Mode};

/// How long applying the config file keeps retrying while the ledger has no leader or
/// another member's identical declaration races this one.
const DECLARE_FOR: Duration = Duration::from_secs(60);

/// How a ledger member is started.
#[derive(Debug, Clone)]
pub struct LedgerRole {
    /// The member's id, unique and stable.
    pub id: NodeId,
    /// Its sled data dir.
    pub data_dir: PathBuf,
    /// Its gRPC listen address.
    pub listen: SocketAddr,
    /// The voters (id → `host:port`) to form the cluster with if this member has never
    /// belonged to one. `Some` with only this member's id makes a one-member ledger on the
    /// address it bound (what `floodgate dev` does).
    pub init: Option<BTreeMap<NodeId, String>>,
}

/// Why the ledger side of a node failed.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    /// The member did not start or could not form the cluster.
    #[error(transparent)]
    Node(#[from] LedgerNodeError),
    /// The ledger could not be reached or answered an error.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The config file is invalid (or its credentials cannot be sealed).
    #[error("invalid configuration\n{0}")]
    Config(#[from] ConfigError),
    /// The webhook client could not be built.
    #[error("cannot build the alert webhook client: {0}")]
    Webhook(#[from] reqwest::Error),
    /// The ledger refused the file's declarations.
    #[error("the ledger refused the config file: {0}")]
    Refused(String),
}

/// Starts a ledger member whose admin API checks endpoints with `validator` and which,
/// while it leads, calls budget alert webhooks; forms the cluster when `role.init` says so
/// and this member has never belonged to one.
pub async fn start_ledger(
    role: &LedgerRole,
    keyring: Option<Keyring>,
    validator: Arc<EdgeValidator>,
) -> Result<LedgerNode, RoleError> {
    let mut config = LedgerNodeConfig::new(role.id, &role.data_dir, role.listen);
    config.keyring = keyring;
    config.validator = Some(validator);
    config.alerts = Some(Arc::new(WebhookSender::new()?));
    config.token = ClusterToken::from_env();
    let node = LedgerNode::start(config).await?;
    if let Some(voters) = &role.init {
        // Checked first so that a restarted member does not ask (openraft logs a refusal as
        // an error).
        let initialized = node
            .handle()
            .raft()
            .is_initialized()
            .await
            .map_err(|e| RoleError::Refused(e.to_string()))?;
        if !initialized {
            let mut voters = voters.clone();
            if voters.len() == 1 && voters.contains_key(&role.id) {
                voters.insert(role.id, node.addr().to_string());
            }
            // A peer that formed the cluster first may ask for this member's vote as soon
            // as it listens, even between the check above and this call: it then joins.
            if node.initialize(voters).await? == Formation::Joined {
                tracing::info!(
                    id = role.id,
                    "a peer formed the cluster first; this member joins it"
                );
            }
        }
    }
    Ok(node)
}

/// A client of the ledger members at `urls` (`http://host:port`), sending the cluster
/// token from `FLOODGATE_CLUSTER_TOKEN` when set.
pub fn client(urls: Vec<String>) -> Result<LedgerClient, ClientError> {
    let mut config = ClientConfig::new(urls);
    config.token = ClusterToken::from_env();
    LedgerClient::new(config)
}

/// Applies the config file's declarations (teams, users, prices, endpoints with their
/// credentials sealed by `keyring`, keys, budgets) to the ledger. Idempotent; retries
/// while there is no leader, and recomputes when a concurrent identical declaration by
/// another member made this one's batch stale.
pub async fn declare(
    client: &LedgerClient,
    text: &str,
    mode: Mode,
    env: &dyn Env,
    keyring: Option<&Keyring>,
) -> Result<(), RoleError> {
    let deadline = tokio::time::Instant::now() + DECLARE_FOR;
    let mut pause = Duration::from_millis(50);
    let mut refusals = 0;
    loop {
        let attempt = async {
            let read = client.read(true).await?;
            let state = read.state.unwrap_or_default();
            let Some(command) = config::ledger::declare_file(text, mode, env, &state, keyring)?
            else {
                return Ok(());
            };
            let committed = client.propose(command).await?;
            committed
                .outcome
                .map(|_| ())
                .map_err(|refused| RoleError::Refused(refused.to_string()))
        };
        let last = match attempt.await {
            Ok(()) => return Ok(()),
            Err(RoleError::Config(error)) => return Err(RoleError::Config(error)),
            // Another member's identical batch may have landed first: recompute, but a
            // file the ledger keeps refusing is wrong, not racing.
            Err(RoleError::Refused(reason)) => {
                refusals += 1;
                if refusals >= 3 {
                    return Err(RoleError::Refused(reason));
                }
                RoleError::Refused(reason)
            }
            Err(error) => error,
        };
        if tokio::time::Instant::now() + pause > deadline {
            return Err(last);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}
