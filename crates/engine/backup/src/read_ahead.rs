//! Read-ahead for base backups: the tar reads one file at a time, so on a cold disk it would
//! wait on one read after another. A thread of its own asks the kernel
//! (`posix_fadvise(WILLNEED)`) to start reading the next files, a chunk at a time, at most a
//! window ahead of what the tar has consumed, so several reads are in flight.

use crate::byte_count::{ByteCount, ByteCountWaiter};
use std::path::PathBuf;

/// How much is advised at a time.
pub(crate) const CHUNK: u64 = 8 * 1024 * 1024;
/// How far the advice runs ahead of the tar.
pub(crate) const WINDOW: u64 = 64 * 1024 * 1024;

/// Advises the kernel that `len` bytes of `file` from `offset` will be read soon.
pub(crate) fn advise_will_need(file: &std::fs::File, offset: u64, len: u64) {
    use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // Advice only: a failure costs speed, never correctness.
    let _ = posix_fadvise(file, offset, len, PosixFadviseAdvice::POSIX_FADV_WILLNEED);
}

/// The advising thread; it stops when this is dropped (without waiting for it).
pub(crate) struct KernelReadAhead {
    consumed: ByteCount,
}

impl KernelReadAhead {
    /// Starts advising `files` (path and size, in the order the tar reads them), `chunk` bytes
    /// at a time and at most `window` bytes ahead of [`KernelReadAhead::consumed`], through `advise`.
    pub(crate) fn start<A>(files: Vec<(PathBuf, u64)>, chunk: u64, window: u64, advise: A) -> Self
    where
        A: Fn(&std::fs::File, u64, u64) + Send + 'static,
    {
        let (consumed, waiter) = ByteCount::new();
        let spawned = std::thread::Builder::new()
            .name("backup-read-ahead".into())
            .spawn(move || advise_files(&waiter, files, chunk.max(1), window, advise));
        if spawned.is_err() {
            // Without the thread the backup is only slower.
            tracing::debug!("base backup read-ahead thread could not start");
        }
        KernelReadAhead { consumed }
    }

    /// The tar has read `bytes` more.
    pub(crate) fn consumed(&self, bytes: u64) {
        self.consumed.add(bytes);
    }
}

fn advise_files<A>(
    consumed: &ByteCountWaiter,
    files: Vec<(PathBuf, u64)>,
    chunk: u64,
    window: u64,
    advise: A,
) where
    A: Fn(&std::fs::File, u64, u64),
{
    let mut advised = 0u64;
    for (path, size) in files {
        // A file removed since the walk is skipped by the tar too.
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        let mut offset = 0;
        while offset < size {
            let len = chunk.min(size - offset);
            if consumed
                .wait_until(|consumed| advised.saturating_sub(consumed) < window)
                .is_none()
            {
                return;
            }
            advise(&file, offset, len);
            advised += len;
            offset += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn advice_runs_a_window_ahead_of_the_tar_and_dropping_does_not_wait() {
        let tmp = tempfile::tempdir().unwrap();
        let files: Vec<(PathBuf, u64)> = (1..=5)
            .map(|i| {
                let path = tmp.path().join(format!("f{i}"));
                std::fs::write(&path, vec![0u8; 4096]).unwrap();
                (path, 4096)
            })
            .collect();
        let (tx, rx) = mpsc::channel();
        let advice = KernelReadAhead::start(files, 4096, 3 * 4096, move |_, offset, len| {
            let _ = tx.send((offset, len));
        });
        let next = || rx.recv_timeout(Duration::from_secs(10));
        // Three files advised before the tar has read anything, and no fourth.
        for _ in 0..3 {
            assert_eq!(next(), Ok((0, 4096)));
        }
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        // The tar consumed the first file: the fourth is advised, not the fifth.
        advice.consumed(4096);
        assert_eq!(next(), Ok((0, 4096)));
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        // Dropping returns at once and stops the thread (the channel closes).
        drop(advice);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
    }
}
