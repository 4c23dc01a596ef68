//! The config admin API (`ConfigService`) against a real three-member ledger in one
//! process, through a real tonic client sent to a follower (which forwards writes to the
//! leader): put/get/list/delete of every kind; credentials sealed by the member, shown only
//! masked and absent in plaintext from every byte of every member's sled files; gateway
//! keys shown once and authenticating on every member; bad input refused field by field
//! with nothing changed; credential writes without a key-encryption key refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod raft_support;

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use floodgate_cluster::LedgerState;
use floodgate_cluster::admin::{EndpointValidator, ErrorBody, FieldError};
use floodgate_cluster::consensus::now_millis;
use floodgate_cluster::ledger::{EndpointSpec, KeyHash, KeyRejected, RevealedCredential};
use floodgate_cluster::secrets::{Kek, Keyring};
use floodgate_proto::v1::config_service_client::ConfigServiceClient;
use floodgate_proto::v1::{
    CreateKeyRequest, DeleteRequest, GetRequest, ListRequest, PutRequest, RevokeKeyRequest,
    StatusRequest,
};
use raft_support::TestCluster;
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

const OPENAI: &str = "sk-proj-Zq8sV3nW0pXy7Tb2Lm4Rk9Hd6Jf1Gc5Ae3Ub8Yw";
const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const AWS_TOKEN: &str = "FwoGZXIvYXdzEXAMPLESESSIONTOKENvalue0123456789";
const PRIVATE_KEY: &str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7";
/// Not secret, stored as given: proves the byte scan really sees the replicated data.
const ACCESS_KEY_ID: &str = "AKIAMARKERADMINAPITEST";

type Client = ConfigServiceClient<Channel>;

fn keyring() -> Keyring {
    Keyring::new(Kek::from_bytes(1, &[7; 32]).unwrap())
}

async fn admin(cluster: &TestCluster, id: u64) -> Client {
    ConfigServiceClient::connect(format!("http://{}", cluster.addr(id)))
        .await
        .unwrap()
}

/// A three-member cluster, a client to a follower, and the leader's id.
async fn cluster_with(
    keyring: Option<Keyring>,
    validator: Option<Arc<dyn EndpointValidator>>,
) -> (TestCluster, Client, u64) {
    let cluster = TestCluster::start_with(3, None, keyring, validator).await;
    let leader = cluster.wait_leader().await;
    let client = admin(&cluster, cluster.follower(leader)).await;
    (cluster, client, leader)
}

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

fn body(status: &tonic::Status) -> ErrorBody {
    serde_json::from_str(status.message())
        .unwrap_or_else(|error| panic!("status message is not an error body ({error}): {status:?}"))
}

async fn put(client: &mut Client, kind: &str, object: &Value) -> (Value, u64) {
    let reply = client
        .put(PutRequest {
            kind: kind.into(),
            object_json: serde_json::to_vec(object).unwrap(),
        })
        .await
        .unwrap_or_else(|status| panic!("put {kind}: {status:?}"))
        .into_inner();
    (parse(&reply.object_json), reply.revision)
}

async fn put_raw(client: &mut Client, kind: &str, bytes: &[u8]) -> tonic::Status {
    client
        .put(PutRequest {
            kind: kind.into(),
            object_json: bytes.to_vec(),
        })
        .await
        .expect_err("the put must be refused")
}

async fn get(client: &mut Client, kind: &str, id: &str) -> Result<Value, tonic::Status> {
    client
        .get(GetRequest {
            kind: kind.into(),
            id: id.into(),
        })
        .await
        .map(|reply| parse(&reply.into_inner().object_json))
}

async fn list(client: &mut Client, kind: &str) -> Vec<Value> {
    client
        .list(ListRequest { kind: kind.into() })
        .await
        .unwrap()
        .into_inner()
        .objects_json
        .iter()
        .map(|bytes| parse(bytes))
        .collect()
}

async fn delete(client: &mut Client, kind: &str, id: &str) -> Result<u64, tonic::Status> {
    client
        .delete(DeleteRequest {
            kind: kind.into(),
            id: id.into(),
        })
        .await
        .map(|reply| reply.into_inner().revision)
}

/// Waits until every running member has applied everything the leader has.
async fn converge(cluster: &TestCluster) {
    let leader = cluster.wait_leader().await;
    let index = cluster
        .node(leader)
        .handle()
        .raft()
        .metrics()
        .borrow()
        .last_applied
        .map_or(0, |log_id| log_id.index);
    for id in cluster.running() {
        cluster.wait_applied(id, index).await;
    }
}

fn endpoint_json(name: &str, target: Value) -> Value {
    json!({"name": name, "kind": "chat", "targets": [target]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_round_trips_through_a_follower() {
    let (cluster, mut client, leader) = cluster_with(Some(keyring()), None).await;
    let imported_hash = KeyHash::of("fg-made-elsewhere-0123456789abcdef").to_hex();
    let objects: Vec<(&str, &str, Value)> = vec![
        (
            "team",
            "research",
            json!({"id": "research", "name": "Research"}),
        ),
        (
            "user",
            "ada",
            json!({"id": "ada", "name": "Ada", "team": "research"}),
        ),
        (
            "credential",
            "openai",
            json!({"name": "openai", "kind": "api_key", "api_key": OPENAI}),
        ),
        (
            "endpoint",
            "chat",
            endpoint_json(
                "chat",
                json!({"provider": "openai", "model": "gpt-4o",
                       "credential": {"stored": {"name": "openai"}}, "weight": 3,
                       "max_tokens": 1024}),
            ),
        ),
        (
            "price",
            "openai/gpt-4o",
            json!({"provider": "openai", "model": "gpt-4o", "price": {
                "input": 2_500_000, "cached_input": 1_250_000, "cache_write": 2_500_000,
                "cache_write_1h": 2_500_000, "output": 10_000_000}}),
        ),
        (
            "key",
            "imported",
            json!({"id": "imported", "hash": imported_hash, "team": "research",
                   "endpoints": ["chat"]}),
        ),
        (
            "budget",
            "research-monthly",
            json!({"id": "research-monthly", "metric": "micros", "limit": 5_000_000,
                   "window": "month", "scope": {"team": "research"}, "action": "reject"}),
        ),
        (
            "lease_policy",
            "",
            json!({"max_grant_permille": 200, "spread": 3, "max_ttl_ms": 60_000}),
        ),
    ];

    let mut shown = Vec::new();
    for (index, (kind, id, object)) in objects.iter().enumerate() {
        let (reply, revision) = put(&mut client, kind, object).await;
        assert_eq!(revision, index as u64 + 1, "{kind}: one revision per put");
        assert_eq!(get(&mut client, kind, id).await.unwrap(), reply, "{kind}");
        assert_eq!(list(&mut client, kind).await, vec![reply.clone()], "{kind}");
        shown.push(reply);
    }
    // What reads show of each kind.
    assert_eq!(shown[0], objects[0].2);
    assert_eq!(shown[1], objects[1].2);
    assert_eq!(
        shown[2],
        json!({"name": "openai", "kind": "api_key", "masked": "sk-proj-…b8Yw",
               "access_key_id": null, "kek_version": 1})
    );
    assert_eq!(shown[3]["targets"][0]["weight"], 3);
    assert_eq!(shown[3]["fallbacks"], json!([]), "defaults are filled in");
    assert_eq!(shown[4], objects[4].2);
    assert_eq!(shown[5]["id"], "imported");
    assert!(shown[5].get("hash").is_none(), "keys never show their hash");
    assert!(!shown[5].to_string().contains(&imported_hash));
    assert_eq!(shown[6]["spec"]["limit"], 5_000_000);
    assert_eq!(shown[6]["usage"]["settled"], 0);
    assert_eq!(shown[7], objects[7].2);

    // Every member holds the same objects.
    converge(&cluster).await;
    for id in cluster.running() {
        let mut member = admin(&cluster, id).await;
        for ((kind, object_id, _), reply) in objects.iter().zip(&shown) {
            assert_eq!(
                &get(&mut member, kind, object_id).await.unwrap(),
                reply,
                "member {id}, {kind}"
            );
        }
    }

    let status = client.status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!((status.revision, status.config_revision), (8, 8));
    assert_eq!(status.leader_id, Some(leader));
    assert_eq!(status.members.len(), 3);
    assert!(status.members.iter().all(|m| m.voter));
    for member in &status.members {
        assert_eq!(member.addr, cluster.addr(member.id).to_string());
    }
    assert_eq!(status.budgets.len(), 1);
    let budget = &status.budgets[0];
    assert_eq!(
        (
            budget.id.as_str(),
            budget.metric.as_str(),
            budget.window.as_str()
        ),
        ("research-monthly", "micros", "month")
    );
    assert_eq!(
        (budget.limit, budget.settled, budget.outstanding),
        (5_000_000, 0, 0)
    );
    assert!(budget.window_start < budget.window_end);

    // A team still in use is not deleted, and nothing changes.
    let refused = delete(&mut client, "team", "research").await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(body(&refused).code, "conflict");

    // Deletes, dependents first; each is one new revision.
    let order = [7, 6, 5, 4, 3, 2, 1, 0];
    for (step, index) in order.into_iter().enumerate() {
        let (kind, id, _) = &objects[index];
        let revision = delete(&mut client, kind, id).await.unwrap();
        assert_eq!(revision, 9 + step as u64, "delete {kind}");
        if *kind == "lease_policy" {
            assert_eq!(
                get(&mut client, kind, "").await.unwrap(),
                json!({"max_grant_permille": 100, "spread": 2, "max_ttl_ms": 300_000}),
                "deleting the lease policy restores the default"
            );
            continue;
        }
        let missing = get(&mut client, kind, id).await.unwrap_err();
        assert_eq!(missing.code(), Code::NotFound, "{kind}");
        assert_eq!(body(&missing).code, "not_found");
        assert!(list(&mut client, kind).await.is_empty(), "{kind}");
    }
    converge(&cluster).await;
    for id in cluster.running() {
        assert!(cluster.read(id, |s| s.teams().is_empty() && s.credentials().is_empty()));
    }
    cluster.shutdown().await;
}

fn secrets() -> Vec<String> {
    vec![
        OPENAI.to_owned(),
        AWS_SECRET.to_owned(),
        AWS_TOKEN.to_owned(),
        PRIVATE_KEY.to_owned(),
        "Zq8sV3nW0pXy7Tb2".to_owned(),
        "wJalrXUtnFEMI".to_owned(),
        "EXAMPLESESSIONTOKEN".to_owned(),
    ]
}

/// Every form in which a plaintext could sit in a file: as is, and base64-encoded.
fn needles() -> Vec<Vec<u8>> {
    let mut needles = Vec::new();
    for secret in secrets() {
        needles.push(
            base64::engine::general_purpose::STANDARD
                .encode(&secret)
                .into_bytes(),
        );
        needles.push(secret.into_bytes());
    }
    needles
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn assert_no_plaintext(what: &str, text: &str) {
    for secret in secrets() {
        assert!(!text.contains(&secret), "{what} shows a plaintext secret");
    }
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_sealed_by_the_member_and_shown_only_masked() {
    let (mut cluster, mut client, _leader) = cluster_with(Some(keyring()), None).await;
    let inputs = [
        json!({"name": "openai", "kind": "api_key", "api_key": OPENAI}),
        json!({"name": "bedrock", "kind": "aws", "access_key_id": ACCESS_KEY_ID,
               "secret_access_key": AWS_SECRET, "session_token": AWS_TOKEN}),
        json!({"name": "vertex", "kind": "service_account", "service_account": {
            "type": "service_account",
            "private_key": format!("-----BEGIN PRIVATE KEY-----\n{PRIVATE_KEY}\n-----END PRIVATE KEY-----\n"),
            "client_email": "svc@proj.iam.gserviceaccount.com"}}),
    ];
    let masked_fields = ["access_key_id", "kek_version", "kind", "masked", "name"];
    for input in &inputs {
        let (reply, _) = put(&mut client, "credential", input).await;
        assert_no_plaintext("a put reply", &reply.to_string());
        let mut keys: Vec<&str> = reply
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, masked_fields, "only the masked form, no ciphertext");
    }
    let shown = list(&mut client, "credential").await;
    assert_eq!(shown.len(), 3);
    assert_no_plaintext("list", &Value::Array(shown.clone()).to_string());
    assert_eq!(shown[0]["name"], "bedrock");
    assert_eq!(
        shown[0]["masked"], "…",
        "a secret with `/` is not token-like"
    );
    assert_eq!(shown[0]["access_key_id"], ACCESS_KEY_ID);
    assert_eq!(shown[1]["masked"], "sk-proj-…b8Yw");
    assert_eq!(shown[2]["masked"], "…");
    let one = get(&mut client, "credential", "openai").await.unwrap();
    assert_no_plaintext("get", &one.to_string());

    // Every member holds ciphertext that opens to exactly what was sent.
    converge(&cluster).await;
    let ring = keyring();
    for id in cluster.running() {
        cluster.read(id, |state: &LedgerState| {
            let opened = state.credentials()["openai"].reveal(&ring).unwrap();
            assert!(matches!(&opened, RevealedCredential::ApiKey(key) if key.expose() == OPENAI));
            match state.credentials()["bedrock"].reveal(&ring).unwrap() {
                RevealedCredential::Aws {
                    secret_access_key,
                    session_token,
                    ..
                } => {
                    assert_eq!(secret_access_key.expose(), AWS_SECRET);
                    assert_eq!(session_token.unwrap().expose(), AWS_TOKEN);
                }
                other => panic!("member {id}: {other:?}"),
            }
            match state.credentials()["vertex"].reveal(&ring).unwrap() {
                RevealedCredential::ServiceAccount(document) => {
                    assert!(document.expose().contains(PRIVATE_KEY));
                }
                other => panic!("member {id}: {other:?}"),
            }
        });
    }

    // Stop every member (sled flushed and released), then scan every byte they wrote.
    for id in cluster.running() {
        cluster.stop(id).await;
    }
    let needles = needles();
    for id in 1..=3 {
        let mut marker_seen = false;
        let all = files(cluster.data_dir(id));
        assert!(!all.is_empty(), "member {id} wrote no files");
        for file in all {
            let bytes = std::fs::read(&file).unwrap();
            marker_seen |= contains(&bytes, ACCESS_KEY_ID.as_bytes());
            for needle in &needles {
                assert!(
                    !contains(&bytes, needle),
                    "member {id}: {} holds a plaintext secret",
                    file.display()
                );
            }
        }
        assert!(
            marker_seen,
            "member {id}: the scan did not find the replicated access key id, so it proves nothing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_key_is_shown_once_and_authenticates_on_every_member() {
    let (cluster, mut client, _leader) = cluster_with(None, None).await;
    put(
        &mut client,
        "team",
        &json!({"id": "research", "name": "Research"}),
    )
    .await;
    let reply = client
        .create_key(CreateKeyRequest {
            key_json: br#"{"name": "ci", "team": "research"}"#.to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    let key = reply.key.clone();
    assert!(key.starts_with("fg-") && key.len() == 46, "{key}");
    assert_eq!(reply.prefix, key[..11]);
    assert!(reply.id.starts_with("key-"));
    assert_eq!(reply.revision, 2);
    let object = parse(&reply.object_json);
    assert_eq!(object["prefix"], reply.prefix);
    assert_eq!(object["team"], "research");

    let hash = KeyHash::of(&key).to_hex();
    let secret_part = &key[11..];
    converge(&cluster).await;
    let now = now_millis();
    for id in cluster.running() {
        let found = cluster.read(id, |s| s.authenticate(&key, now).map(|k| k.id.clone()));
        assert_eq!(found, Ok(reply.id.clone()), "member {id}");
        // Never shown again: not by get, not by list, not even its hash.
        let mut member = admin(&cluster, id).await;
        let shown = format!(
            "{} {}",
            get(&mut member, "key", &reply.id).await.unwrap(),
            Value::Array(list(&mut member, "key").await)
        );
        assert!(shown.contains(&reply.prefix));
        assert!(!shown.contains(secret_part), "member {id} shows the key");
        assert!(!shown.contains(&hash), "member {id} shows the key's hash");
    }

    // A second key is a different key; an id in use conflicts.
    let second = client
        .create_key(CreateKeyRequest {
            key_json: br#"{"id": "deploy"}"#.to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.id, "deploy");
    assert_ne!(second.key, key);
    let taken = client
        .create_key(CreateKeyRequest {
            key_json: br#"{"id": "deploy"}"#.to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
    assert_eq!(body(&taken).code, "conflict");

    // Revoked: refused on every member from then on.
    let revoked = client
        .revoke_key(RevokeKeyRequest {
            id: reply.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(parse(&revoked.object_json)["revoked_at"].is_u64());
    converge(&cluster).await;
    for id in cluster.running() {
        let refused = cluster.read(id, |s| s.authenticate(&key, now_millis()).err());
        assert!(
            matches!(refused, Some(KeyRejected::Revoked { .. })),
            "member {id}: {refused:?}"
        );
    }
    cluster.shutdown().await;
}

/// The edge's validator, as the node crate would plug it in: only known providers.
#[derive(Debug)]
struct KnownProviders;

impl EndpointValidator for KnownProviders {
    fn check(&self, spec: &EndpointSpec, _: &LedgerState) -> Result<(), Vec<FieldError>> {
        let errors: Vec<FieldError> = spec
            .targets
            .iter()
            .enumerate()
            .filter(|(_, target)| target.provider == "nope")
            .map(|(index, _)| {
                FieldError::new(
                    format!("endpoint.targets[{index}].provider"),
                    "unknown provider `nope`",
                )
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// The agreed config of a member's state (everything but the clock).
fn config_of(state: &LedgerState) -> Value {
    json!({
        "revision": state.revision(),
        "config_revision": state.config_revision(),
        "endpoints": state.endpoints(),
        "prices": state.prices(),
        "credentials": state.credentials(),
        "teams": state.teams(),
        "users": state.users(),
        "keys": state.keys(),
        "budgets": state.budgets(),
        "lease_policy": state.lease_policy(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_input_is_refused_by_field_and_changes_nothing() {
    let validator: Arc<dyn EndpointValidator> = Arc::new(KnownProviders);
    let (cluster, mut client, _leader) = cluster_with(Some(keyring()), Some(validator)).await;
    put(
        &mut client,
        "team",
        &json!({"id": "research", "name": "Research"}),
    )
    .await;
    let target = json!({"provider": "mock", "model": "echo", "credential": "none", "weight": 1});
    put(
        &mut client,
        "endpoint",
        &endpoint_json("chat", target.clone()),
    )
    .await;
    converge(&cluster).await;
    let before: Vec<Value> = cluster
        .running()
        .into_iter()
        .map(|id| cluster.read(id, config_of))
        .collect();
    assert_eq!(before[0]["revision"], 2);

    let with = |change: &dyn Fn(&mut Value)| {
        let mut object = endpoint_json("chat", target.clone());
        change(&mut object);
        serde_json::to_vec(&object).unwrap()
    };
    let bytes = |value: Value| serde_json::to_vec(&value).unwrap();
    // (kind, input, gRPC code, error code, the field named).
    let cases: Vec<(&str, Vec<u8>, Code, &str, &str)> = vec![
        (
            "widget",
            b"{}".to_vec(),
            Code::InvalidArgument,
            "invalid_argument",
            "kind",
        ),
        (
            "team",
            b"{\"id\": ".to_vec(),
            Code::InvalidArgument,
            "invalid_argument",
            "team",
        ),
        (
            "endpoint",
            with(&|o| o["targets"][0]["weight"] = json!("heavy")),
            Code::InvalidArgument,
            "invalid_argument",
            "endpoint.targets[0].weight",
        ),
        (
            "endpoint",
            with(&|o| o["fallback"] = json!([])),
            Code::InvalidArgument,
            "invalid_argument",
            "endpoint.fallback",
        ),
        (
            "endpoint",
            with(&|o| o["targets"][0]["weight"] = json!(0)),
            Code::InvalidArgument,
            "invalid_argument",
            "endpoints.chat.targets[0].weight",
        ),
        (
            "endpoint",
            with(&|o| o["targets"][0]["provider"] = json!("nope")),
            Code::InvalidArgument,
            "invalid_argument",
            "endpoint.targets[0].provider",
        ),
        (
            "team",
            bytes(json!({"id": "has space", "name": "x"})),
            Code::InvalidArgument,
            "invalid_argument",
            "team.id",
        ),
        (
            "user",
            bytes(json!({"id": "bob", "name": "Bob", "team": "ghost"})),
            Code::NotFound,
            "not_found",
            "",
        ),
        (
            "credential",
            bytes(json!({"name": "c", "kind": "api_key"})),
            Code::InvalidArgument,
            "invalid_argument",
            "credential.api_key",
        ),
        (
            "credential",
            bytes(json!({"name": "c", "kind": "rsa", "api_key": OPENAI})),
            Code::InvalidArgument,
            "invalid_argument",
            "credential.kind",
        ),
        (
            "budget",
            bytes(
                json!({"id": "b", "metric": "dollars", "limit": 1, "window": "day",
                         "action": "reject"}),
            ),
            Code::InvalidArgument,
            "invalid_argument",
            "budget.metric",
        ),
        (
            "lease_policy",
            bytes(json!({"max_grant_permille": 0, "spread": 1, "max_ttl_ms": 1})),
            Code::InvalidArgument,
            "invalid_argument",
            "lease_policy.max_grant_permille",
        ),
        (
            "key",
            bytes(json!({"id": "k", "hash": "zz"})),
            Code::InvalidArgument,
            "invalid_argument",
            "key.hash",
        ),
    ];
    for (kind, input, code, error_code, field) in cases {
        let status = put_raw(&mut client, kind, &input).await;
        let shown = body(&status);
        assert_eq!(status.code(), code, "{kind} {field}: {shown:?}");
        assert_eq!(shown.code, error_code, "{kind} {field}");
        if !field.is_empty() {
            assert!(
                shown.errors.iter().any(|e| e.field == field),
                "{kind}: expected an error on {field}, got {shown:?}"
            );
        }
        assert_no_plaintext("an error", status.message());
    }

    let bad_keys: [(&[u8], Code, &str); 3] = [
        (br#"{"team": "ghost"}"#, Code::NotFound, ""),
        (
            br#"{"expires_at": 1}"#,
            Code::InvalidArgument,
            "key.expires_at",
        ),
        (br#"{"nmae": "typo"}"#, Code::InvalidArgument, "key"),
    ];
    for (input, code, field) in bad_keys {
        let status = client
            .create_key(CreateKeyRequest {
                key_json: input.to_vec(),
            })
            .await
            .unwrap_err();
        let shown = body(&status);
        assert_eq!(status.code(), code, "{shown:?}");
        assert!(
            field.is_empty() || shown.errors.iter().any(|e| e.field.starts_with(field)),
            "{shown:?}"
        );
    }
    let missing = delete(&mut client, "team", "ghost").await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let bad_id = delete(&mut client, "price", "no-slash").await.unwrap_err();
    assert_eq!(body(&bad_id).errors[0].field, "id");
    let unknown = client
        .revoke_key(RevokeKeyRequest { id: "ghost".into() })
        .await
        .unwrap_err();
    assert_eq!(body(&unknown).code, "not_found");

    // Refusals that reached the ledger are in its log, but changed nothing anywhere.
    converge(&cluster).await;
    for (id, before) in cluster.running().into_iter().zip(&before) {
        assert_eq!(&cluster.read(id, config_of), before, "member {id}");
        let status = admin(&cluster, id)
            .await
            .status(StatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(status.revision, 2, "member {id}");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_put_without_a_keyring_is_kek_missing() {
    let (cluster, mut client, _leader) = cluster_with(None, None).await;
    let input = json!({"name": "openai", "kind": "api_key", "api_key": OPENAI});
    let status = put_raw(
        &mut client,
        "credential",
        &serde_json::to_vec(&input).unwrap(),
    )
    .await;
    assert_eq!(status.code(), Code::FailedPrecondition);
    let shown = body(&status);
    assert_eq!(shown.code, "kek_missing");
    assert_no_plaintext("the error", status.message());

    // The member works otherwise, and the refusal changed nothing.
    let (_, revision) = put(&mut client, "team", &json!({"id": "t", "name": "T"})).await;
    assert_eq!(revision, 1);
    converge(&cluster).await;
    for id in cluster.running() {
        assert!(
            cluster.read(id, |s| s.credentials().is_empty()),
            "member {id}"
        );
    }
    cluster.shutdown().await;
}
