//! Provider credentials at rest in the ledger: the serialized state (the Raft snapshot) and
//! the serialized commands (the Raft log) never hold a plaintext secret; APIs see only the
//! masked form; tampered or transplanted ciphertext does not open; KEK rotation through
//! ledger commands leaves every credential readable with the new KEK alone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use floodgate_cluster::ledger::*;
use floodgate_cluster::secrets::{Kek, Keyring, SecretError};

const T0: u64 = 1_742_042_096_789;
const OPENAI: &str = "sk-proj-Zq8sV3nW0pXy7Tb2Lm4Rk9Hd6Jf1Gc5Ae3Ub8Yw";
const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const AWS_TOKEN: &str = "FwoGZXIvYXdzEXAMPLESESSIONTOKENvalue0123456789";
const SERVICE_ACCOUNT: &str = r#"{"type":"service_account","private_key":"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n","client_email":"svc@proj.iam.gserviceaccount.com"}"#;

fn plaintexts() -> [&'static str; 4] {
    [OPENAI, AWS_SECRET, AWS_TOKEN, SERVICE_ACCOUNT]
}

/// Distinctive pieces of each plaintext that must not appear either.
fn fragments() -> Vec<&'static str> {
    vec![
        "Zq8sV3nW0pXy7Tb2",
        "wJalrXUtnFEMI",
        "EXAMPLESESSIONTOKEN",
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
        "BEGIN PRIVATE KEY",
    ]
}

fn credentials(kek: &Kek) -> Vec<ProviderCredential> {
    vec![
        ProviderCredential::api_key(kek, "openai", OPENAI).unwrap(),
        ProviderCredential::aws(kek, "bedrock", "AKIAEXAMPLE", AWS_SECRET, Some(AWS_TOKEN))
            .unwrap(),
        ProviderCredential::service_account(kek, "vertex", SERVICE_ACCOUNT).unwrap(),
    ]
}

fn assert_no_plaintext(what: &str, text: &str) {
    for secret in plaintexts() {
        assert!(!text.contains(secret), "{what} holds a plaintext secret");
    }
    for fragment in fragments() {
        assert!(!text.contains(fragment), "{what} holds `{fragment}`");
    }
}

fn ledger_with_credentials(kek: &Kek) -> (LedgerState, Vec<Command>) {
    let mut state = LedgerState::new();
    let commands: Vec<Command> = credentials(kek)
        .into_iter()
        .map(Command::PutCredential)
        .collect();
    for command in &commands {
        apply(&mut state, command.clone(), T0).unwrap();
    }
    (state, commands)
}

#[test]
fn serialized_state_and_log_never_contain_plaintext() {
    let kek = Kek::from_bytes(1, &[42; 32]).unwrap();
    let (state, commands) = ledger_with_credentials(&kek);
    assert_eq!(state.credentials().len(), 3);
    assert_no_plaintext("snapshot (json)", &serde_json::to_string(&state).unwrap());
    assert_no_plaintext("snapshot (debug)", &format!("{state:?}"));
    for command in &commands {
        assert_no_plaintext("log entry", &serde_json::to_string(command).unwrap());
        assert_no_plaintext("log entry (debug)", &format!("{command:?}"));
    }
    // What APIs show.
    let masked: Vec<MaskedCredential> = state.credentials().values().map(|c| c.masked()).collect();
    assert_no_plaintext("masked views", &serde_json::to_string(&masked).unwrap());
    let openai = &state.credentials()["openai"].masked();
    assert_eq!(openai.masked, "sk-proj-…b8Yw");
    let bedrock = &state.credentials()["bedrock"].masked();
    assert_eq!(bedrock.access_key_id.as_deref(), Some("AKIAEXAMPLE"));
    assert_eq!(state.credentials()["vertex"].masked().masked, "…");
}

#[test]
fn credentials_open_only_with_the_kek() {
    let kek = Kek::from_bytes(1, &[42; 32]).unwrap();
    let (state, _) = ledger_with_credentials(&kek);
    let keyring = Keyring::new(kek);
    match state.credentials()["bedrock"].reveal(&keyring).unwrap() {
        RevealedCredential::Aws {
            access_key_id,
            secret_access_key,
            session_token,
        } => {
            assert_eq!(access_key_id, "AKIAEXAMPLE");
            assert_eq!(secret_access_key.expose(), AWS_SECRET);
            assert_eq!(session_token.unwrap().expose(), AWS_TOKEN);
        }
        other => panic!("expected AWS credentials, got {other:?}"),
    }
    match state.credentials()["vertex"].reveal(&keyring).unwrap() {
        RevealedCredential::ServiceAccount(json) => assert_eq!(json.expose(), SERVICE_ACCOUNT),
        other => panic!("expected a service account, got {other:?}"),
    }
    let wrong = Keyring::new(Kek::from_bytes(1, &[7; 32]).unwrap());
    assert!(matches!(
        state.credentials()["openai"].reveal(&wrong),
        Err(SecretError::Undecryptable { .. })
    ));
}

#[test]
fn tampered_snapshot_does_not_open() {
    let kek = Kek::from_bytes(1, &[42; 32]).unwrap();
    let (state, _) = ledger_with_credentials(&kek);
    let mut snapshot: serde_json::Value = serde_json::to_value(&state).unwrap();
    let sealed = &mut snapshot["credentials"]["openai"]["secret"]["api_key"]["key"];
    let ciphertext = sealed["ciphertext"].as_str().unwrap().to_owned();
    // Flip one base64 character (a different valid character).
    let mut chars: Vec<char> = ciphertext.chars().collect();
    chars[5] = if chars[5] == 'A' { 'B' } else { 'A' };
    sealed["ciphertext"] = serde_json::Value::String(chars.into_iter().collect());
    let tampered: LedgerState = serde_json::from_value(snapshot).unwrap();
    assert!(matches!(
        tampered.credentials()["openai"].reveal(&Keyring::new(kek)),
        Err(SecretError::Undecryptable { part: "secret", .. })
    ));
}

#[test]
fn ciphertext_moved_to_another_credential_does_not_open() {
    let kek = Kek::from_bytes(1, &[42; 32]).unwrap();
    let stolen = ProviderCredential::api_key(&kek, "openai", OPENAI).unwrap();
    let transplanted = ProviderCredential {
        name: "attacker".into(),
        secret: stolen.secret,
    };
    let mut state = LedgerState::new();
    // Its shape is fine, so the ledger stores it, but it opens for no one.
    apply(&mut state, Command::PutCredential(transplanted), T0).unwrap();
    assert!(matches!(
        state.credentials()["attacker"].reveal(&Keyring::new(kek)),
        Err(SecretError::Undecryptable { .. })
    ));
}

#[test]
fn malformed_sealed_values_are_refused() {
    let kek = Kek::from_bytes(1, &[42; 32]).unwrap();
    let good = ProviderCredential::api_key(&kek, "openai", OPENAI).unwrap();
    let mut value = serde_json::to_value(&good).unwrap();
    value["secret"]["api_key"]["key"]["nonce"] = serde_json::Value::String("AAAA".into());
    let bad: ProviderCredential = serde_json::from_value(value).unwrap();
    let mut state = LedgerState::new();
    let error = apply(&mut state, Command::PutCredential(bad), T0).unwrap_err();
    assert!(
        matches!(&error, LedgerError::Invalid { field, reason } if field == "credentials.openai/api_key" && reason.contains("nonce")),
        "{error:?}"
    );
    assert!(state.credentials().is_empty());
}

#[test]
fn kek_rotation_through_ledger_commands() {
    let v1 = Kek::from_bytes(1, &[1; 32]).unwrap();
    let v2 = Kek::derive(2, "a long operator passphrase", b"cluster-id-0123456789").unwrap();
    let (mut state, _) = ledger_with_credentials(&v1);
    let before = serde_json::to_value(&state).unwrap();

    let keyring = Keyring::new(v1.clone()).rotate_to(v2.clone()).unwrap();
    let commands = state.rotation_commands(&keyring).unwrap();
    assert_eq!(commands.len(), 3);
    let revision = state.revision();
    apply(&mut state, Command::Batch(commands), T0 + 1).unwrap();
    assert_eq!(state.revision(), revision + 1);
    state.check_invariants().unwrap();
    assert!(state.credentials().values().all(|c| c.kek_version() == 2));
    assert!(
        state.rotation_commands(&keyring).unwrap().is_empty(),
        "rotation is done"
    );

    // The secrets' own ciphertext did not change; only the wrapped data keys did.
    let after = serde_json::to_value(&state).unwrap();
    let openai =
        |v: &serde_json::Value| v["credentials"]["openai"]["secret"]["api_key"]["key"].clone();
    assert_eq!(openai(&before)["ciphertext"], openai(&after)["ciphertext"]);
    assert_ne!(
        openai(&before)["wrapped_key"],
        openai(&after)["wrapped_key"]
    );
    assert_no_plaintext("rotated snapshot", &serde_json::to_string(&state).unwrap());

    // The old KEK can be retired: the new one alone opens everything.
    let only_v2 = Keyring::new(v2);
    for credential in state.credentials().values() {
        credential.reveal(&only_v2).unwrap();
    }
    assert!(matches!(
        state.credentials()["openai"].reveal(&Keyring::new(v1)),
        Err(SecretError::UnknownKekVersion { version: 2, .. })
    ));
}
