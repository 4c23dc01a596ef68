//! openraft's own storage conformance suite (`openraft::testing::Suite`) against the sled
//! store, each case on a fresh store in its own temporary directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Kv;
use common::KvConfig;
use common::KvLog;
use common::KvStateMachine;
use openraft::ErrorSubject;
use openraft::ErrorVerb;
use openraft::StorageError;
use openraft::testing::StoreBuilder;
use openraft::testing::Suite;
use tempfile::TempDir;

/// Builds a fresh store in a new temporary directory, which lives as long as the store.
struct SledStoreBuilder;

impl StoreBuilder<KvConfig, KvLog, KvStateMachine, TempDir> for SledStoreBuilder {
    async fn build(&self) -> Result<(TempDir, KvLog, KvStateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir()
            .map_err(|e| StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
        let (log, state_machine) = floodgate_store::raft::open::<KvConfig, Kv>(dir.path())
            .map_err(|e| {
                StorageError::from_io_error(
                    ErrorSubject::Store,
                    ErrorVerb::Write,
                    std::io::Error::other(e),
                )
            })?;
        Ok((dir, log, state_machine))
    }
}

#[test]
fn sled_store_passes_openraft_storage_suite() {
    Suite::test_all(SledStoreBuilder).expect("the openraft storage suite passes");
}
