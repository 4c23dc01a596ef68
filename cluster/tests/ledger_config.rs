//! One test (or a few) per config command of the ledger (endpoints, prices, teams, users,
//! credentials, gateway keys, batches), through the public `apply`, checking effects,
//! revision counters, and the invariants after every command.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use floodgate_cluster::ledger::*;
use floodgate_cluster::secrets::{Kek, Keyring};

#[test]
fn put_and_delete_endpoint() {
    let mut state = LedgerState::new();
    assert_eq!(
        run(&mut state, Command::PutEndpoint(endpoint("chat")), T0).unwrap(),
        Applied {
            revision: 1,
            effect: Effect::Written { changed: true }
        }
    );
    assert_eq!(state.config_revision(), 1);
    // The same content again is not a change: no new revision (idempotent config import).
    assert_eq!(
        ok(&mut state, Command::PutEndpoint(endpoint("chat")), T0),
        Effect::Written { changed: false }
    );
    assert_eq!(state.revision(), 1);
    let mut changed = endpoint("chat");
    changed.fallbacks.push(target("openai", "gpt-4o-mini"));
    ok(&mut state, Command::PutEndpoint(changed.clone()), T0);
    assert_eq!(state.endpoints()["chat"], changed);
    assert_eq!(state.revision(), 2);
    ok(
        &mut state,
        Command::DeleteEndpoint {
            name: "chat".into(),
        },
        T0,
    );
    assert!(state.endpoints().is_empty());
    assert_eq!(
        err(
            &mut state,
            Command::DeleteEndpoint {
                name: "chat".into()
            },
            T0
        ),
        LedgerError::not_found(ObjectKind::Endpoint, "chat")
    );
}

#[test]
fn endpoint_validation_names_the_field() {
    let mut state = LedgerState::new();
    let mut no_targets = endpoint("chat");
    no_targets.targets.clear();
    assert_eq!(
        err(&mut state, Command::PutEndpoint(no_targets), T0),
        LedgerError::invalid("endpoints.chat.targets", "at least one target is required")
    );
    let mut zero_weight = endpoint("chat");
    zero_weight.targets[0].weight = 0;
    assert!(matches!(
        err(&mut state, Command::PutEndpoint(zero_weight), T0),
        LedgerError::Invalid { field, .. } if field == "endpoints.chat.targets[0].weight"
    ));
    assert!(matches!(
        err(&mut state, Command::PutEndpoint(endpoint("bad name")), T0),
        LedgerError::Invalid { field, .. } if field == "endpoint.name"
    ));
    let mut missing_credential = endpoint("chat");
    missing_credential.fallbacks.push(TargetSpec {
        credential: TargetCredential::Stored {
            name: "openai".into(),
        },
        ..target("openai", "gpt-4o")
    });
    assert_eq!(
        err(&mut state, Command::PutEndpoint(missing_credential), T0),
        LedgerError::not_found(ObjectKind::Credential, "openai")
    );
    assert_eq!(state.revision(), 0);
}

#[test]
fn put_and_delete_price() {
    let mut state = LedgerState::new();
    let entry = PriceEntry {
        provider: Some("openai".into()),
        model: "gpt-4o".into(),
        price: ModelPrice {
            input: 2_500_000,
            cached_input: 1_250_000,
            cache_write: 2_500_000,
            cache_write_1h: 2_500_000,
            output: 10_000_000,
        },
    };
    ok(&mut state, Command::PutPrice(entry.clone()), T0);
    assert_eq!(state.prices()["openai/gpt-4o"], entry);
    ok(
        &mut state,
        Command::DeletePrice {
            provider: Some("openai".into()),
            model: "gpt-4o".into(),
        },
        T0,
    );
    assert_eq!(
        err(
            &mut state,
            Command::DeletePrice {
                provider: None,
                model: "gpt-4o".into()
            },
            T0
        ),
        LedgerError::not_found(ObjectKind::Price, "*/gpt-4o")
    );
}

#[test]
fn teams_and_users_keep_references_whole() {
    let mut state = LedgerState::new();
    let ada = User {
        id: "ada@example.com".into(),
        name: "Ada".into(),
        team: Some("research".into()),
    };
    assert_eq!(
        err(&mut state, Command::PutUser(ada.clone()), T0),
        LedgerError::not_found(ObjectKind::Team, "research")
    );
    ok(
        &mut state,
        Command::PutTeam(Team {
            id: "research".into(),
            name: "Research".into(),
        }),
        T0,
    );
    ok(&mut state, Command::PutUser(ada), T0);
    assert_eq!(
        err(
            &mut state,
            Command::DeleteTeam {
                id: "research".into()
            },
            T0
        ),
        LedgerError::InUse {
            kind: ObjectKind::Team,
            id: "research".into(),
            by_kind: ObjectKind::User,
            by_id: "ada@example.com".into(),
        }
    );
    ok(
        &mut state,
        Command::DeleteUser {
            id: "ada@example.com".into(),
        },
        T0,
    );
    ok(
        &mut state,
        Command::DeleteTeam {
            id: "research".into(),
        },
        T0,
    );
    assert!(state.teams().is_empty() && state.users().is_empty());
}

#[test]
fn credentials_are_stored_sealed_and_guarded_by_references() {
    let kek = Kek::from_bytes(1, &[3; 32]).unwrap();
    let mut state = LedgerState::new();
    let credential =
        ProviderCredential::api_key(&kek, "openai", "sk-abcdefghijklmnopqrstuvwxyz0123").unwrap();
    ok(&mut state, Command::PutCredential(credential), T0);
    let masked = state.credentials()["openai"].masked();
    assert_eq!(masked.masked, "sk-…0123");
    assert_eq!(masked.kind, "api_key");
    let mut chat = endpoint("chat");
    chat.targets[0] = TargetSpec {
        credential: TargetCredential::Stored {
            name: "openai".into(),
        },
        ..target("openai", "gpt-4o")
    };
    ok(&mut state, Command::PutEndpoint(chat), T0);
    assert!(matches!(
        err(
            &mut state,
            Command::DeleteCredential {
                name: "openai".into()
            },
            T0
        ),
        LedgerError::InUse {
            by_kind: ObjectKind::Endpoint,
            ..
        }
    ));
    let revealed = state.credentials()["openai"]
        .reveal(&Keyring::new(kek))
        .unwrap();
    assert!(
        matches!(revealed, RevealedCredential::ApiKey(key) if key.expose() == "sk-abcdefghijklmnopqrstuvwxyz0123")
    );
}

#[test]
fn create_key_and_authenticate() {
    let (state, key) = keyed_ledger();
    let found = state.authenticate(&key.secret, T0 + 1).unwrap();
    assert_eq!(found.id, "k1");
    assert_eq!(found.created_at, T0);
    assert_eq!(found.prefix, key.prefix);
    assert!(found.allows_endpoint("chat"));
    assert!(!found.allows_endpoint("embed"));
    assert_eq!(state.keys_by_prefix(&key.prefix).count(), 1);
    assert_eq!(
        state.authenticate("fg-not-a-key", T0).unwrap_err(),
        KeyRejected::Unknown
    );
    // Only the hash is stored.
    let json = serde_json::to_string(&state).unwrap();
    assert!(!json.contains(key.secret.as_str()));
    assert!(json.contains(&key.hash.to_hex()));
}

#[test]
fn keys_expire() {
    let (state, key) = keyed_ledger();
    let expiry = T0 + 10 * MINUTE;
    assert!(state.authenticate(&key.secret, expiry - 1).is_ok());
    assert_eq!(
        state.authenticate(&key.secret, expiry).unwrap_err(),
        KeyRejected::Expired {
            id: "k1".into(),
            at: expiry
        }
    );
}

#[test]
fn revoke_key_is_immediate_and_idempotent() {
    let (mut state, key) = keyed_ledger();
    let revision = state.revision();
    ok(&mut state, Command::RevokeKey { id: "k1".into() }, T0 + 5);
    assert_eq!(state.revision(), revision + 1);
    assert_eq!(state.config_revision(), state.revision());
    assert_eq!(
        state.authenticate(&key.secret, T0 + 6).unwrap_err(),
        KeyRejected::Revoked {
            id: "k1".into(),
            at: T0 + 5
        }
    );
    assert_eq!(
        ok(&mut state, Command::RevokeKey { id: "k1".into() }, T0 + 9),
        Effect::Written { changed: false }
    );
    assert_eq!(state.keys()["k1"].revoked_at, Some(T0 + 5));
}

#[test]
fn create_key_validation() {
    let (mut state, key) = keyed_ledger();
    let again = NewKey::from_generated("k1", "dup id", &generate_key().unwrap());
    assert_eq!(
        err(&mut state, Command::CreateKey(again), T0),
        LedgerError::AlreadyExists {
            kind: ObjectKind::Key,
            id: "k1".into()
        }
    );
    let same_hash = NewKey::from_generated("k2", "same key", &key);
    assert!(matches!(
        err(&mut state, Command::CreateKey(same_hash), T0),
        LedgerError::Invalid { field, .. } if field == "key.hash"
    ));
    let mut unknown_endpoint = NewKey::from_generated("k3", "", &generate_key().unwrap());
    unknown_endpoint.endpoints = vec!["nope".into()];
    assert_eq!(
        err(&mut state, Command::CreateKey(unknown_endpoint), T0),
        LedgerError::not_found(ObjectKind::Endpoint, "nope")
    );
    let mut past = NewKey::from_generated("k4", "", &generate_key().unwrap());
    past.expires_at = Some(T0);
    assert!(matches!(
        err(&mut state, Command::CreateKey(past), T0),
        LedgerError::Invalid { field, .. } if field == "key.expires_at"
    ));
    // A user in one team cannot own a key of another team.
    ok(
        &mut state,
        Command::PutTeam(Team {
            id: "ops".into(),
            name: "Ops".into(),
        }),
        T0,
    );
    ok(
        &mut state,
        Command::PutUser(User {
            id: "bob".into(),
            name: "Bob".into(),
            team: Some("ops".into()),
        }),
        T0,
    );
    let mut mismatch = NewKey::from_generated("k5", "", &generate_key().unwrap());
    mismatch.user = Some("bob".into());
    mismatch.team = Some("research".into());
    assert!(matches!(
        err(&mut state, Command::CreateKey(mismatch), T0),
        LedgerError::Invalid { field, .. } if field == "key.team"
    ));
    // An endpoint on a key's allow-list cannot be deleted.
    assert!(matches!(
        err(
            &mut state,
            Command::DeleteEndpoint {
                name: "chat".into()
            },
            T0
        ),
        LedgerError::InUse {
            by_kind: ObjectKind::Key,
            ..
        }
    ));
}

#[test]
fn delete_key() {
    let (mut state, key) = keyed_ledger();
    let mut spec = budget("k1-daily", 1_000, Window::Day, Action::Reject);
    spec.scope.key = Some("k1".into());
    ok(&mut state, Command::PutBudget(spec), T0);
    assert!(matches!(
        err(&mut state, Command::DeleteKey { id: "k1".into() }, T0),
        LedgerError::InUse {
            by_kind: ObjectKind::Budget,
            ..
        }
    ));
    ok(
        &mut state,
        Command::DeleteBudget {
            id: "k1-daily".into(),
        },
        T0,
    );
    ok(&mut state, Command::DeleteKey { id: "k1".into() }, T0);
    assert_eq!(
        state.authenticate(&key.secret, T0).unwrap_err(),
        KeyRejected::Unknown
    );
}

#[test]
fn batches_are_all_or_nothing_with_one_revision() {
    let mut state = LedgerState::new();
    let before = state.clone();
    let error = err(
        &mut state,
        Command::Batch(vec![
            Command::PutEndpoint(endpoint("chat")),
            Command::PutEndpoint(endpoint("bad name")),
        ]),
        T0,
    );
    assert!(matches!(error, LedgerError::Batch { index: 1, .. }));
    assert_eq!(state.endpoints(), before.endpoints());
    let applied = run(
        &mut state,
        Command::Batch(vec![
            Command::PutEndpoint(endpoint("chat")),
            Command::PutEndpoint(endpoint("embed")),
            Command::PutBudget(budget("b", 10, Window::Day, Action::Reject)),
        ]),
        T0,
    )
    .unwrap();
    assert_eq!(applied.revision, 1);
    assert!(matches!(applied.effect, Effect::Batch(effects) if effects.len() == 3));
    assert_eq!(
        err(&mut state, Command::Batch(vec![Command::Batch(vec![])]), T0),
        LedgerError::Batch {
            index: 0,
            error: Box::new(LedgerError::NestedBatch)
        }
    );
}

#[test]
fn budgets_for_a_request() {
    let (mut state, _) = keyed_ledger();
    ok(
        &mut state,
        Command::PutBudget(budget("global", 10, Window::Day, Action::Reject)),
        T0,
    );
    let mut team = budget("team", 10, Window::Day, Action::Reject);
    team.scope.team = Some("research".into());
    ok(&mut state, Command::PutBudget(team), T0);
    let mut embed = budget("embed", 10, Window::Day, Action::Reject);
    embed.scope.endpoint = Some("embed".into());
    ok(&mut state, Command::PutBudget(embed), T0);
    let subject = Subject {
        endpoint: "chat",
        team: Some("research"),
        user: None,
        key: Some("k1"),
    };
    let ids: Vec<&str> = state
        .budgets_for(&subject)
        .map(|b| b.spec.id.as_str())
        .collect();
    assert_eq!(ids, ["global", "team"]);
}

#[test]
fn state_survives_a_serde_round_trip() {
    let (mut state, _) = keyed_ledger();
    ok(
        &mut state,
        Command::PutBudget(budget("b", 1_000, Window::Week, Action::Reject)),
        T0,
    );
    granted(ok(&mut state, ask("b", "edge-1", 10), T0));
    let json = serde_json::to_string(&state).unwrap();
    let back: LedgerState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, state);
    back.check_invariants().unwrap();
}
