//! The config watch, the leader's lease expiry timer and `LedgerClient`, on a real
//! three-member ledger (gRPC on `127.0.0.1:0`, sled in temp dirs): a follower streams the
//! current config and then every config change written elsewhere; lease traffic sends no
//! snapshot; the client keeps watching and writing after the member it used is killed; an
//! unsettled lease is charged in full once its TTL has passed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod raft_support;

use floodgate_cluster::ledger::{
    Action, BudgetSpec, LeaseRequest, LedgerError, Metric, ObjectKind, Scope, SettleResult,
    Settlement, Window,
};
use floodgate_cluster::{ClientError, Command, ConfigUpdate, LedgerState};
use floodgate_proto::v1::ConfigSnapshot;
use floodgate_proto::v1::WatchRequest;
use futures::StreamExt;
use futures::stream::BoxStream;
use raft_support::{DEADLINE, TestCluster, put_team};
use tonic::Streaming;

/// The next snapshot on a raw gRPC watch (panics after [`DEADLINE`] or if the stream ends).
async fn next_snapshot(stream: &mut Streaming<ConfigSnapshot>) -> (ConfigSnapshot, LedgerState) {
    let snapshot = tokio::time::timeout(DEADLINE, stream.message())
        .await
        .expect("a snapshot before the deadline")
        .unwrap()
        .expect("the stream is open");
    let state: LedgerState = serde_json::from_slice(&snapshot.state_json).unwrap();
    assert_eq!(state.config_revision(), snapshot.config_revision);
    assert_eq!(state.revision(), snapshot.revision);
    (snapshot, state)
}

/// The next update on a client watch (panics after [`DEADLINE`]).
async fn next_update(watch: &mut BoxStream<'static, ConfigUpdate>) -> ConfigUpdate {
    tokio::time::timeout(DEADLINE, watch.next())
        .await
        .expect("an update before the deadline")
        .expect("the watch never ends")
}

/// A `reject` budget that never rolls into a new window (so only expiry ends a lease).
fn budget(id: &str, limit: u64) -> Command {
    Command::PutBudget(BudgetSpec {
        id: id.into(),
        metric: Metric::Micros,
        limit,
        window: Window::Total,
        scope: Scope::default(),
        action: Action::Reject,
        webhook: None,
    })
}

fn lease_request(budget: &str, asked: u64, ttl_ms: u64) -> LeaseRequest {
    LeaseRequest {
        budget: budget.into(),
        edge_id: "edge-1".into(),
        asked,
        at_least: 0,
        ttl_ms,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_streams_the_current_config_then_changes_written_elsewhere() {
    let cluster = TestCluster::start(3, None).await;
    let leader = cluster.wait_leader().await;
    let (writer, watched) = {
        let followers: Vec<u64> = cluster
            .running()
            .into_iter()
            .filter(|id| *id != leader)
            .collect();
        (followers[0], followers[1])
    };
    let first = cluster.write(writer, put_team("before")).await;
    cluster.wait_applied(watched, first.index).await;

    let mut client = cluster.client(watched).await;
    let mut stream = client
        .watch(WatchRequest {
            after_config_revision: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let (snapshot, state) = next_snapshot(&mut stream).await;
    assert_eq!(snapshot.node_id, watched);
    assert_eq!(snapshot.config_revision, 1);
    assert!(state.teams().contains_key("before"));

    // A watcher that already has revision 1 gets nothing until the next change.
    let mut current = client
        .watch(WatchRequest {
            after_config_revision: 1,
        })
        .await
        .unwrap()
        .into_inner();

    cluster.write(writer, put_team("after")).await;
    for stream in [&mut stream, &mut current] {
        let (snapshot, state) = next_snapshot(stream).await;
        assert_eq!(snapshot.node_id, watched);
        assert_eq!(snapshot.config_revision, 2);
        assert!(state.teams().contains_key("after"));
    }

    // Stopping the member ends its streams cleanly.
    let mut cluster = cluster;
    cluster.stop(watched).await;
    let end = tokio::time::timeout(DEADLINE, stream.message())
        .await
        .expect("the stream ends before the deadline");
    assert!(matches!(end, Ok(None)), "{end:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_traffic_sends_no_snapshot() {
    let cluster = TestCluster::start(3, None).await;
    let leader = cluster.wait_leader().await;
    let watched = cluster.follower(leader);
    let ledger = cluster.ledger_client(&[leader]);
    let put = ledger.propose(budget("b", 1_000)).await.unwrap();
    put.outcome.unwrap();
    // The watched member has the budget before the watch opens, so its first snapshot is it.
    cluster.wait_applied(watched, put.index).await;

    let mut client = cluster.client(watched).await;
    let mut stream = client
        .watch(WatchRequest {
            after_config_revision: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let (snapshot, state) = next_snapshot(&mut stream).await;
    assert_eq!((snapshot.config_revision, snapshot.revision), (1, 1));
    assert!(state.budgets().contains_key("b"));

    // A grant and a settlement: two new revisions, no config change.
    let lease = ledger
        .grant_lease(lease_request("b", 40, 60_000))
        .await
        .unwrap()
        .expect("granted");
    let results = ledger
        .settle(vec![Settlement {
            lease: lease.id,
            actual: 10,
            close: true,
        }])
        .await
        .unwrap();
    assert!(matches!(
        results[..],
        [SettleResult::Settled {
            charged: 10,
            released: 30,
            ..
        }]
    ));
    let settled = cluster.write(leader, put_team("config")).await;
    assert_eq!(settled.outcome.as_ref().unwrap().revision, 4);

    // The next snapshot is the config change, not the lease traffic before it.
    let (snapshot, state) = next_snapshot(&mut stream).await;
    assert_eq!((snapshot.config_revision, snapshot.revision), (4, 4));
    assert!(state.teams().contains_key("config"));

    // The ledger's refusals come back typed.
    let error = ledger
        .grant_lease(lease_request("missing", 1, 1_000))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            ClientError::Ledger(LedgerError::NotFound {
                kind: ObjectKind::Budget,
                ..
            })
        ),
        "{error:?}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_survives_losing_the_member_it_uses() {
    let mut cluster = TestCluster::start(3, None).await;
    let leader = cluster.wait_leader().await;
    let mut order = vec![leader];
    order.extend(cluster.running().into_iter().filter(|id| *id != leader));
    // The client starts with the leader: both its watch and its writes go there.
    let ledger = cluster.ledger_client(&order);
    let mut watch = ledger.watch(0);

    ledger
        .propose(put_team("one"))
        .await
        .unwrap()
        .outcome
        .unwrap();
    let mut delivered = Vec::new();
    loop {
        let update = next_update(&mut watch).await;
        assert_eq!(update.node_id, leader);
        delivered.push(update.state.config_revision());
        if update.state.teams().contains_key("one") {
            break;
        }
    }

    cluster.stop(leader).await;
    // Writes fail over to the survivors and commit once they have elected a new leader.
    let committed = ledger.propose(put_team("two")).await.unwrap();
    assert!(committed.outcome.is_ok(), "{committed:?}");
    assert_ne!(committed.leader_id, leader);
    ledger
        .propose(put_team("three"))
        .await
        .unwrap()
        .outcome
        .unwrap();

    // The watch resumes on a survivor and delivers the newer revisions, never an old one.
    loop {
        let update = next_update(&mut watch).await;
        assert_ne!(update.node_id, leader);
        delivered.push(update.state.config_revision());
        if update.state.teams().contains_key("three") {
            assert!(update.state.teams().contains_key("two"));
            break;
        }
    }
    assert!(
        delivered.windows(2).all(|pair| pair[0] < pair[1]),
        "{delivered:?}"
    );

    // Reads and metrics fail over too.
    let summary = ledger.read(true).await.unwrap();
    assert_ne!(summary.node_id, leader);
    assert!(summary.state.is_some());
    let metrics = ledger.metrics().await.unwrap();
    assert_ne!(metrics.id, leader);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_expiry_timer_charges_an_unsettled_lease_in_full() {
    let cluster = TestCluster::start(3, None).await;
    let leader = cluster.wait_leader().await;
    let follower = cluster.follower(leader);
    let ledger = cluster.ledger_client(&[follower]);
    ledger
        .propose(budget("b", 1_000))
        .await
        .unwrap()
        .outcome
        .unwrap();
    let lease = ledger
        .grant_lease(lease_request("b", 50, 300))
        .await
        .unwrap()
        .expect("granted");
    assert_eq!(lease.held, 50);

    // Nobody settles: once its TTL has passed the leader's timer charges it in full, and
    // every member applies the same charge.
    for id in cluster.running() {
        let reader = cluster.node(id).handle().reader().clone();
        cluster
            .wait_for(id, "the lease expired", |_| {
                reader
                    .read(|state| !state.leases().contains_key(&lease.id))
                    .unwrap()
            })
            .await;
        cluster.read(id, |state| {
            let usage = &state.budgets()["b"].usage;
            assert_eq!((usage.settled, usage.outstanding), (50, 0), "member {id}");
            assert!(state.clock() >= lease.expires_at, "member {id}");
        });
    }
    cluster.shutdown().await;
}
