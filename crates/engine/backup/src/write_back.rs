//! Write-back during a restore: unpacking a gigabyte only dirties the page cache, and the
//! caller's final `syncfs` (a restore must be on disk before it is moved into place) would
//! then write it all after the unpacking. A thread of its own starts the write-back every
//! [`STEP`] bytes unpacked instead, so the disk writes while the tar is still being unpacked
//! and the final flush finds little left.

use crate::byte_count::ByteCount;

/// How many bytes unpacked between two write-backs.
pub(crate) const STEP: u64 = 64 * 1024 * 1024;

/// The write-back thread; it stops when this is dropped (without waiting for it).
pub(crate) struct WriteBack {
    written: ByteCount,
}

impl WriteBack {
    /// Calls `flush` on a thread of its own each time `step` more bytes were
    /// [`written`](Self::written) (one call at a time; bytes written during a call count
    /// towards the next).
    pub(crate) fn start<F>(step: u64, flush: F) -> Self
    where
        F: Fn() + Send + 'static,
    {
        let (written, waiter) = ByteCount::new();
        let spawned = std::thread::Builder::new()
            .name("restore-write-back".into())
            .spawn(move || {
                let mut flushed_at = 0u64;
                while let Some(now) = waiter.wait_until(|n| n - flushed_at >= step) {
                    flushed_at = now;
                    flush();
                }
            });
        if spawned.is_err() {
            // Without the thread the final flush does it all: slower, as correct.
            tracing::debug!("restore write-back thread could not start");
        }
        WriteBack { written }
    }

    /// `syncfs` on the file system of `dir` each [`STEP`] bytes.
    pub(crate) fn of_file_system(dir: &std::path::Path) -> Option<Self> {
        let handle = std::fs::File::open(dir).ok()?;
        Some(Self::start(STEP, move || {
            // A failure here is found again by the caller's own final flush.
            let _ = nix::unistd::syncfs(&handle);
        }))
    }

    /// `bytes` more were unpacked.
    pub(crate) fn written(&self, bytes: u64) {
        self.written.add(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_flush_each_step_and_dropping_does_not_wait() {
        let (tx, rx) = mpsc::channel();
        let write_back = WriteBack::start(100, move || {
            let _ = tx.send(());
        });
        write_back.written(99);
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        write_back.written(1);
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(()));
        write_back.written(250);
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(()));
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "bytes written before a flush count once"
        );
        drop(write_back);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn reads_reported_to_it_step_the_write_back() {
        let (tx, rx) = mpsc::channel();
        let write_back = WriteBack::start(2 * 1024 * 1024, move || {
            let _ = tx.send(());
        });
        let data = vec![1u8; 3 * 1024 * 1024];
        let mut reader =
            crate::reporting::Reporting::new(data.as_slice(), move |n| write_back.written(n));
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut out).unwrap();
        assert_eq!(out, data);
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(()));
    }
}
