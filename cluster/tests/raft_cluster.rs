//! A real three-member ledger in one process: gRPC on `127.0.0.1:0`, sled in temp dirs.
//! Election, writes through a follower (forwarded to the leader, over gRPC and in
//! process), leader loss without losing an acknowledged write, restart and catch-up, a
//! snapshot for a member that lagged past a purge, and membership changes through the
//! admin API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod raft_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use floodgate_cluster::Outcome;
use floodgate_cluster::consensus::Formation;
use floodgate_cluster::token::ClusterToken;
use floodgate_cluster::{ClientConfig, LedgerClient};
use floodgate_proto::v1::AddLearnerRequest;
use floodgate_proto::v1::ChangeMembershipRequest;
use floodgate_proto::v1::MetricsRequest;
use floodgate_proto::v1::ProposeRequest;
use floodgate_proto::v1::ReadRequest;
use openraft::BasicNode;
use openraft::RaftMetrics;
use openraft::Vote;
use raft_support::{TestCluster, put_team};

fn has_teams(cluster: &TestCluster, id: u64, teams: &[String]) -> bool {
    cluster.read(id, |state| {
        teams.iter().all(|team| state.teams().contains_key(team))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elects_a_leader_and_commits_a_write_sent_to_a_follower() {
    let cluster = TestCluster::start(3, None).await;
    let leader = cluster.wait_leader().await;
    let follower = cluster.follower(leader);

    // Over gRPC: the follower forwards to the leader and relays its answer.
    let mut client = cluster.client(follower).await;
    let command_json = serde_json::to_vec(&put_team("via-grpc")).unwrap();
    let reply = client
        .propose(ProposeRequest {
            command_json,
            forwarded: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.leader_id, leader);
    let outcome: Outcome = serde_json::from_slice(&reply.outcome_json).unwrap();
    assert_eq!(outcome.unwrap().revision, 1);

    // In process, through another member's handle.
    let committed = cluster.write(follower, put_team("in-process")).await;
    assert_eq!(committed.leader_id, leader);
    assert!(committed.index > reply.index);

    let teams = ["via-grpc".to_owned(), "in-process".to_owned()];
    for id in cluster.running() {
        cluster.wait_applied(id, committed.index).await;
        assert!(has_teams(&cluster, id, &teams), "member {id}");
    }

    // A forwarded request reaching a follower is refused with a leader hint, not looped.
    let command_json = serde_json::to_vec(&put_team("looped")).unwrap();
    let status = client
        .propose(ProposeRequest {
            command_json,
            forwarded: true,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("leader at"), "{status:?}");

    // A bad command is an invalid argument.
    let status = client
        .propose(ProposeRequest {
            command_json: b"{".to_vec(),
            forwarded: false,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    let read = client
        .read(ReadRequest { full: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.node_id, follower);
    assert_eq!(read.leader_id, Some(leader));
    assert_eq!(read.revision, 2);
    assert!(read.applied_index >= committed.index);
    let state: floodgate_cluster::LedgerState = serde_json::from_slice(&read.state_json).unwrap();
    assert_eq!(state.teams().len(), 2);
    cluster.shutdown().await;
}

/// `serve --init` gives every first member the same voters, and a member listens before it
/// initializes: a peer that formed the cluster first may already have its vote (or have
/// replicated to it). Initializing it then joins it to that cluster instead of failing —
/// the failure stopped the member's process, and an edge following only that member never
/// got a config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initializing_a_member_a_peer_pulled_in_first_joins_the_cluster() {
    let cluster = TestCluster::start(3, None).await;
    let voters: BTreeMap<u64, String> = (1..=3)
        .map(|id| (id, cluster.addr(id).to_string()))
        .collect();
    cluster
        .wait_for(2, "a vote given to a peer", |m| m.vote != Vote::default())
        .await;
    let formation = cluster.node(2).initialize(voters.clone()).await.unwrap();
    assert_eq!(formation, Formation::Joined);

    let leader = cluster.wait_leader().await;
    let formation = cluster.node(leader).initialize(voters).await.unwrap();
    assert_eq!(formation, Formation::Joined);
    let committed = cluster.write(2, put_team("after-joining")).await;
    for id in cluster.running() {
        cluster.wait_applied(id, committed.index).await;
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_keeps_acknowledged_writes_and_a_restarted_member_catches_up() {
    let mut cluster = TestCluster::start(3, None).await;
    let old_leader = cluster.wait_leader().await;
    let mut acknowledged = Vec::new();
    for i in 0..5 {
        let team = format!("before-{i}");
        cluster.write(old_leader, put_team(&team)).await;
        acknowledged.push(team);
    }

    cluster.stop(old_leader).await;
    let new_leader = cluster.wait_leader().await;
    assert_ne!(new_leader, old_leader);
    let survivor = cluster.follower(new_leader);
    let mut last = 0;
    for i in 0..5 {
        let team = format!("after-{i}");
        last = cluster.write(survivor, put_team(&team)).await.index;
        acknowledged.push(team);
    }
    for id in cluster.running() {
        cluster.wait_applied(id, last).await;
        assert!(has_teams(&cluster, id, &acknowledged), "member {id}");
    }

    cluster.restart(old_leader).await;
    cluster.wait_applied(old_leader, last).await;
    assert!(has_teams(&cluster, old_leader, &acknowledged));
    let revision = cluster.read(new_leader, |state| state.revision());
    assert_eq!(revision, 10);
    assert_eq!(cluster.read(old_leader, |state| state.revision()), revision);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_lags_past_a_purge_receives_a_snapshot() {
    let mut cluster = TestCluster::start(3, Some(5)).await;
    let leader = cluster.wait_leader().await;
    let lagging = cluster.follower(leader);
    cluster.write(leader, put_team("first")).await;
    cluster.stop(lagging).await;
    let stopped_at = cluster
        .wait_for(leader, "matched", |_| true)
        .await
        .last_log_index
        .unwrap();

    let mut teams = vec!["first".to_owned()];
    let mut last = 0;
    for i in 0..20 {
        let team = format!("lag-{i}");
        last = cluster.write(leader, put_team(&team)).await.index;
        teams.push(team);
    }
    // The leader's log no longer holds what the lagging member needs next.
    cluster
        .wait_for(leader, "logs purged past the lagging member", |m| {
            m.purged.is_some_and(|purged| purged.index > stopped_at + 1)
        })
        .await;

    cluster.restart(lagging).await;
    cluster.wait_applied(lagging, last).await;
    let metrics = cluster
        .wait_for(lagging, "a snapshot", |m| m.snapshot.is_some())
        .await;
    assert!(metrics.snapshot.unwrap().index > stopped_at + 1);
    assert!(has_teams(&cluster, lagging, &teams));
    assert_eq!(
        cluster.read(lagging, Clone::clone),
        cluster.read(leader, Clone::clone)
    );
    cluster.shutdown().await;
}

fn voters(metrics: &RaftMetrics<u64, BasicNode>) -> BTreeSet<u64> {
    metrics.membership_config.membership().voter_ids().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adds_a_learner_promotes_it_and_removes_a_member() {
    let mut cluster = TestCluster::start(3, None).await;
    let leader = cluster.wait_leader().await;
    let follower = cluster.follower(leader);
    let before = cluster.write(leader, put_team("before-join")).await.index;

    // Admin calls go to a follower, which forwards them to the leader.
    let addr = cluster.add_member(4).await;
    let mut admin = cluster.client(follower).await;
    admin
        .add_learner(AddLearnerRequest {
            node_id: 4,
            addr: addr.to_string(),
            blocking: true,
            forwarded: false,
        })
        .await
        .unwrap();
    cluster.wait_applied(4, before).await;
    assert!(has_teams(&cluster, 4, &["before-join".to_owned()]));
    let metrics = cluster
        .wait_for(4, "a learner", |m| {
            m.membership_config
                .membership()
                .learner_ids()
                .any(|id| id == 4)
        })
        .await;
    assert!(!voters(&metrics).contains(&4));

    admin
        .change_membership(ChangeMembershipRequest {
            voters: vec![1, 2, 3, 4],
            retain: false,
            forwarded: false,
        })
        .await
        .unwrap();
    cluster
        .wait_for(4, "a voter", |m| voters(m) == BTreeSet::from([1, 2, 3, 4]))
        .await;

    // Remove a follower that is not the one we talk to.
    let removed = cluster
        .running()
        .into_iter()
        .find(|id| *id != leader && *id != follower && *id != 4)
        .unwrap();
    let remaining: BTreeSet<u64> = [1, 2, 3, 4]
        .into_iter()
        .filter(|id| *id != removed)
        .collect();
    admin
        .change_membership(ChangeMembershipRequest {
            voters: remaining.iter().copied().collect(),
            retain: false,
            forwarded: false,
        })
        .await
        .unwrap();
    let reply = admin.metrics(MetricsRequest {}).await.unwrap().into_inner();
    let metrics: RaftMetrics<u64, BasicNode> = serde_json::from_slice(&reply.metrics_json).unwrap();
    assert_eq!(metrics.id, follower);
    for id in &remaining {
        let metrics = cluster
            .wait_for(*id, "the member removed", |m| {
                voters(m) == remaining
                    && m.membership_config
                        .membership()
                        .get_node(&removed)
                        .is_none()
            })
            .await;
        assert_eq!(voters(&metrics), remaining);
    }

    // The smaller cluster still commits, and the new voter has it.
    let after = cluster.write(4, put_team("after-removal")).await.index;
    cluster.wait_applied(4, after).await;
    assert!(has_teams(&cluster, 4, &["after-removal".to_owned()]));
    cluster.shutdown().await;
}

/// With a cluster token, members replicate and forward with it, a client holding it
/// writes, and a call without it (or with another) is refused as unauthenticated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guarded_cluster_serves_only_callers_with_its_token() {
    let token = ClusterToken::new("s3cret-cluster-token").unwrap();
    let cluster = TestCluster::start_guarded(3, token).await;
    let leader = cluster.wait_leader().await;
    let follower = cluster.follower(leader);
    let committed = cluster
        .ledger_client(&[follower])
        .propose(put_team("guarded"))
        .await
        .unwrap();
    assert!(committed.outcome.is_ok());
    for id in cluster.running() {
        cluster.wait_applied(id, committed.index).await;
    }
    for presented in [None, ClusterToken::new("wrong-token")] {
        let mut config = ClientConfig::new(vec![cluster.url(1)]);
        config.failover_for = Duration::from_millis(200);
        config.token = presented;
        let error = LedgerClient::new(config)
            .unwrap()
            .read(false)
            .await
            .expect_err("refused");
        let text = format!("{error:?}");
        assert!(text.contains("Unauthenticated"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }
}
