//! Shared test support: a real edge started in process on `127.0.0.1:0`, a usage sink that
//! keeps records for assertions, and condition waits with deadlines (never bare sleeps).

pub mod anthropic_upstream;
pub mod bedrock_upstream;
pub mod cohere_upstream;
pub mod gemini_upstream;
pub mod upstream;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use floodgate::config::{self, Config, Mode};
use floodgate::edge::Gateway;
use floodgate::edge::quota::Quotas;
use floodgate::http_client::HttpClients;
use floodgate::providers::Providers;
use floodgate::usage::{UsageRecord, UsageSink};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

/// How long any wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A usage sink that keeps every record.
#[derive(Default)]
pub struct Recorder {
    records: Mutex<Vec<UsageRecord>>,
    added: Notify,
}

impl UsageSink for Recorder {
    fn record(&self, record: UsageRecord) {
        self.records.lock().unwrap().push(record);
        self.added.notify_waiters();
    }
}

impl Recorder {
    /// Every record so far.
    pub fn all(&self) -> Vec<UsageRecord> {
        self.records.lock().unwrap().clone()
    }

    /// Waits until at least `n` records exist, then returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<UsageRecord> {
        wait_until("usage records", || {
            let all = self.all();
            (all.len() >= n).then_some(all)
        })
        .await
    }

    /// Waits for the record of `request_id`.
    pub async fn wait_for_request(&self, request_id: &str) -> UsageRecord {
        wait_until("the request's usage record", || {
            self.all().into_iter().find(|r| r.request_id == request_id)
        })
        .await
    }
}

/// Polls `check` until it returns `Some`, failing the test after [`DEADLINE`].
pub async fn wait_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls the async `check` every 20 ms until it returns `Some`, failing the test after
/// `deadline` (for waits longer than [`DEADLINE`]: elections, reconnects, restarts).
pub async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Awaits `future`, failing the test after [`DEADLINE`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Parses config text in serve mode with the given environment.
pub fn config(yaml: &str, env: &[(&str, &str)]) -> Config {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    config::load_str(yaml, Mode::Serve, &env)
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}"))
}

/// A running edge.
pub struct TestGateway {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its shared state (for reloads).
    pub gateway: Gateway,
    /// Every usage record it produced.
    pub usage: Arc<Recorder>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<bool>>>,
}

impl TestGateway {
    /// Starts an edge serving `config` on `127.0.0.1:0`.
    pub async fn start(config: Config) -> Self {
        Self::start_with(config, None).await
    }

    /// Starts an edge serving `config` on `127.0.0.1:0`, enforcing its budgets through
    /// `quotas` when given.
    pub async fn start_with(config: Config, quotas: Option<Quotas>) -> Self {
        let usage = Arc::new(Recorder::default());
        Self::launch(config, quotas, usage.clone(), usage).await
    }

    /// Starts an edge serving `config` on `127.0.0.1:0` whose usage goes to `sink` (its
    /// [`TestGateway::usage`] recorder stays empty).
    pub async fn start_with_sink(config: Config, sink: Arc<dyn UsageSink>) -> Self {
        Self::launch(config, None, sink, Arc::new(Recorder::default())).await
    }

    async fn launch(
        config: Config,
        quotas: Option<Quotas>,
        sink: Arc<dyn UsageSink>,
        usage: Arc<Recorder>,
    ) -> Self {
        let grace = config.shutdown_grace;
        let clients = HttpClients::with_timeouts(config.connect_timeouts()).unwrap();
        let providers = Providers::new(clients);
        let gateway = match quotas {
            Some(quotas) => Gateway::with_quotas(config, providers, sink, quotas),
            None => Gateway::new(config, providers, sink),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(floodgate::server::run(
            listener,
            gateway.clone(),
            async {
                let _ = signal.await;
            },
            grace,
        ));
        Self {
            addr,
            gateway,
            usage,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// Starts an edge from YAML (serve mode) with `env` as the environment.
    pub async fn from_yaml(yaml: &str, env: &[(&str, &str)]) -> Self {
        Self::start(config(yaml, env)).await
    }

    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Signals shutdown and waits for the server; returns whether it drained in time.
    pub async fn shutdown(mut self) -> bool {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let task = self.task.take().unwrap();
        within("server shutdown", task).await.unwrap().unwrap()
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A plain HTTP client for talking to the edge.
pub fn client() -> reqwest::Client {
    floodgate::http_client::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(DEADLINE)
        .build()
        .unwrap()
}

/// One answer from the edge, fully read.
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: http::HeaderMap,
    /// Body as JSON (`Null` when it is not JSON).
    pub body: serde_json::Value,
    /// Body as text.
    pub text: String,
}

impl Reply {
    /// A header that must be present.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("missing header {name}; got {:?}", self.headers))
            .to_str()
            .unwrap()
    }

    /// The error code of an error answer.
    pub fn code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.text))
    }
}

/// Sends a request and reads the whole answer, with deadlines.
pub async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = within("the edge's answer", request.send()).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = within("the edge's body", response.text()).await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    Reply {
        status,
        headers,
        body,
        text,
    }
}

/// A loopback address whose TCP handshake never completes, for connect timeouts.
///
/// A listener that only never accepts is not enough: the kernel completes handshakes into
/// the listener's accept queue by itself. So the listener is made with a backlog of zero and
/// its accept queue is filled and never drained: Linux (like the BSDs) then *drops* each new
/// SYN rather than refusing it, and a client's connect hangs, re-sending its SYN, until its
/// own connect timeout fires. (A refused port fails at once, and a TEST-NET address would
/// leave the machine.) The queue is filled by connecting until a connect does not complete:
/// loopback handshakes complete in microseconds, so a probe that stays pending for
/// [`BlackHole::PROBE`] means the queue is full, whatever the kernel's exact queue length.
pub struct BlackHole {
    addr: SocketAddr,
    _listener: tokio::net::TcpListener,
    _queued: Vec<tokio::net::TcpStream>,
}

impl BlackHole {
    /// How long a connect must stay pending to show that the accept queue is full.
    pub const PROBE: Duration = Duration::from_millis(300);

    /// Binds `127.0.0.1:0`, listens with a backlog of zero and fills the accept queue.
    pub async fn start() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut queued = Vec::new();
        loop {
            match tokio::time::timeout(Self::PROBE, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => queued.push(stream),
                Ok(Err(e)) => panic!("connecting to the black hole failed: {e}"),
                Err(_) => break,
            }
            assert!(
                queued.len() <= 8,
                "the accept queue of a zero-backlog listener never filled"
            );
        }
        Self {
            addr,
            _listener: listener,
            _queued: queued,
        }
    }

    /// `host:port` of the black hole.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}
