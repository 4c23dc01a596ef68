//! The real binary as a projector: known events published to a real NATS JetStream (one of
//! them twice, as a publisher retry after the duplicate window would), folded by
//! `serve --roles projector --config`, read back with `ctl usage` and `ctl traces` (tables
//! and `--json`); garbage bytes and an envelope of an unknown schema version are parked
//! (`ctl usage --parked`) while the events after them are folded; then `projector rebuild`
//! replays the stream into a new store with the same totals.

use std::io::Read;
use std::process::{Command, Stdio};

use std::time::Duration;

use floodgate_events::envelope;
use floodgate_events::stream::{self, StreamSettings};
use floodgate_events::testing::NatsServer;
use floodgate_proto::v1::{TokenCounts, UsageEvent};
use serde_json::Value;

use crate::common::wait_until;

const BIN: &str = env!("CARGO_BIN_EXE_floodgate");
const FROM: i64 = 1_795_132_800;

fn event(i: u64, key: &str, status: u32, cost: u64) -> UsageEvent {
    UsageEvent {
        event_id: format!("ev-{i}"),
        request_id: format!("req-{i}"),
        time_unix_us: (FROM + i as i64 * 60) * 1_000_000,
        endpoint: "chat".into(),
        model: "gpt-4o".into(),
        key_id: key.into(),
        status,
        tokens: Some(TokenCounts {
            input: 100,
            output: 10,
            ..TokenCounts::default()
        }),
        cost_micros: Some(cost),
        total_latency_us: 20_000,
        ..UsageEvent::default()
    }
}

/// Publishes `event` to the usage stream with its id as `Nats-Msg-Id`, after the stream's
/// duplicate window has been set to one second so a republish counts as new for NATS.
async fn publish(js: &async_nats::jetstream::Context, event: &UsageEvent) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", event.event_id.as_str());
    js.publish_with_headers(stream::subject("0"), headers, envelope::encode(event))
        .await
        .unwrap()
        .await
        .unwrap();
}

/// Publishes `bytes` as they are (not an event) to the usage stream.
async fn publish_raw(js: &async_nats::jetstream::Context, id: &str, bytes: &'static [u8]) -> u64 {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", id);
    js.publish_with_headers(stream::subject("0"), headers, bytes.into())
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence
}

/// A protobuf `EventEnvelope { version: 2, event: b"" }`: field 1 (varint) 2, field 2
/// (bytes) empty.
const VERSION_2: &[u8] = b"\x08\x02\x12\x00";
const GARBAGE: &[u8] = b"\xff\xfe not an envelope";

fn ctl(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(BIN).arg("ctl").args(args).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn ctl_usage_and_traces_read_a_projector_served_by_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start().await.unwrap();
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let settings = StreamSettings {
        duplicate_window: Duration::from_secs(1),
        ..StreamSettings::default()
    };
    stream::ensure_stream(&js, &settings).await.unwrap();
    let events = [
        event(1, "k1", 200, 1_000_000),
        event(2, "k1", 200, 500_000),
        event(3, "k2", 502, 250),
    ];
    for event in &events {
        publish(&js, event).await;
    }
    let config = dir.path().join("projector.yaml");
    std::fs::write(
        &config,
        format!(
            "events:\n  backend: nats\n  nats: {{urls: [\"{}\"]}}\n  spool: {{dir: \"{}\"}}\n",
            nats.url(),
            dir.path().join("spool").display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let store = dir.path().join("projection");
    let data_dir = store.to_str().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--roles",
            "projector",
            "--config",
            config,
            "--data-dir",
            data_dir,
        ])
        .args([
            "--projector-listen",
            "127.0.0.1:0",
            "--usage-listen",
            "127.0.0.1:0",
        ])
        .env("FLOODGATE_LOG_FORMAT", "json")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut child = KillOnDrop(child);
    let lines = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = lines.clone();
    let reader = std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut chunk) {
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    let url = wait_until("the usage API's listening line", || {
        lines.lock().unwrap().lines().find_map(|line| {
            let json: Value = serde_json::from_str(line).ok()?;
            let http = json["fields"]["http"].as_str().or(json["http"].as_str())?;
            Some(format!("http://{http}"))
        })
    })
    .await;
    let range = [
        "--from",
        &FROM.to_string(),
        "--to",
        &(FROM + 3_600).to_string(),
    ];
    let projector = ["--projector", url.as_str()];
    let requests = |key: &'static str| {
        let url = url.clone();
        async move {
            let top: Value = crate::common::client()
                .get(format!(
                    "{url}/usage/v1/top?from={FROM}&to={}&dimension=key&by=requests",
                    FROM + 3_600
                ))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            top["entries"]
                .as_array()?
                .iter()
                .find(|e| e["value"] == key)?["requests"]
                .as_u64()
        }
    };
    let deadline = tokio::time::Instant::now() + crate::common::DEADLINE;
    while requests("k1").await != Some(2) || requests("k2").await != Some(1) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the projector never folded the events"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The same event again after NATS forgot its id: a new stream message, counted once.
    loop {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", events[1].event_id.as_str());
        let ack = js
            .publish_with_headers(stream::subject("0"), headers, envelope::encode(&events[1]))
            .await
            .unwrap()
            .await
            .unwrap();
        if !ack.duplicate {
            assert_eq!(ack.sequence, 4);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "NATS kept the id");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_stream(stream::STREAM)
        .await
        .unwrap()
        .get_consumer("floodgate-projector")
        .await
        .unwrap();
    loop {
        let info = consumer.info().await.unwrap();
        if info.ack_floor.stream_sequence == 4 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the projector never acked the republish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        requests("k1").await,
        Some(2),
        "the republished event counted once"
    );

    let (ok, table, stderr) =
        ctl(&[&["usage", "--group-by", "key"][..], &range, &projector].concat());
    assert!(ok, "{stderr}");
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0][..4], ["key", "requests", "errors", "err%"]);
    assert_eq!(rows[1][..3], ["k1", "2", "0"]);
    assert!(rows[1].contains(&"$1.500000"), "{table}");
    assert_eq!(rows[2][..4], ["k2", "1", "1", "100.0"]);

    let (ok, json, _) = ctl(&[
        &["usage", "--top", "key", "--by", "cost", "--json"][..],
        &range,
        &projector,
    ]
    .concat());
    assert!(ok);
    let top: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(top["entries"][0]["value"], "k1");
    assert_eq!(top["entries"][0]["cost_micros"], 1_500_000);

    let (ok, table, _) = ctl(&[&["traces", "--status", "5xx"][..], &range, &projector].concat());
    assert!(ok);
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(table.contains("req-3"));
    let (ok, json, _) = ctl(&[&["traces", "--id", "req-2"][..], &projector].concat());
    assert!(ok);
    let trace: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(trace["trace"]["event_id"], "ev-2");

    let (ok, _, stderr) =
        ctl(&[&["usage", "--group-by", "colour"][..], &range, &projector].concat());
    assert!(!ok);
    assert!(stderr.contains("unknown_group_by"), "{stderr}");

    // Bad messages are parked, and the event after them is folded.
    assert_eq!(publish_raw(&js, "bad-1", GARBAGE).await, 5);
    assert_eq!(publish_raw(&js, "bad-2", VERSION_2).await, 6);
    publish(&js, &event(5, "k2", 200, 750)).await;
    let stats = || {
        let url = url.clone();
        async move {
            let stats: Value = crate::common::client()
                .get(format!("{url}/usage/v1/stats"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            Some(stats)
        }
    };
    let folded = crate::common::eventually(
        "the event after the bad ones",
        crate::common::DEADLINE,
        || async {
            let stats = stats().await?;
            (requests("k2").await == Some(2) && stats["parked"] == 2).then_some(stats)
        },
    )
    .await;
    assert_eq!(folded["undecodable"], 2, "{folded}");
    let (ok, json, stderr) = ctl(&[&["usage", "--parked", "--json"][..], &projector].concat());
    assert!(ok, "{stderr}");
    let parked: Value = serde_json::from_str(&json).unwrap();
    let parked = parked["parked"].as_array().unwrap().clone();
    assert_eq!(parked.len(), 2, "{json}");
    assert_eq!(parked[0]["sequence"], 5);
    assert!(
        parked[0]["reason"]
            .as_str()
            .unwrap()
            .contains("not an event envelope"),
        "{json}"
    );
    assert_eq!(parked[0]["size"], GARBAGE.len());
    assert!(
        parked[0]["payload_hex"]
            .as_str()
            .unwrap()
            .starts_with("fffe")
    );
    assert_eq!(parked[1]["sequence"], 6);
    assert_eq!(parked[1]["reason"], "unknown event schema version 2");
    assert_eq!(parked[1]["payload_hex"], "08021200");
    let (ok, table, _) = ctl(&[&["usage", "--parked", "--limit", "1"][..], &projector].concat());
    assert!(ok);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("sequence"), "{table}");
    assert!(lines[1].starts_with("5 "), "{table}");
    assert_eq!(lines[2], "more: --after 5", "{table}");
    let (ok, table, _) = ctl(&[&["usage", "--group-by", "key"][..], &range, &projector].concat());
    assert!(ok);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[1][..3],
        ["k1", "2", "0"],
        "exact totals after the bad messages"
    );
    assert_eq!(rows[2][..4], ["k2", "2", "1", "50.0"], "{table}");
    assert!(rows[2].contains(&"$0.001000"), "{table}");

    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let status = wait_until("the projector to exit", || child.0.try_wait().unwrap()).await;
    assert!(status.success());
    reader.join().unwrap();

    // A rebuild replays the whole stream into a new store: the same events, the duplicate
    // skipped.
    let rebuilt = dir.path().join("rebuilt");
    let output = Command::new(BIN)
        .args(["projector", "rebuild", "--config", config, "--data-dir"])
        .arg(&rebuilt)
        .args(["--consumer", "rebuild-test"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("4 events folded, 1 duplicates skipped, 2 undecodable"),
        "{text}"
    );
}

/// The projector process, killed if the test fails before stopping it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
