//! A file through the ledger and back: declare → apply (the ledger's pure state machine)
//! → edge view, compared with the same file loaded directly.

use floodgate_cluster::ledger::{Command, Effect, LedgerState, apply};
use floodgate_cluster::secrets::{Kek, Keyring};
use sha2::Digest;

use super::{declare_file, edge_config};
use crate::config::{Config, Credentials, Env, Mode, load_str};

struct Vars;

impl Env for Vars {
    fn get(&self, name: &str) -> Option<String> {
        (name == "OPENAI_KEY").then(|| "sk-test-0123456789abcdef".to_owned())
    }
}

const FILE: &str = r#"
listen: 127.0.0.1:9000
payload_capture: { enabled: true, redact: ['MRN-\d+'] }
keys:
  - { id: ci, key: gw-key-0123456789, team: ml, endpoints: [chat] }
teams:
  - { id: ml, name: Machine learning }
users:
  - { id: ana@example.com, team: ml }
prices:
  - { provider: openai, model: house-model, input: 1.25, output: 10 }
endpoints:
  - name: chat
    kind: chat
    targets:
      - provider: openai
        model: gpt-4o-mini
        api_base: http://127.0.0.1:1/v1
        credentials: { api_key: "${OPENAI_KEY}" }
        weight: 3
        max_tokens: 512
        price: { input: 0.15, output: 0.6 }
        timeouts: { first_byte: 5s }
      - { provider: mock, model: echo }
    fallbacks:
      - { provider: mock, model: slow-10 }
    routing:
      retry: { attempts: 2, backoff: 50ms }
    rate_limit: { calls: 10, renewal_period: minute }
    payload_capture: { enabled: false, max_bytes: 4096 }
  - name: embed
    endpoint_type: llm/v1/embeddings
    model:
      provider: openai
      name: text-embedding-3-small
      config: { openai_api_key: "${OPENAI_KEY}", openai_api_base: "http://127.0.0.1:1/v1" }
budgets:
  - { id: ml-monthly, limit_usd: 500, window: month, scope: { team: ml } }
  - { id: chat-rpm, limit_requests: 600, window: minute, scope: { endpoint: chat } }
"#;

fn keyring() -> Keyring {
    let (kek, _) = Kek::generate(1).unwrap();
    Keyring::new(kek)
}

fn apply_all(state: &mut LedgerState, command: Command) {
    let applied = apply(state, command, 1_700_000_000_000).expect("the ledger accepts the file");
    assert!(matches!(applied.effect, Effect::Batch(_)));
}

fn direct() -> Config {
    load_str(FILE, Mode::Serve, &Vars).unwrap()
}

#[test]
fn a_file_served_from_the_ledger_equals_the_file_served_directly() {
    let keyring = keyring();
    let mut state = LedgerState::new();
    let command = declare_file(FILE, Mode::Serve, &Vars, &state, Some(&keyring))
        .unwrap()
        .expect("a fresh ledger needs everything");
    apply_all(&mut state, command);

    let local = direct();
    let (served, problems) = edge_config(&state, Some(&keyring), &local);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(served.listen, local.listen);
    assert!(served.payload_capture.enabled, "edge-local, from the file");
    assert_eq!(served.payload_capture.redact.len(), 1);
    assert_eq!(
        served.endpoints["chat"].payload_capture.max_bytes,
        Some(4096),
        "an endpoint's override travels through the ledger"
    );
    let names: Vec<_> = served.endpoints.keys().collect();
    assert_eq!(names, ["chat", "embed"]);
    for (name, endpoint) in &local.endpoints {
        // Debug prints secrets as `***`; the key is compared on its own below.
        assert_eq!(
            format!("{:?}", served.endpoints[name]),
            format!("{endpoint:?}"),
            "endpoint {name}"
        );
    }
    let Credentials::ApiKey(key) = &served.endpoints["chat"].targets[0].credentials else {
        panic!("the chat target's key did not come back");
    };
    assert_eq!(key.expose(), "sk-test-0123456789abcdef");
    assert_eq!(served.budgets.len(), 2);
    assert_eq!(served.budgets[0].id, "chat-rpm");
    let price = served
        .prices
        .lookup(crate::providers::ProviderKind::OpenAi, "house-model")
        .unwrap();
    assert_eq!((price.input, price.output), (1_250_000, 10_000_000));
}

#[test]
fn applying_the_same_file_twice_proposes_nothing_the_second_time() {
    let keyring = keyring();
    let mut state = LedgerState::new();
    let first = declare_file(FILE, Mode::Serve, &Vars, &state, Some(&keyring)).unwrap();
    apply_all(&mut state, first.unwrap());
    let again = declare_file(FILE, Mode::Serve, &Vars, &state, Some(&keyring)).unwrap();
    assert_eq!(again, None);
}

#[test]
fn the_ledger_never_holds_the_plaintext_key() {
    let keyring = keyring();
    let state = LedgerState::new();
    let command = declare_file(FILE, Mode::Serve, &Vars, &state, Some(&keyring))
        .unwrap()
        .unwrap();
    let text = serde_json::to_string(&command).unwrap();
    assert!(!text.contains("sk-test-0123456789abcdef"));
    assert!(!text.contains("gw-key-0123456789"));
}

#[test]
fn a_credential_without_a_key_encryption_key_is_refused_by_field() {
    let error = declare_file(FILE, Mode::Serve, &Vars, &LedgerState::new(), None).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("endpoints[0].targets[0].credentials"),
        "{text}"
    );
    assert!(text.contains("FLOODGATE_KEK"), "{text}");
    assert!(!text.contains("sk-test"), "{text}");
}

#[test]
fn revoked_keys_are_not_served_and_key_owners_come_through() {
    let keyring = keyring();
    let mut state = LedgerState::new();
    let command = declare_file(FILE, Mode::Serve, &Vars, &state, Some(&keyring))
        .unwrap()
        .unwrap();
    apply_all(&mut state, command);
    let local = direct();
    let (served, _) = edge_config(&state, Some(&keyring), &local);
    let crate::config::Auth::Keys(keys) = &served.auth else {
        panic!("keys are required in serve mode");
    };
    let hash: [u8; 32] = sha2::Sha256::digest(b"gw-key-0123456789").into();
    let info = keys.find(&hash).unwrap();
    assert_eq!(info.team.as_deref(), Some("ml"));

    apply(
        &mut state,
        Command::RevokeKey { id: "ci".into() },
        1_700_000_000_500,
    )
    .unwrap();
    let (served, _) = edge_config(&state, Some(&keyring), &local);
    let crate::config::Auth::Keys(keys) = &served.auth else {
        panic!("keys are required in serve mode");
    };
    assert!(keys.find(&hash).is_none());
}

#[test]
fn an_edge_following_a_ledger_needs_no_keys_in_its_file_yet_still_requires_them() {
    let local = load_str("{}", Mode::Ledger, &Vars).unwrap();
    let crate::config::Auth::Keys(keys) = &local.auth else {
        panic!("an edge following a ledger must require gateway keys");
    };
    assert!(keys.is_empty());
    let open = load_str("auth: none", Mode::Ledger, &Vars).unwrap();
    assert!(matches!(open.auth, crate::config::Auth::None));
    assert!(load_str("{}", Mode::Serve, &Vars).is_err());
}
