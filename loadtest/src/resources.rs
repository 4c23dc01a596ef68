//! Resource sampling of a process (the gateway) during a run: its resident set size from
//! `/proc/<pid>/status` (`VmRSS`) and its CPU time from `/proc/<pid>/stat` (`utime` +
//! `stime`), every 250 ms on a tracked task, summarised as the peak RSS, the RSS growth from
//! the first sample to the last, and the CPU seconds and percent of one core over the
//! sampled wall time. Linux only; reads `/proc`, touches nothing else.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// `/proc/<pid>/stat` counts CPU time in `USER_HZ` ticks, which Linux fixes at 100 per
/// second for user space whatever the kernel's internal tick rate.
const TICKS_PER_SECOND: f64 = 100.0;

/// The default sampling period.
pub const PERIOD: Duration = Duration::from_millis(250);

/// Why a process could not be sampled or found.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// A `/proc` file could not be read (the process is gone, or not Linux).
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A `/proc` file did not have the expected shape.
    #[error("cannot parse {path}")]
    Parse {
        /// The file.
        path: String,
    },
    /// No process has that name.
    #[error("no process named {0:?}")]
    NotFound(String),
    /// Several processes have that name; pass `--pid`.
    #[error("several processes named {name:?}: {pids:?}; pass --pid")]
    Ambiguous {
        /// The name.
        name: String,
        /// Their pids.
        pids: Vec<u32>,
    },
}

/// One reading.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since sampling started.
    pub at_s: f64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// CPU time used so far (user + system), seconds.
    pub cpu_s: f64,
}

/// The summary of a sampled run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceReport {
    /// The process sampled.
    pub pid: u32,
    /// Readings taken.
    pub samples: usize,
    /// Highest RSS seen, KiB.
    pub peak_rss_kib: u64,
    /// RSS at the first reading, KiB.
    pub first_rss_kib: u64,
    /// RSS at the last reading, KiB.
    pub last_rss_kib: u64,
    /// Last minus first, KiB (negative when memory was returned).
    pub rss_growth_kib: i64,
    /// CPU seconds used between the first and last readings.
    pub cpu_seconds: f64,
    /// Wall seconds between the first and last readings.
    pub wall_seconds: f64,
    /// CPU seconds per wall second, in percent of one core.
    pub cpu_percent: f64,
}

/// The `VmRSS` line of `/proc/<pid>/status`, in KiB.
pub fn parse_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `utime + stime` of `/proc/<pid>/stat`, in ticks. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: state is field 3, so utime (14) and stime (15) are the 12th and 13th.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn read(path: String) -> Result<(String, String), ResourceError> {
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((path, text)),
        Err(source) => Err(ResourceError::Read { path, source }),
    }
}

/// Reads `pid`'s RSS (KiB) and CPU time (seconds) now.
pub fn read_usage(pid: u32) -> Result<(u64, f64), ResourceError> {
    let (path, status) = read(format!("/proc/{pid}/status"))?;
    let rss = parse_rss_kib(&status).ok_or(ResourceError::Parse { path })?;
    let (path, stat) = read(format!("/proc/{pid}/stat"))?;
    let ticks = parse_cpu_ticks(&stat).ok_or(ResourceError::Parse { path })?;
    Ok((rss, ticks as f64 / TICKS_PER_SECOND))
}

/// The one process whose `comm` (the executable's name, cut to 15 bytes) is `name`.
pub fn find_pid(name: &str) -> Result<u32, ResourceError> {
    let wanted: String = name.chars().take(15).collect();
    let entries = std::fs::read_dir("/proc").map_err(|source| ResourceError::Read {
        path: "/proc".to_owned(),
        source,
    })?;
    let mut pids: Vec<u32> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == wanted)
        })
        .collect();
    pids.sort_unstable();
    match pids.as_slice() {
        [] => Err(ResourceError::NotFound(name.to_owned())),
        [pid] => Ok(*pid),
        _ => Err(ResourceError::Ambiguous {
            name: name.to_owned(),
            pids,
        }),
    }
}

/// Summarises readings; `None` without any.
pub fn summarize(pid: u32, samples: &[Sample]) -> Option<ResourceReport> {
    let (first, last) = (samples.first()?, samples.last()?);
    let cpu_seconds = (last.cpu_s - first.cpu_s).max(0.0);
    let wall_seconds = last.at_s - first.at_s;
    Some(ResourceReport {
        pid,
        samples: samples.len(),
        peak_rss_kib: samples.iter().map(|s| s.rss_kib).max().unwrap_or(0),
        first_rss_kib: first.rss_kib,
        last_rss_kib: last.rss_kib,
        rss_growth_kib: i64::try_from(last.rss_kib).unwrap_or(i64::MAX)
            - i64::try_from(first.rss_kib).unwrap_or(i64::MAX),
        cpu_seconds,
        wall_seconds,
        cpu_percent: if wall_seconds > 0.0 {
            100.0 * cpu_seconds / wall_seconds
        } else {
            0.0
        },
    })
}

/// A running sampler: a tracked task reading the process every period until stopped.
#[derive(Debug)]
pub struct Sampler {
    pid: u32,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Sampler {
    /// Takes a first reading now (failing if the process cannot be read) and then one per
    /// `period`. Readings that fail later (the process exited) are skipped.
    pub fn start(pid: u32, period: Duration) -> Result<Sampler, ResourceError> {
        let started = Instant::now();
        let (rss_kib, cpu_s) = read_usage(pid)?;
        let samples = Arc::new(Mutex::new(vec![Sample {
            at_s: 0.0,
            rss_kib,
            cpu_s,
        }]));
        let (stop, mut stopped) = oneshot::channel();
        let shared = Arc::clone(&samples);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(started + period, period);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = ticks.tick() => {}
                }
                if let Ok((rss_kib, cpu_s)) = read_usage(pid)
                    && let Ok(mut samples) = shared.lock()
                {
                    samples.push(Sample {
                        at_s: started.elapsed().as_secs_f64(),
                        rss_kib,
                        cpu_s,
                    });
                }
            }
        });
        Ok(Sampler {
            pid,
            samples,
            stop,
            task,
        })
    }

    /// Readings taken so far.
    pub fn len(&self) -> usize {
        self.samples.lock().map_or(0, |s| s.len())
    }

    /// Whether no reading was taken (never true: [`Sampler::start`] takes one).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops sampling, waits for the task, and summarises.
    pub async fn stop(self) -> Option<ResourceReport> {
        // The task may already have ended; either way it is joined below.
        let _ = self.stop.send(());
        let _ = self.task.await;
        let samples = self.samples.lock().ok()?;
        summarize(self.pid, &samples)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn parses_proc_files_including_awkward_command_names() {
        let status = "Name:\tfloodgate\nVmPeak:\t  99999 kB\nVmRSS:\t   18432 kB\nThreads:\t4\n";
        assert_eq!(parse_rss_kib(status), Some(18_432));
        assert_eq!(parse_rss_kib("Name:\tx\n"), None);
        let stat = "4242 (tokio (rt) 1) S 1 4242 4242 0 -1 4194560 2000 0 0 0 150 25 0 0 20 0 6 0";
        assert_eq!(parse_cpu_ticks(stat), Some(175));
        assert_eq!(parse_cpu_ticks("4242 (x) S 1"), None);
    }

    #[test]
    fn summarizes_peak_growth_and_cpu() {
        let samples = [
            Sample {
                at_s: 0.0,
                rss_kib: 1_000,
                cpu_s: 1.0,
            },
            Sample {
                at_s: 1.0,
                rss_kib: 3_000,
                cpu_s: 1.5,
            },
            Sample {
                at_s: 2.0,
                rss_kib: 1_500,
                cpu_s: 2.0,
            },
        ];
        let report = summarize(7, &samples).unwrap();
        assert_eq!(report.peak_rss_kib, 3_000);
        assert_eq!(report.rss_growth_kib, 500);
        assert!((report.cpu_seconds - 1.0).abs() < 1e-9);
        assert!((report.cpu_percent - 50.0).abs() < 1e-9);
        assert!(summarize(7, &[]).is_none());
    }

    /// Samples this test process while it burns CPU and grows its heap: the sampler sees
    /// both. Waits on the sampler's reading count, with a deadline, not on a timer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn samples_the_test_process_itself() {
        let pid = std::process::id();
        let sampler = Sampler::start(pid, Duration::from_millis(50)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        // 64 MiB, every page touched, kept alive across the readings.
        let ballast = vec![1u8; 64 << 20];
        let mut spin = 0usize;
        while sampler.len() < 6 {
            assert!(std::time::Instant::now() < deadline, "sampler stalled");
            // Busy work the optimiser cannot drop; the sampler runs on the other worker.
            spin = spin.wrapping_add(usize::from(std::hint::black_box(ballast[spin % 4096])));
        }
        let report = sampler.stop().await.unwrap();
        drop(ballast);
        assert!(report.samples >= 6, "{report:?}");
        // The 64 MiB show up (at least half of them: the machine may be under pressure).
        assert!(
            report.peak_rss_kib >= report.first_rss_kib + (32 << 10),
            "{report:?}"
        );
        // CPU time is counted in 10 ms ticks; the loop spun for at least 250 ms.
        assert!(report.cpu_seconds > 0.0, "{report:?}");
        assert!(report.cpu_percent > 0.0, "{report:?}");
        assert_eq!(
            find_pid("no-such-process-fg").unwrap_err().to_string(),
            "no process named \"no-such-process-fg\""
        );
    }
}
