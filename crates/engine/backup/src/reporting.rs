//! A reader that reports the bytes read through it, a MiB at a time: a base backup's progress
//! (which the read-ahead follows) and a restore's write-back both count what went through.

use std::io;

/// How many bytes are gathered before a report.
const STEP: u64 = 1024 * 1024;

/// Reads `inner`, calling `report` with the bytes read every [`STEP`] or more; what is left
/// below a step is reported by [`Reporting::flush`].
pub(crate) struct Reporting<R, F: FnMut(u64)> {
    inner: R,
    report: F,
    pending: u64,
}

impl<R, F: FnMut(u64)> Reporting<R, F> {
    pub(crate) fn new(inner: R, report: F) -> Self {
        Reporting {
            inner,
            report,
            pending: 0,
        }
    }

    /// Report what was read since the last report.
    pub(crate) fn flush(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        if pending > 0 {
            (self.report)(pending);
        }
    }
}

impl<R: io::Read, F: FnMut(u64)> io::Read for Reporting<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pending += n as u64;
        if self.pending >= STEP {
            self.flush();
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_is_reported_once_a_mib_at_a_time_then_the_rest() {
        let data = vec![7u8; 2 * 1024 * 1024 + 5];
        let mut reports = Vec::new();
        let mut out = Vec::new();
        {
            let mut reader = Reporting::new(data.as_slice(), |n| reports.push(n));
            io::Read::read_to_end(&mut reader, &mut out).unwrap();
            reader.flush();
        }
        assert_eq!(out, data);
        assert_eq!(reports.iter().sum::<u64>(), data.len() as u64);
        assert!(reports[..reports.len() - 1].iter().all(|n| *n >= STEP));
    }
}
