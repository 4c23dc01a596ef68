//! Hot reload: watches the config file (through its directory, so editors that replace the
//! file by rename are seen), reloads on change, and applies a valid config; an invalid one
//! is logged and ignored while the old config keeps serving.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Config, Env, Mode, load_file};

/// Pause after a change before reading, so a burst of writes is read once.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Why watching could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The OS watcher failed.
    #[error("cannot watch {path}: {source}")]
    Notify {
        /// The watched directory.
        path: PathBuf,
        /// The watcher's error.
        source: notify::Error,
    },
}

/// Watches `path` until `stop` is cancelled, calling `apply` with each new valid config.
/// Returns once the watcher is set up; the watching runs on a spawned task tracked by
/// `tracker`.
pub fn watch<F>(
    path: &Path,
    mode: Mode,
    env: Box<dyn Env + Send + Sync>,
    stop: CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
    mut apply: F,
) -> Result<(), WatchError>
where
    F: FnMut(Config) + Send + 'static,
{
    let file = path.to_owned();
    let dir = match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let file_name = file.file_name().map(ToOwned::to_owned);
    let (changed, mut changes) = mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            Ok(event) => event
                .paths
                .iter()
                .any(|p| p.file_name() == file_name.as_deref()),
            Err(_) => true,
        };
        if relevant {
            let _ = changed.try_send(());
        }
    })
    .map_err(|source| WatchError::Notify {
        path: dir.clone(),
        source,
    })?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|source| WatchError::Notify {
            path: dir.clone(),
            source,
        })?;
    let mut last = std::fs::read(&file).ok();
    tracker.spawn(async move {
        let _watcher = watcher;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                got = changes.recv() => if got.is_none() { break },
            }
            tokio::time::sleep(DEBOUNCE).await;
            while changes.try_recv().is_ok() {}
            let current = std::fs::read(&file).ok();
            if current.is_none() || current == last {
                continue;
            }
            last = current;
            match load_file(&file, mode, env.as_ref()) {
                Ok(config) => {
                    let endpoints = config.endpoints.len();
                    apply(config);
                    tracing::info!(path = %file.display(), endpoints, "config reloaded");
                }
                Err(error) => {
                    tracing::warn!(path = %file.display(), %error, "config change ignored: the previous config keeps serving");
                }
            }
        }
    });
    Ok(())
}
