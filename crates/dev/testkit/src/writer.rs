//! A continuous writer for HA tests: commits one numbered row at a time through an endpoint,
//! remembers every commit the server acknowledged, and afterwards checks that each one is still
//! there. Attempts that failed or timed out are "in doubt" and may or may not be present; only
//! acknowledged commits must never be lost.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The table every writer and probe writes to.
pub const TABLE: &str = "pgherd_writes";

/// What a writer saw.
#[derive(Debug, Clone, Default)]
pub struct WriterReport {
    /// Label of the writer (the `source` column).
    pub source: String,
    /// Sequence numbers of acknowledged commits, with when they were acknowledged.
    pub acknowledged: Vec<(i64, Instant)>,
    /// Attempts that failed or timed out (in doubt).
    pub failed: u64,
}

impl WriterReport {
    /// The longest time between two acknowledged commits (write unavailability).
    pub fn longest_gap(&self) -> Duration {
        self.acknowledged
            .windows(2)
            .map(|w| w[1].1.duration_since(w[0].1))
            .max()
            .unwrap_or_default()
    }
}

/// A writer running on its own thread.
#[derive(Debug)]
pub struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    report: Arc<Mutex<WriterReport>>,
    handle: Option<JoinHandle<()>>,
}

/// Create the table (idempotent) through `config`.
pub async fn prepare(config: &tokio_postgres::Config) -> Result<(), tokio_postgres::Error> {
    let client = crate::local::connect(config).await?;
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {TABLE} (source text NOT NULL, seq bigint NOT NULL, PRIMARY KEY (source, seq))"
        ))
        .await
}

async fn write_loop(
    config: tokio_postgres::Config,
    pause: Duration,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    report: Arc<Mutex<WriterReport>>,
) {
    let source = report.lock().map(|r| r.source.clone()).unwrap_or_default();
    let insert = format!("INSERT INTO {TABLE} (source, seq) VALUES ($1, $2)");
    let mut client = None;
    let mut seq: i64 = 0;
    let mut resumed = false;
    while !stop.load(Ordering::Relaxed) {
        let c = match client.take() {
            Some(c) => c,
            None => {
                match tokio::time::timeout(Duration::from_secs(2), crate::local::connect(&config))
                    .await
                {
                    Ok(Ok(c)) if !resumed => {
                        // A writer of the same name may have written before (an earlier round):
                        // go on after its numbers instead of failing through them.
                        let last = c
                            .query_one(
                                &format!(
                                    "SELECT coalesce(max(seq), 0) FROM {TABLE} WHERE source = $1"
                                ),
                                &[&source],
                            )
                            .await;
                        match last {
                            Ok(row) => {
                                seq = row.get(0);
                                resumed = true;
                                c
                            }
                            Err(_) => {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                                continue;
                            }
                        }
                    }
                    Ok(Ok(c)) => c,
                    _ => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                }
            }
        };
        seq += 1;
        // A generous timeout: an in-flight commit is never cancelled (a cancelled wait for
        // synchronous replication would still commit locally and report success).
        let result = tokio::time::timeout(
            Duration::from_secs(30),
            c.execute(&insert, &[&source, &seq]),
        )
        .await;
        if let Ok(mut r) = report.lock() {
            match result {
                Ok(Ok(_)) => {
                    r.acknowledged.push((seq, Instant::now()));
                    acked.fetch_add(1, Ordering::Relaxed);
                    client = Some(c);
                }
                _ => r.failed += 1,
            }
        }
        tokio::time::sleep(pause).await;
    }
}

impl Writer {
    /// Start writing through `config`, one commit every `pause` (plus the commit's own time).
    pub fn start(source: &str, config: tokio_postgres::Config, pause: Duration) -> Writer {
        Self::start_in(source, config, pause, None)
    }

    /// Like `start`, from inside network namespace `netns` (a name under /var/run/netns):
    /// a client on the far side of a partition.
    pub fn start_in(
        source: &str,
        config: tokio_postgres::Config,
        pause: Duration,
        netns: Option<String>,
    ) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let report = Arc::new(Mutex::new(WriterReport {
            source: source.to_string(),
            ..WriterReport::default()
        }));
        let (s, a, r) = (stop.clone(), acked.clone(), report.clone());
        let handle = std::thread::spawn(move || {
            if let Some(ns) = netns {
                // Only this thread moves: its sockets are then created in `ns`.
                let file = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns");
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(write_loop(config, pause, s, a, r));
        });
        Writer {
            stop,
            acked,
            report,
            handle: Some(handle),
        }
    }

    /// Acknowledged commits so far.
    pub fn acknowledged(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }

    /// Wait until `n` more commits than now have been acknowledged (panics after `timeout`).
    pub fn wait_for_progress(&self, n: usize, timeout: Duration) {
        let target = self.acknowledged() + n;
        let deadline = Instant::now() + timeout;
        while self.acknowledged() < target {
            assert!(
                Instant::now() < deadline,
                "the writer made no progress: {} acknowledged",
                self.acknowledged()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop and return what was seen.
    pub fn stop(mut self) -> WriterReport {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().expect("writer thread");
        }
        self.report.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The acknowledged commits of `report` that `client`'s server does not have.
pub async fn missing(
    client: &tokio_postgres::Client,
    report: &WriterReport,
) -> Result<Vec<i64>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!("SELECT seq FROM {TABLE} WHERE source = $1"),
            &[&report.source],
        )
        .await?;
    let present: std::collections::HashSet<i64> = rows.iter().map(|r| r.get(0)).collect();
    Ok(report
        .acknowledged
        .iter()
        .map(|(seq, _)| *seq)
        .filter(|seq| !present.contains(seq))
        .collect())
}
