//! The real binary as a projector: `serve --roles projector` over a store holding known
//! events, read back with `ctl usage` and `ctl traces` (tables and `--json`).

use std::io::Read;
use std::process::{Command, Stdio};

use floodgate_events::Delivered;
use floodgate_projector::Projection;
use floodgate_proto::v1::{TokenCounts, UsageEvent};
use serde_json::Value;

use crate::common::wait_until;

const BIN: &str = env!("CARGO_BIN_EXE_floodgate");
const FROM: i64 = 1_795_132_800;

fn event(i: u64, key: &str, status: u32, cost: u64) -> Delivered {
    Delivered {
        sequence: i,
        event: UsageEvent {
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
        },
    }
}

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
    let store = dir.path().join("projection");
    {
        let projection = Projection::open(&store).unwrap();
        let batch = [
            event(1, "k1", 200, 1_000_000),
            event(2, "k1", 200, 500_000),
            event(3, "k2", 502, 250),
        ];
        projection.fold(&batch, 1).unwrap();
        projection.flush().await.unwrap();
    }
    let data_dir = store.to_str().unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--roles", "projector", "--data-dir", data_dir])
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

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = wait_until("the projector to exit", || child.try_wait().unwrap()).await;
    assert!(status.success());
    reader.join().unwrap();
}
