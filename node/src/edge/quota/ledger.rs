//! [`QuotaLedger`]: the two ledger calls an edge makes for quota — grant a lease, settle a
//! batch — implemented over an in-process ledger member ([`LedgerHandle`]) and over the
//! remote gRPC client ([`LedgerClient`], which fails over between members).
//!
//! This module owns no quota bookkeeping (that is [`super::book`] and [`super::lease`]).

use std::future::Future;
use std::pin::Pin;

use floodgate_cluster::Command;
use floodgate_cluster::client::{ClientError, LedgerClient};
use floodgate_cluster::consensus::{LedgerHandle, ProposeError};
use floodgate_cluster::ledger::{
    Effect, Lease, LeaseRequest, LedgerError, Refusal, SettleResult, Settlement,
};

/// A boxed future, so [`QuotaLedger`] stays object-safe.
pub type LedgerFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, QuotaError>> + Send + 'a>>;

/// Why a ledger call failed. Either way the edge fails closed: with no local room left,
/// the request is refused.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    /// The ledger could not be reached or could not commit (no leader, network, timeout).
    #[error("the ledger is unavailable: {0}")]
    Unavailable(String),
    /// The ledger refused the command (e.g. the budget does not exist there).
    #[error("the ledger refused the command: {0}")]
    Rejected(#[from] LedgerError),
    /// The ledger answered with an effect that does not belong to the command.
    #[error("the ledger answered {answered} to a {command} command")]
    UnexpectedEffect {
        /// The command sent.
        command: &'static str,
        /// What came back.
        answered: &'static str,
    },
}

impl From<ProposeError> for QuotaError {
    fn from(error: ProposeError) -> Self {
        Self::Unavailable(error.to_string())
    }
}

/// The ledger as an edge's quota book sees it.
pub trait QuotaLedger: Send + Sync + 'static {
    /// Asks for a lease: granted, or refused because the budget has too little left.
    fn grant(&self, request: LeaseRequest) -> LedgerFuture<'_, Result<Lease, Refusal>>;

    /// Settles a batch of leases in one write; one result per settlement, in order.
    fn settle(&self, settlements: Vec<Settlement>) -> LedgerFuture<'_, Vec<SettleResult>>;
}

fn effect_name(effect: &Effect) -> &'static str {
    match effect {
        Effect::Written { .. } => "written",
        Effect::Granted(_) => "granted",
        Effect::Refused(_) => "refused",
        Effect::Settled { .. } => "settled",
        Effect::Expired { .. } => "expired",
        Effect::Batch(_) => "batch",
    }
}

impl QuotaLedger for LedgerHandle {
    fn grant(&self, request: LeaseRequest) -> LedgerFuture<'_, Result<Lease, Refusal>> {
        Box::pin(async move {
            let committed = self.propose(Command::GrantLease(request), false).await?;
            match committed.outcome?.effect {
                Effect::Granted(lease) => Ok(Ok(lease)),
                Effect::Refused(refusal) => Ok(Err(refusal)),
                other => Err(QuotaError::UnexpectedEffect {
                    command: "grant_lease",
                    answered: effect_name(&other),
                }),
            }
        })
    }

    fn settle(&self, settlements: Vec<Settlement>) -> LedgerFuture<'_, Vec<SettleResult>> {
        Box::pin(async move {
            let committed = self.propose(Command::Settle { settlements }, false).await?;
            match committed.outcome?.effect {
                Effect::Settled { results, .. } => Ok(results),
                other => Err(QuotaError::UnexpectedEffect {
                    command: "settle",
                    answered: effect_name(&other),
                }),
            }
        })
    }
}

impl From<ClientError> for QuotaError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::Ledger(refused) => Self::Rejected(refused),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

impl QuotaLedger for LedgerClient {
    fn grant(&self, request: LeaseRequest) -> LedgerFuture<'_, Result<Lease, Refusal>> {
        Box::pin(async move { Ok(self.grant_lease(request).await?) })
    }

    fn settle(&self, settlements: Vec<Settlement>) -> LedgerFuture<'_, Vec<SettleResult>> {
        Box::pin(async move { Ok(LedgerClient::settle(self, settlements).await?) })
    }
}
