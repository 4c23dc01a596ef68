//! The [`Application`] trait: the value a Raft state machine replicates.
//!
//! The store does not know what the ledger holds. It keeps one value of an `Application`
//! type in memory, feeds it every committed command in log order, and serializes the whole
//! value into snapshots. Everything about the ledger's meaning lives in the implementation,
//! in the `cluster` crate.

use openraft::AppData;
use openraft::AppDataResponse;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The replicated state of a Raft group: a pure fold of its committed commands.
///
/// * [`apply`](Self::apply) must be **deterministic**: the same commands in the same order
///   from the same starting value give the same value and the same responses on every member
///   and on every replay (no clocks, randomness, I/O or hash-map iteration order leaking into
///   the result). A restart rebuilds the value by replaying the log after the last snapshot.
/// * The whole value is serialized (serde_json) into every snapshot and deserialized when a
///   snapshot is loaded or installed, so it must round-trip through serde_json. In particular
///   map keys must serialize as strings or integers (a `BTreeMap<(A, B), V>` fails only when
///   the first snapshot is built: use a string key or a `Vec` of pairs).
/// * `Default` is the state before the first command.
///
/// A Raft type config `C` fits an application `A` when `C::D = A::Command` and
/// `C::R = A::Response` (see [`super::StoreTypeConfig`]).
pub trait Application: Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// A state change proposed through `Raft::client_write` (the config's `D`).
    type Command: AppData;

    /// What applying a command answers to its proposer (the config's `R`). Blank and
    /// membership entries, which carry no command, answer `Default::default()`.
    type Response: AppDataResponse + Default;

    /// Applies one committed command, found at log index `index`, and returns its response.
    ///
    /// `index` increases strictly from one call to the next and is the same on every member,
    /// so it can serve as a revision number.
    fn apply(&mut self, index: u64, command: Self::Command) -> Self::Response;
}
