//! The real `floodgate` binary as an operator runs it: `dev`, `serve --config`, `config
//! check`, `version`. Output is read by threads into buffers that the tests poll with
//! deadlines; the process is stopped with SIGTERM through the `kill` command.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::upstream::{UPSTREAM_KEY, Upstream};
use crate::common::{DEADLINE, client, eventually, send, wait_until};
use floodgate_events::{EventSource, LocalLog};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_floodgate");
/// How long a process may take to start listening: an edge first loads its config from
/// the ledger, and several processes start at once on a loaded machine.
const PROCESS_START: Duration = Duration::from_secs(30);
/// How many lines of each output stream a failed wait for output shows.
const TAIL_LINES: usize = 40;

/// Captured output of one stream of the child.
pub(crate) type Buffer = Arc<Mutex<String>>;

fn drain(stream: impl Read + Send + 'static) -> (Buffer, JoinHandle<()>) {
    let buffer = Buffer::default();
    let sink = buffer.clone();
    let thread = std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&line));
            line.clear();
        }
    });
    (buffer, thread)
}

/// A running `floodgate` process.
pub(crate) struct Node {
    child: Child,
    /// The arguments it was started with, to name it in failure messages.
    args: String,
    stdout: Buffer,
    stderr: Buffer,
    readers: Vec<JoinHandle<()>>,
    /// `dev`'s data dir (its ledger, key file, spool and event log), removed with the node.
    data: tempfile::TempDir,
}

impl Node {
    /// Starts the binary with `args`; `env` is added to a copy of the test's environment
    /// from which the variables that change logging are removed.
    pub(crate) fn spawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut command = Command::new(BIN);
        command.args(args);
        if args.first() == Some(&"dev") {
            // Each dev node gets its own ledger data and admin port (tests run in parallel).
            command
                .arg("--data-dir")
                .arg(data.path())
                .args(["--admin-listen", "127.0.0.1:0"])
                .args(["--usage-listen", "127.0.0.1:0"]);
        }
        command
            .env_remove("RUST_LOG")
            .env_remove("FLOODGATE_LOG_FORMAT")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("the floodgate binary starts");
        let (stdout, out_reader) = drain(child.stdout.take().unwrap());
        let (stderr, err_reader) = drain(child.stderr.take().unwrap());
        Self {
            child,
            args: args.join(" "),
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
            data,
        }
    }

    /// `dev`'s data dir.
    pub(crate) fn data_dir(&self) -> &Path {
        self.data.path()
    }

    pub(crate) fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for the "floodgate listening" log line and returns its address (JSON or text
    /// logs).
    pub(crate) async fn listening(&mut self) -> SocketAddr {
        self.printed("the `floodgate listening` line", listen_address)
            .await
    }

    /// Waits for the JSON log line whose message contains `message` and returns the socket
    /// address in its `field`.
    pub(crate) async fn logged_address(&mut self, message: &str, field: &str) -> SocketAddr {
        self.printed(&format!("the `{message}` line"), |stdout| {
            stdout
                .lines()
                .filter(|line| line.contains(message))
                .find_map(|line| {
                    serde_json::from_str::<Value>(line).ok()?[field]
                        .as_str()?
                        .parse()
                        .ok()
                })
        })
        .await
    }

    /// Polls stdout with `find` until it finds something, failing the test with the tail
    /// of the process's output when the process exits first or [`PROCESS_START`] passes.
    async fn printed<T>(&mut self, what: &str, find: impl Fn(&str) -> Option<T>) -> T {
        let until = tokio::time::Instant::now() + PROCESS_START;
        loop {
            if let Some(found) = find(&self.stdout.lock().unwrap()) {
                return found;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "`floodgate {}` exited with {status} before {what}\n{}",
                    self.args,
                    self.tail()
                );
            }
            assert!(
                tokio::time::Instant::now() < until,
                "timed out after {PROCESS_START:?} waiting for {what} from `floodgate {}`\n{}",
                self.args,
                self.tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The last [`TAIL_LINES`] lines of stdout and of stderr, for failure messages.
    fn tail(&self) -> String {
        let last = |buffer: &Buffer| {
            let text = buffer.lock().unwrap();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
        };
        format!(
            "--- stdout (last {TAIL_LINES} lines) ---\n{}\n--- stderr (last {TAIL_LINES} lines) ---\n{}",
            last(&self.stdout),
            last(&self.stderr)
        )
    }

    /// Sends SIGKILL (by pid, as an operator or the OOM killer would) and reaps the process.
    pub(crate) fn kill(&mut self) {
        let status = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -KILL failed");
        let _ = self.child.wait();
    }

    /// Sends SIGTERM.
    pub(crate) fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit, then for its output to be fully read.
    pub(crate) async fn exited(&mut self) -> ExitStatus {
        let child = &mut self.child;
        let status = wait_until("floodgate to exit", || child.try_wait().unwrap()).await;
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        status
    }

    /// The same, for tests without an async runtime.
    fn exited_blocking(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "floodgate did not exit");
            std::thread::sleep(Duration::from_millis(5));
        };
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        status
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the binary to completion: (exit status, stdout, stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let mut node = Node::spawn(args, env);
    let status = node.exited_blocking();
    (status, node.stdout(), node.stderr())
}

/// The address of the "floodgate listening" line, JSON (`"address"`) or text (`address=`).
fn listen_address(output: &str) -> Option<SocketAddr> {
    output
        .lines()
        .filter(|line| line.contains("floodgate listening"))
        .find_map(|line| match serde_json::from_str::<Value>(line) {
            Ok(json) => json["address"].as_str()?.parse().ok(),
            Err(_) => line
                .split_whitespace()
                .find_map(|field| field.strip_prefix("address="))?
                .parse()
                .ok(),
        })
}

/// Reserves a free loopback port and returns the listener holding it.
pub(crate) fn reserve_port() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

pub(crate) fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// The text of an SSE answer's deltas, and whether it ended with `[DONE]`.
fn sse_text(body: &str) -> (String, Vec<Value>, bool) {
    let mut text = String::new();
    let mut chunks = Vec::new();
    let mut done = false;
    for data in body.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let chunk: Value = serde_json::from_str(data).unwrap();
        if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str() {
            text.push_str(piece);
        }
        chunks.push(chunk);
    }
    (text, chunks, done)
}

// ---------------------------------------------------------------------------------------

/// `floodgate dev`: prints its address, serves the mock `chat` endpoint (plain and
/// streamed), warns loudly on stderr, stops cleanly on SIGTERM with exit 0, and has logged
/// one usage event per request to its local event log by then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_serves_the_mock_and_stops_cleanly_on_sigterm() {
    let mut node = Node::spawn(
        &["dev", "--listen", "127.0.0.1:0"],
        &[("FLOODGATE_LOG_FORMAT", "json")],
    );
    let addr = node.listening().await;
    assert_ne!(addr.port(), 0);
    let prompt = "ping from the binary test";

    let response = client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .json(&json!({"model": "chat", "messages": [{"role": "user", "content": prompt}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let plain_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], prompt);
    assert_eq!(body["usage"]["completion_tokens"], 5);

    let response = client()
        .post(format!("http://{addr}/gateway/mlflow/v1/chat/completions"))
        .json(
            &json!({"model": "chat", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": prompt}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let stream_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let (text, chunks, done) = sse_text(&response.text().await.unwrap());
    assert_eq!(text, prompt);
    assert!(done, "the stream ends with [DONE]");
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 5);

    let stderr = node.stderr();
    assert!(stderr.contains("DEVELOPMENT MODE"), "{stderr}");
    assert!(stderr.contains("no authentication"), "{stderr}");

    // dev's in-process projector folds both requests from the local event log.
    let usage = node
        .logged_address("usage query API listening", "http")
        .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let top_url = format!(
        "http://{usage}/usage/v1/top?from={}&to={}&dimension=endpoint&by=requests",
        now - 3_600,
        now + 3_600
    );
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let projected = loop {
        let top: Value = client()
            .get(&top_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if top["entries"][0]["value"] == "chat" && top["entries"][0]["requests"] == 2 {
            break top["entries"][0].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the projector never counted both requests: {top}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    node.terminate();
    let status = node.exited().await;
    let stdout = node.stdout();
    assert_eq!(status.code(), Some(0), "stdout:\n{stdout}");
    assert!(stdout.contains("floodgate stopped"), "{stdout}");

    // One usage event per request, in dev's local event log (readable once dev has exited).
    let log = LocalLog::open(&node.data_dir().join("events")).unwrap();
    let mut source = log.source("test").unwrap();
    let events = source.fetch(10, Duration::from_millis(100)).await.unwrap();
    assert_eq!(events.len(), 2, "one usage event per request: {events:?}");
    let find = |id: &str| {
        events
            .iter()
            .map(|d| &d.event)
            .find(|e| e.request_id == id)
            .unwrap_or_else(|| panic!("no event for {id}"))
    };
    let plain = find(&plain_id);
    assert_eq!(plain.endpoint, "chat");
    assert_eq!(plain.provider, "mock");
    assert_eq!(plain.status, 200);
    assert!(!plain.streamed);
    assert_eq!(plain.tokens.unwrap().output, 5);
    let streamed = find(&stream_id);
    assert_eq!(streamed.status, 200);
    assert!(streamed.streamed);
    assert_eq!(streamed.tokens.unwrap().output, 5);
    assert!(!streamed.client_cancelled);
    let tokens: u64 = [plain, streamed]
        .iter()
        .map(|e| e.tokens.unwrap().input + e.tokens.unwrap().output)
        .sum();
    let cost: u64 = [plain, streamed]
        .iter()
        .map(|e| e.cost_micros.unwrap())
        .sum();
    assert_eq!(projected["tokens"], tokens, "{projected}");
    assert_eq!(projected["cost_micros"], cost, "{projected}");
}

/// Default (text) logs written to a pipe are plain text: no terminal colour codes for a log
/// collector to choke on, and the listening line is still machine-readable.
#[tokio::test]
async fn text_logs_to_a_pipe_carry_no_colour_codes() {
    let mut node = Node::spawn(&["dev", "--listen", "127.0.0.1:0"], &[]);
    let stdout = node.stdout.clone();
    wait_until("the listening line", || {
        stdout
            .lock()
            .unwrap()
            .contains("floodgate listening")
            .then_some(())
    })
    .await;
    let text = node.stdout();
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escapes in piped logs:\n{text:?}"
    );
    let addr = node.listening().await;
    let response = client()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    node.terminate();
    assert_eq!(node.exited().await.code(), Some(0));
    assert!(!node.stdout().contains('\u{1b}'));
}

/// `floodgate serve` with the gateway key and the provider key taken from the environment:
/// after successful, rejected and failed requests — and a rejected reload whose bad value is
/// the provider key — neither key, nor a wrong key a client sent, appears anywhere in the
/// process's output; the gateway key never reaches the provider and the provider key never
/// reaches the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_every_key_out_of_its_output() {
    let gateway_key = "fg-gw-key-7d1e5f0a9b3c4411";
    let wrong_key = "fg-wrong-key-from-a-client-9e2a";
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let endpoint = |name: &str, model: &str| {
        format!(
            "  - name: {name}\n    kind: chat\n    targets:\n      - provider: openai\n        model: {model}\n        api_base: {}\n        credentials: {{api_key: \"${{FG_PROVIDER_KEY}}\"}}\n",
            upstream.base()
        )
    };
    let good = format!(
        "listen: 127.0.0.1:0\nkeys:\n  - {{id: team-a, key: \"${{FG_GATEWAY_KEY}}\"}}\nendpoints:\n{}{}",
        endpoint("chat", "gpt-4o-mini"),
        endpoint("broken", "error-500")
    );
    let config = write(dir.path(), "floodgate.yaml", &good);
    let mut node = Node::spawn(
        &["serve", "--config", &config],
        &[
            ("FG_GATEWAY_KEY", gateway_key),
            ("FG_PROVIDER_KEY", UPSTREAM_KEY),
            ("RUST_LOG", "debug"),
        ],
    );
    let addr = node.listening().await;
    let url = |path: &str| format!("http://{addr}{path}");
    let chat =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    let mut bodies = String::new();
    let mut call = async |request: reqwest::RequestBuilder, expected: u16| {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status, expected, "{text}");
        bodies.push_str(&text);
        text
    };

    let http = client();
    let answer = call(
        http.post(url("/v1/chat/completions"))
            .bearer_auth(gateway_key)
            .json(&chat("chat")),
        200,
    )
    .await;
    assert!(answer.contains("Hello from upstream"), "{answer}");
    let mut streamed = chat("chat");
    streamed["stream"] = json!(true);
    let answer = call(
        http.post(url("/v1/chat/completions"))
            .header("x-api-key", gateway_key)
            .json(&streamed),
        200,
    )
    .await;
    assert!(answer.contains("data: [DONE]"), "{answer}");
    call(
        http.post(url("/gateway/openai/v1/chat/completions"))
            .bearer_auth(gateway_key)
            .json(&chat("chat")),
        200,
    )
    .await;
    call(
        http.get(url("/gateway/proxy/chat/models"))
            .bearer_auth(gateway_key),
        200,
    )
    .await;
    // Rejected: wrong key in each place a key may be sent, and none at all.
    call(
        http.post(url("/v1/chat/completions"))
            .bearer_auth(wrong_key)
            .json(&chat("chat")),
        401,
    )
    .await;
    call(
        http.post(url("/v1/chat/completions"))
            .header("x-api-key", wrong_key)
            .json(&chat("chat")),
        401,
    )
    .await;
    call(
        http.post(url("/v1/chat/completions"))
            .basic_auth("user", Some(wrong_key))
            .json(&chat("chat")),
        401,
    )
    .await;
    call(
        http.get(url("/gateway/proxy/chat/models"))
            .bearer_auth(wrong_key),
        401,
    )
    .await;
    call(
        http.post(url("/v1/chat/completions")).json(&chat("chat")),
        401,
    )
    .await;
    // Failed: unknown endpoint, upstream error.
    call(
        http.post(url("/v1/chat/completions"))
            .bearer_auth(gateway_key)
            .json(&chat("nope")),
        404,
    )
    .await;
    let failed = call(
        http.post(url("/v1/chat/completions"))
            .bearer_auth(gateway_key)
            .json(&chat("broken")),
        500,
    )
    .await;
    assert!(failed.contains("upstream says 500"), "{failed}");

    // A reload that fails on a value taken from the provider key's variable.
    let bad = good.replacen("kind: chat", "kind: \"${FG_PROVIDER_KEY}\"", 1);
    std::fs::write(&config, bad).unwrap();
    let stdout = node.stdout.clone();
    wait_until("the rejected reload's warning", || {
        stdout
            .lock()
            .unwrap()
            .contains("config change ignored")
            .then_some(())
    })
    .await;

    node.terminate();
    let status = node.exited().await;
    let output = format!("{}\n{}", node.stdout(), node.stderr());
    assert_eq!(status.code(), Some(0), "{output}");
    assert!(output.contains("endpoints[0].kind"), "{output}");
    // The output is there: usage records name the key by id.
    assert!(output.contains("team-a"), "{output}");
    assert!(output.contains("upstream_error"), "{output}");
    for (what, secret) in [
        ("provider key", UPSTREAM_KEY),
        ("gateway key", gateway_key),
        ("wrong client key", wrong_key),
    ] {
        assert!(
            !output.contains(secret),
            "the {what} is in the output:\n{output}"
        );
        assert!(!bodies.contains(secret), "the {what} is in a response body");
    }
    let seen = upstream.seen();
    assert_eq!(seen.len(), 5, "chat, stream, passthrough, proxy, broken");
    for request in &seen {
        assert_eq!(
            request.headers["authorization"],
            format!("Bearer {UPSTREAM_KEY}").as_str(),
            "the provider key is what the upstream gets"
        );
        let headers = format!("{:?}", request.headers);
        assert!(
            !headers.contains(gateway_key) && !request.raw.contains(gateway_key),
            "the gateway key reached the provider: {headers}"
        );
    }
}

/// `floodgate serve` watches its config file: an endpoint added to it is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reloads_its_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = |name: &str| {
        format!(
            "  - name: {name}\n    kind: chat\n    targets:\n      - {{provider: mock, model: echo}}\n"
        )
    };
    let text = |names: &[&str]| {
        format!(
            "listen: 127.0.0.1:0\nauth: none\nendpoints:\n{}",
            names.iter().map(|n| endpoint(n)).collect::<String>()
        )
    };
    let config = write(dir.path(), "floodgate.yaml", &text(&["first"]));
    let mut node = Node::spawn(&["serve", "--config", &config], &[]);
    let addr = node.listening().await;
    let status_of = async |model: &str| {
        client()
            .post(format!("http://{addr}/v1/chat/completions"))
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(status_of("first").await, 200);
    assert_eq!(status_of("second").await, 404);

    std::fs::write(&config, text(&["first", "second"])).unwrap();
    // The "config reloaded" line is logged just before the swap, so poll the API itself.
    let deadline = Instant::now() + DEADLINE;
    while status_of("second").await != 200 {
        assert!(
            Instant::now() < deadline,
            "the new endpoint was never served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status_of("first").await, 200);
    assert!(node.stdout().contains("config reloaded"));
    let ready: Value = client()
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["config_generation"], 2);
    node.terminate();
    assert_eq!(node.exited().await.code(), Some(0));
}

/// `floodgate config check`: a bad file exits 64 naming every failing field path (with
/// environment values scrubbed); a good file exits 0.
#[test]
fn config_check_reports_field_paths_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "sk-check-secret-5b8e1d";
    let bad = write(
        dir.path(),
        "bad.yaml",
        "auth: none\nendpoints:\n  - name: chat\n    kind: chat\n    targets:\n      - {provider: mock, model: echo, weight: 0}\n  - name: odd\n    kind: \"${ODD_KIND}\"\n    targets:\n      - {provider: mock, model: echo}\n",
    );
    let (status, stdout, stderr) = run(&["config", "check", &bad], &[("ODD_KIND", secret)]);
    assert_eq!(status.code(), Some(64), "{stdout}{stderr}");
    assert!(
        stderr.contains("endpoints[0].targets[0].weight"),
        "{stderr}"
    );
    assert!(stderr.contains("endpoints[1].kind"), "{stderr}");
    assert!(
        !stderr.contains(secret) && !stdout.contains(secret),
        "{stderr}"
    );

    let unknown_field = write(
        dir.path(),
        "typo.yaml",
        "auth: none\nendpoints:\n  - name: chat\n    kind: chat\n    targets:\n      - {provider: mock, model: echo, wieght: 2}\n",
    );
    let (status, _, stderr) = run(&["config", "check", &unknown_field], &[]);
    assert_eq!(status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("endpoints[0].targets[0]"), "{stderr}");
    assert!(stderr.contains("wieght"), "{stderr}");

    let missing_env = write(
        dir.path(),
        "env.yaml",
        "keys:\n  - {id: a, key: \"${FG_UNSET_KEY_FOR_TEST}\"}\nendpoints: []\n",
    );
    let (status, _, stderr) = run(&["config", "check", &missing_env], &[]);
    assert_eq!(status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("keys[0].key"), "{stderr}");
    assert!(stderr.contains("FG_UNSET_KEY_FOR_TEST"), "{stderr}");

    let (status, _, stderr) = run(&["config", "check", "/nonexistent/floodgate.yaml"], &[]);
    assert_eq!(status.code(), Some(64), "{stderr}");

    let good = write(
        dir.path(),
        "good.yaml",
        "auth: none\nendpoints:\n  - name: chat\n    kind: chat\n    targets:\n      - {provider: mock, model: echo}\n",
    );
    let (status, stdout, stderr) = run(&["config", "check", &good], &[]);
    assert_eq!(status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("ok (1 endpoints"), "{stdout}");
}

/// `floodgate serve` with a bad config exits 64 before binding: the configured port is held
/// by the test all along, so an attempt to bind would fail differently.
#[test]
fn serve_with_a_bad_config_exits_64_without_binding() {
    let dir = tempfile::tempdir().unwrap();
    let held = reserve_port();
    let port = held.local_addr().unwrap().port();
    let bad = write(
        dir.path(),
        "bad.yaml",
        &format!(
            "listen: 127.0.0.1:{port}\nauth: none\nendpoints:\n  - name: chat\n    kind: chat\n    targets:\n      - {{provider: nosuch, model: echo}}\n"
        ),
    );
    let (status, stdout, stderr) = run(&["serve", "--config", &bad], &[]);
    assert_eq!(status.code(), Some(64), "{stdout}{stderr}");
    assert!(
        stderr.contains("endpoints[0].targets[0].provider"),
        "{stderr}"
    );
    assert!(!stdout.contains("listening") && !stderr.contains("listening"));
    assert!(!stderr.contains("cannot listen") && !stdout.contains("cannot listen"));
    drop(held);
    TcpListener::bind(("127.0.0.1", port)).expect("the port is free again");

    // Serve mode without keys and without `auth: none` is refused the same way.
    let open = write(
        dir.path(),
        "open.yaml",
        "endpoints:\n  - name: chat\n    kind: chat\n    targets:\n      - {provider: mock, model: echo}\n",
    );
    let (status, stdout, stderr) = run(&["serve", "--config", &open], &[]);
    assert_eq!(status.code(), Some(64), "{stdout}{stderr}");
    assert!(stderr.contains("auth"), "{stderr}");
}

/// A valid config whose port is taken fails to start with a non-zero exit naming the
/// address (and not the config exit code).
#[test]
fn serve_on_a_taken_port_fails_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let held = reserve_port();
    let addr = held.local_addr().unwrap();
    let config = write(
        dir.path(),
        "floodgate.yaml",
        &format!(
            "listen: {addr}\nauth: none\nendpoints:\n  - name: chat\n    kind: chat\n    targets:\n      - {{provider: mock, model: echo}}\n"
        ),
    );
    let (status, stdout, stderr) = run(&["serve", "--config", &config], &[]);
    let output = format!("{stdout}{stderr}");
    assert!(!status.success(), "{output}");
    assert_ne!(status.code(), Some(64), "{output}");
    assert!(output.contains("cannot listen"), "{output}");
    assert!(output.contains(&addr.to_string()), "{output}");
    drop(held);
}

/// `floodgate version` and `--version` print the crate version.
#[test]
fn version_prints_the_version() {
    let expected = format!("floodgate {}", env!("CARGO_PKG_VERSION"));
    let (status, stdout, _) = run(&["version"], &[]);
    assert!(status.success());
    assert_eq!(stdout.trim(), expected);
    let (status, stdout, _) = run(&["--version"], &[]);
    assert!(status.success());
    assert_eq!(stdout.trim(), expected);
}

/// A command-line mistake fails and names the offending word.
#[test]
fn an_unknown_subcommand_fails() {
    let (status, _, stderr) = run(&["frobnicate"], &[]);
    assert_eq!(status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("frobnicate"), "{stderr}");
}

/// `floodgate dev` runs a one-member ledger: an endpoint created through its JSON admin API
/// is served by the edge once the commit reaches it through the watch stream, and a bad
/// object is refused by field with nothing applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_serves_an_endpoint_created_through_the_admin_api() {
    let mut node = Node::spawn(
        &["dev", "--listen", "127.0.0.1:0"],
        &[("FLOODGATE_LOG_FORMAT", "json")],
    );
    let addr = node.listening().await;
    let admin = node.logged_address("admin API listening", "address").await;
    let chat = |model: &'static str| {
        client()
            .post(format!("http://{addr}/v1/chat/completions"))
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    assert_eq!(chat("from-admin").await.unwrap().status(), 404);

    let bad = client()
        .put(format!("http://{admin}/admin/v1/endpoint"))
        .json(&json!({"name": "from-admin", "kind": "chat", "targets": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_argument");
    assert!(
        body["error"]["errors"][0]["field"]
            .as_str()
            .unwrap()
            .contains("targets")
    );

    let put = client()
        .put(format!("http://{admin}/admin/v1/endpoint"))
        .json(&json!({"name": "from-admin", "kind": "chat", "targets": [{
            "provider": "mock", "model": "echo", "api_base": null, "credential": "none",
            "weight": 1, "max_tokens": null, "price": null}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    // Poll the edge until it serves the endpoint, within the deadline.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while chat("from-admin").await.unwrap().status() != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the edge never served the endpoint created through the admin API"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.terminate();
    assert!(node.exited().await.success());
}

/// A short run of the load harness against `floodgate dev`: an open-loop load of plain and
/// streamed chat, every request answered, and dev's projector counting each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_harness_run_against_dev_balances_its_books() {
    let mut node = Node::spawn(
        &["dev", "--listen", "127.0.0.1:0"],
        &[("FLOODGATE_LOG_FORMAT", "json")],
    );
    let addr = node.listening().await;
    floodgate_loadtest::install_crypto_provider();
    let mut sent = 0;
    for stream in [false, true] {
        let config = floodgate_loadtest::load::RunConfig {
            urls: vec![format!("http://{addr}/v1")],
            mode: floodgate_loadtest::load::Mode::Open {
                rate: 100.0,
                connections: 16,
            },
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            scenario: std::sync::Arc::new(floodgate_loadtest::scenario::Scenario::single(
                "chat", stream,
            )),
            timeout: Duration::from_secs(10),
        };
        let report = floodgate_loadtest::load::run(config).await.unwrap();
        assert_eq!(
            report.ok, report.requests,
            "every request answered: {report:?}"
        );
        assert!(report.requests >= 50, "{report:?}");
        assert!(report.latency.count > 0);
        sent += report.requests;
    }
    let usage = node
        .logged_address("usage query API listening", "http")
        .await;
    let stats = eventually(
        &format!("the projector to fold all {sent} requests"),
        DEADLINE,
        || async move {
            let stats = send(client().get(format!("http://{usage}/usage/v1/stats")))
                .await
                .body;
            let folded = stats["folded"].as_u64().unwrap();
            assert!(folded <= sent, "more events than requests: {stats}");
            (folded == sent).then_some(stats)
        },
    )
    .await;
    assert_eq!(stats["skipped"], 0, "{stats}");
    node.terminate();
    assert!(node.exited().await.success());
}
