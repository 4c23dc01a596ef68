//! Hot reload, in process: a config file in a temporary directory, a real edge serving it, and
//! `config::watch::watch` applying each change to the running gateway. Every wait is on an
//! observable condition (the config generation, a log line, the upstream's request count)
//! with a deadline.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::common;
use crate::common::upstream::Upstream;
use crate::common::{TestGateway, client, wait_until, within};
use floodgate::config::{self, Mode};
use futures::StreamExt;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

// ---------------------------------------------------------------------------------------
// Log capture: the watcher reports an ignored change only as a warning, so the tests read
// the log to know that a bad write was seen (and rejected) rather than merely not yet read.

/// Everything logged by any test of this binary, as JSON lines.
fn log_buffer() -> &'static Mutex<Vec<u8>> {
    static BUFFER: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    BUFFER.get_or_init(|| Mutex::new(Vec::new()))
}

struct Captured;

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        log_buffer().lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber once for the whole test binary.
fn capture_logs() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_max_level(tracing::Level::INFO)
            .with_writer(|| Captured)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
}

/// Every captured log line, parsed.
fn log_lines() -> Vec<Value> {
    let text = String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned();
    text.lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The `error` of every "config change ignored" warning about `path`.
fn ignored_changes(path: &Path) -> Vec<String> {
    let path = path.display().to_string();
    log_lines()
        .into_iter()
        .filter(|line| line["path"] == path.as_str())
        .filter(|line| {
            line["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("config change ignored"))
        })
        .map(|line| line["error"].as_str().unwrap_or_default().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------
// The harness: a watched config file and the edge it drives.

struct Reloading {
    gw: TestGateway,
    path: PathBuf,
    dir: TempDir,
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Reloading {
    /// Writes `yaml` to a fresh directory, serves it, and watches the file.
    async fn start(yaml: &str, env: HashMap<String, String>) -> Self {
        capture_logs();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("floodgate.yaml");
        std::fs::write(&path, yaml).unwrap();
        let loaded = config::load_file(&path, Mode::Serve, &env).unwrap();
        let gw = TestGateway::start(loaded).await;
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let gateway = gw.gateway.clone();
        config::watch::watch(
            &path,
            Mode::Serve,
            Box::new(env),
            stop.clone(),
            &tracker,
            move |cfg| {
                gateway.apply(cfg);
            },
        )
        .unwrap();
        tracker.close();
        Self {
            gw,
            path,
            dir,
            stop,
            tracker,
        }
    }

    fn generation(&self) -> u64 {
        self.gw.gateway.runtime().generation
    }

    /// Waits until the applied config generation is `n`.
    async fn wait_generation(&self, n: u64) {
        wait_until(&format!("config generation {n}"), || {
            (self.generation() >= n).then_some(())
        })
        .await;
        assert_eq!(
            self.generation(),
            n,
            "more reloads were applied than written"
        );
    }

    /// Rewrites the file in place.
    fn write(&self, yaml: &str) {
        std::fs::write(&self.path, yaml).unwrap();
    }

    /// Replaces the file atomically (write a sibling, rename over), so the watcher can never
    /// read it half-written.
    fn replace(&self, yaml: &str) {
        let staged = self.dir.path().join("staged.yaml");
        std::fs::write(&staged, yaml).unwrap();
        std::fs::rename(&staged, &self.path).unwrap();
    }

    /// Waits for an ignored change of this file whose error contains `needle`.
    async fn wait_ignored(&self, needle: &str) -> String {
        wait_until(&format!("an ignored change mentioning `{needle}`"), || {
            ignored_changes(&self.path)
                .into_iter()
                .find(|error| error.contains(needle))
        })
        .await
    }

    async fn chat(&self, endpoint: &str) -> (u16, Value) {
        post_chat(&self.gw, endpoint, None).await
    }
}

impl Drop for Reloading {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn post_chat(gw: &TestGateway, endpoint: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = client().post(gw.url("/v1/chat/completions")).json(
        &json!({"model": endpoint, "messages": [{"role": "user", "content": "hello there"}]}),
    );
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn mock_endpoint(name: &str, model: &str) -> String {
    format!(
        "  - name: {name}\n    kind: chat\n    targets:\n      - {{provider: mock, model: {model}}}\n"
    )
}

fn upstream_endpoint(name: &str, model: &str, upstream: &Upstream) -> String {
    format!(
        "  - name: {name}\n    kind: chat\n    targets:\n      - provider: openai\n        model: {model}\n        api_base: {}\n        credentials: {{api_key: \"${{UPSTREAM_KEY}}\"}}\n",
        upstream.base()
    )
}

fn open_config(endpoints: &[String]) -> String {
    format!("auth: none\nendpoints:\n{}", endpoints.concat())
}

fn no_env() -> HashMap<String, String> {
    HashMap::new()
}

fn assert_not_found(status: u16, body: &Value, endpoint: &str) {
    assert_eq!(status, 404, "{endpoint}: {body}");
    assert_eq!(body["error"]["code"], "model_not_found", "{body}");
}

// ---------------------------------------------------------------------------------------

/// (a) An endpoint added to the file is served without a restart, the existing one keeps
/// answering, and exactly one new generation is applied.
#[tokio::test]
async fn an_endpoint_added_to_the_file_is_served() {
    let node = Reloading::start(&open_config(&[mock_endpoint("old", "echo")]), no_env()).await;
    assert_eq!(node.generation(), 1);
    let (status, body) = node.chat("new").await;
    assert_not_found(status, &body, "new");

    node.write(&open_config(&[
        mock_endpoint("old", "echo"),
        mock_endpoint("new", "echo"),
    ]));
    node.wait_generation(2).await;

    let (status, body) = node.chat("new").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "hello there");
    let (status, _) = node.chat("old").await;
    assert_eq!(status, 200);
    let ready: Value = client()
        .get(node.gw.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["config_generation"], 2);
    assert_eq!(ready["endpoints"], 2);
}

/// (b) Invalid YAML, then a well-formed but invalid config, are each read, logged with the
/// failing field path (and with environment secrets scrubbed), and ignored: the old config
/// keeps serving at the same generation, and the watcher still applies the next valid
/// write, as exactly one new generation.
#[tokio::test]
async fn invalid_changes_are_ignored_and_the_old_config_keeps_serving() {
    let secret = "sk-kind-secret-do-not-log-4242";
    let env = HashMap::from([("WEIRD_KIND".to_owned(), secret.to_owned())]);
    let node = Reloading::start(&open_config(&[mock_endpoint("old", "echo")]), env).await;
    assert_eq!(node.generation(), 1);

    node.replace("auth: none\nendpoints: [ {name: broken\n");
    node.wait_ignored("invalid YAML").await;
    assert_eq!(node.generation(), 1);
    let (status, body) = node.chat("old").await;
    assert_eq!(status, 200, "{body}");

    // Parses, but fails validation; the bad value comes from the environment.
    node.replace(
        "auth: none\nendpoints:\n  - name: new\n    kind: ${WEIRD_KIND}\n    targets:\n      - {provider: mock, model: echo}\n",
    );
    let error = node.wait_ignored("endpoints[0].kind").await;
    assert!(!error.contains(secret), "secret in the warning: {error}");
    assert_eq!(node.generation(), 1);
    let (status, body) = node.chat("old").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = node.chat("new").await;
    assert_not_found(status, &body, "new");

    // A file emptied by a crashed editor: serve mode requires auth, so it is invalid too.
    node.replace("");
    node.wait_ignored("gateway keys are required").await;
    assert_eq!(node.generation(), 1);

    node.replace(&open_config(&[mock_endpoint("new", "echo")]));
    node.wait_generation(2).await;
    let (status, body) = node.chat("new").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = node.chat("old").await;
    assert_not_found(status, &body, "old");
    let everything = String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned();
    assert!(
        !everything.contains(secret),
        "an env secret reached the log"
    );
}

/// (c) A request in flight when its endpoint is removed completes with 200 (it keeps the
/// snapshot it started with); new requests to the removed endpoint get 404.
#[tokio::test]
async fn an_in_flight_request_survives_a_reload_that_removes_its_endpoint() {
    let upstream = Upstream::start().await;
    let keep = mock_endpoint("keep", "echo");
    let node = Reloading::start(
        &open_config(&[keep.clone(), upstream_endpoint("gated", "gate", &upstream)]),
        common::upstream::env(),
    )
    .await;

    let url = node.gw.url("/v1/chat/completions");
    let in_flight = tokio::spawn(async move {
        let response = client()
            .post(url)
            .json(&json!({"model": "gated", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.unwrap())
    });
    // The request has passed routing once the upstream has it; the upstream holds it.
    wait_until("the request to reach the upstream", || {
        (upstream.count() == 1).then_some(())
    })
    .await;

    node.write(&open_config(&[keep]));
    node.wait_generation(2).await;
    let (status, body) = node.chat("gated").await;
    assert_not_found(status, &body, "gated");
    assert_eq!(upstream.count(), 1, "the 404 must not reach the upstream");
    assert!(
        !in_flight.is_finished(),
        "the request must still be in flight"
    );

    upstream.open_gate();
    let (status, body) = within("the in-flight request", in_flight).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from upstream"
    );
    let records = node.gw.usage.wait_for(2).await;
    let record = records
        .iter()
        .find(|r| r.endpoint.as_deref() == Some("gated") && r.status == 200)
        .expect("usage record of the in-flight request");
    assert_eq!(record.model.as_deref(), Some("gate"));
}

/// (c, streamed) A stream open across a reload that removes its endpoint runs to `[DONE]`.
#[tokio::test]
async fn an_open_stream_survives_a_reload_that_removes_its_endpoint() {
    let upstream = Upstream::start().await;
    let keep = mock_endpoint("keep", "echo");
    let node = Reloading::start(
        &open_config(&[keep.clone(), upstream_endpoint("held", "hold", &upstream)]),
        common::upstream::env(),
    )
    .await;

    let response = client()
        .post(node.gw.url("/v1/chat/completions"))
        .json(&json!({"model": "held", "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while !text.contains("Hello") {
        let chunk = within("the first chunk", body.next()).await;
        text.push_str(&String::from_utf8_lossy(
            &chunk.expect("stream open").unwrap(),
        ));
    }

    node.write(&open_config(&[keep]));
    node.wait_generation(2).await;
    let (status, json) = node.chat("held").await;
    assert_not_found(status, &json, "held");

    // `release` wakes only a waiting upstream stream, so repeat it until the stream ends.
    let releaser = {
        let upstream = upstream.clone();
        tokio::spawn(async move {
            loop {
                upstream.release();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let rest = within("the rest of the stream", async {
        while let Some(chunk) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
        text
    })
    .await;
    releaser.abort();
    assert!(rest.contains(" later"), "{rest}");
    assert!(rest.trim_end().ends_with("data: [DONE]"), "{rest}");
}

/// (d) An editor that writes a temporary file and renames it over the config is seen.
#[tokio::test]
async fn a_file_replaced_by_rename_is_picked_up() {
    let node = Reloading::start(&open_config(&[mock_endpoint("old", "echo")]), no_env()).await;
    let staged = node.dir.path().join(".floodgate.yaml.swp");
    std::fs::write(
        &staged,
        open_config(&[
            mock_endpoint("old", "echo"),
            mock_endpoint("renamed", "echo"),
        ]),
    )
    .unwrap();
    std::fs::rename(&staged, &node.path).unwrap();
    node.wait_generation(2).await;
    let (status, body) = node.chat("renamed").await;
    assert_eq!(status, 200, "{body}");

    // And again: the watch survives the inode swap.
    std::fs::write(&staged, open_config(&[mock_endpoint("third", "echo")])).unwrap();
    std::fs::rename(&staged, &node.path).unwrap();
    node.wait_generation(3).await;
    let (status, body) = node.chat("third").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = node.chat("renamed").await;
    assert_not_found(status, &body, "renamed");
}

/// Key rotation by reload: the old gateway key stops working and the new one starts.
#[tokio::test]
async fn rotating_gateway_keys_by_reload_takes_effect() {
    let keys = |key: &str| {
        format!(
            "keys:\n  - {{id: team, key: {key}}}\nendpoints:\n{}",
            mock_endpoint("chat", "echo")
        )
    };
    let node = Reloading::start(&keys("fg-key-before-rotation"), no_env()).await;
    let (status, _) = post_chat(&node.gw, "chat", Some("fg-key-before-rotation")).await;
    assert_eq!(status, 200);
    let (status, _) = post_chat(&node.gw, "chat", Some("fg-key-after-rotation")).await;
    assert_eq!(status, 401);

    node.write(&keys("fg-key-after-rotation"));
    node.wait_generation(2).await;
    let (status, _) = post_chat(&node.gw, "chat", Some("fg-key-after-rotation")).await;
    assert_eq!(status, 200);
    let (status, body) = post_chat(&node.gw, "chat", Some("fg-key-before-rotation")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_api_key");
}

/// A reload that leaves an endpoint's rate limit as it was keeps its window (no free
/// quota from reloading); a changed limit starts a fresh window.
#[tokio::test]
async fn a_reload_keeps_rate_limit_windows_unless_the_limit_changes() {
    let limited = |calls: u32, extra: &str| {
        format!(
            "auth: none\nendpoints:\n  - name: limited\n    kind: chat\n    rate_limit: {{calls: {calls}, renewal_period: hour}}\n    targets:\n      - {{provider: mock, model: echo}}\n{extra}"
        )
    };
    let node = Reloading::start(&limited(2, ""), no_env()).await;
    for _ in 0..2 {
        assert_eq!(node.chat("limited").await.0, 200);
    }
    assert_eq!(node.chat("limited").await.0, 429);

    node.write(&limited(2, &mock_endpoint("other", "echo")));
    node.wait_generation(2).await;
    assert_eq!(node.chat("other").await.0, 200);
    let (status, body) = node.chat("limited").await;
    assert_eq!(
        status, 429,
        "the window was reset by an unrelated reload: {body}"
    );

    node.write(&limited(3, ""));
    node.wait_generation(3).await;
    let (status, body) = node.chat("limited").await;
    assert_eq!(status, 200, "a changed limit starts a new window: {body}");
}

/// Cancelling the watch ends its task (so shutdown is not held up by it) and later writes
/// are not applied.
#[tokio::test]
async fn cancelling_the_watch_ends_the_watcher() {
    let node = Reloading::start(&open_config(&[mock_endpoint("old", "echo")]), no_env()).await;
    // Prove the watcher is live first.
    node.write(&open_config(&[mock_endpoint("two", "echo")]));
    node.wait_generation(2).await;

    node.stop.cancel();
    within("the watch task to end", node.tracker.wait()).await;
    node.write(&open_config(&[mock_endpoint("three", "echo")]));
    assert_eq!(node.generation(), 2);
}
