//! Reading gzip: one member after another (RFC 1952, as `gzip -d` and flate2's
//! `MultiGzDecoder`), each member's CRC-32 and size checked against its trailer. The CRC is
//! computed with the CPU's carry-less multiply (`crc32fast`): flate2 over zlib-rs computes it
//! byte-table-wise, which was 31 % of a restore's CPU time.

use flate2::bufread::DeflateDecoder;
use std::io::{self, BufRead, Read};

const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const RESERVED: u8 = 0xe0;

/// Decompresses the gzip stream read from `R` (every member of it).
pub struct GzipReader<R: BufRead> {
    /// The member being inflated.
    member: Option<DeflateDecoder<R>>,
    /// Between members (before the first one, after the last one).
    between: Option<R>,
    crc: crc32fast::Hasher,
    size: u32,
    started: bool,
}

impl<R: BufRead> std::fmt::Debug for GzipReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GzipReader").finish_non_exhaustive()
    }
}

impl<R: BufRead> GzipReader<R> {
    /// Reads the gzip stream from `inner`.
    pub fn new(inner: R) -> Self {
        GzipReader {
            member: None,
            between: Some(inner),
            crc: crc32fast::Hasher::new(),
            size: 0,
            started: false,
        }
    }

    /// The next member's header, or the end of the stream (`false`). An empty stream is an
    /// error: a compressed object has at least one member.
    fn next_member(&mut self) -> io::Result<bool> {
        let Some(mut inner) = self.between.take() else {
            return Ok(false);
        };
        if self.started && inner.fill_buf()?.is_empty() {
            return Ok(false);
        }
        read_header(&mut inner)?;
        self.started = true;
        self.crc = crc32fast::Hasher::new();
        self.size = 0;
        self.member = Some(DeflateDecoder::new(inner));
        Ok(true)
    }

    /// The member's deflate data ended: its trailer must match what it gave.
    fn end_member(&mut self) -> io::Result<()> {
        let Some(member) = self.member.take() else {
            return Ok(());
        };
        let mut inner = member.into_inner();
        let mut trailer = [0u8; 8];
        inner.read_exact(&mut trailer).map_err(eof_means(
            "the gzip stream ends before its member's end (cut short)",
        ))?;
        let crc = std::mem::take(&mut self.crc).finalize();
        if trailer[..4] != crc.to_le_bytes() || trailer[4..] != self.size.to_le_bytes() {
            return Err(invalid(
                "gzip CRC or size mismatch: the compressed data is corrupt",
            ));
        }
        self.between = Some(inner);
        Ok(())
    }
}

impl<R: BufRead> Read for GzipReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let Some(member) = self.member.as_mut() else {
                if self.next_member()? {
                    continue;
                }
                return Ok(0);
            };
            let n = member.read(buf)?;
            if n > 0 {
                self.crc.update(&buf[..n]);
                self.size = self.size.wrapping_add(n as u32);
                return Ok(n);
            }
            self.end_member()?;
        }
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

/// An early end of the input said as `message` (other errors as they are).
fn eof_means(message: &'static str) -> impl FnOnce(io::Error) -> io::Error {
    move |e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            invalid(message)
        } else {
            e
        }
    }
}

/// Reads a member's header (RFC 1952 2.3), skipping its optional fields.
fn read_header(inner: &mut impl BufRead) -> io::Result<()> {
    let mut fixed = [0u8; 10];
    inner
        .read_exact(&mut fixed)
        .map_err(eof_means("not a gzip stream: it ends inside its header"))?;
    if fixed[..3] != [0x1f, 0x8b, 8] {
        return Err(invalid("not a gzip stream (no gzip header with deflate)"));
    }
    let flags = fixed[3];
    if flags & RESERVED != 0 {
        return Err(invalid("gzip header with reserved flags set"));
    }
    if flags & FEXTRA != 0 {
        let mut length = [0u8; 2];
        inner.read_exact(&mut length)?;
        let length = u64::from(u16::from_le_bytes(length));
        let skipped = io::copy(&mut inner.by_ref().take(length), &mut io::sink())?;
        if skipped != length {
            return Err(invalid("gzip header cut short"));
        }
    }
    for field in [FNAME, FCOMMENT] {
        if flags & field != 0 {
            let mut text = Vec::new();
            inner.read_until(0, &mut text)?;
            if text.last() != Some(&0) {
                return Err(invalid("gzip header cut short"));
            }
        }
    }
    if flags & FHCRC != 0 {
        let mut crc = [0u8; 2];
        inner.read_exact(&mut crc)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Write;

    fn data(size: usize) -> Vec<u8> {
        (0..size)
            .map(|i| ((i * 7) % 251) as u8 ^ (i / 997) as u8)
            .collect()
    }

    fn flate2_gzip(input: &[u8], builder: flate2::GzBuilder) -> Vec<u8> {
        let mut e = builder.write(Vec::new(), flate2::Compression::new(6));
        e.write_all(input).unwrap();
        e.finish().unwrap()
    }

    fn read_all(packed: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        GzipReader::new(io::BufReader::with_capacity(1000, packed)).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn members_with_every_header_field_are_read_back() {
        let (a, b) = (data(300_001), data(5));
        // Python's tarfile (barman-cloud) writes the file name; extra field and comment too.
        let mut packed = flate2_gzip(
            &a,
            flate2::GzBuilder::new()
                .filename("data.tar")
                .comment("c")
                .extra(vec![1, 2, 3]),
        );
        packed.extend(flate2_gzip(&b, flate2::GzBuilder::new()));
        packed.extend(crate::parallel_gzip::gzip(&[], 6).unwrap());
        assert_eq!(read_all(&packed).unwrap(), [a, b].concat());
    }

    #[test]
    fn corrupt_cut_short_and_empty_streams_are_errors() {
        let input = data(100_000);
        let packed = flate2_gzip(&input, flate2::GzBuilder::new());
        let mut corrupt = packed.clone();
        let n = corrupt.len();
        corrupt[n - 6] ^= 1; // the CRC
        let e = read_all(&corrupt).unwrap_err();
        assert!(e.to_string().contains("corrupt"), "{e}");
        for cut in [n - 1, n - 8, n / 2, 5] {
            assert!(read_all(&packed[..cut]).is_err(), "cut at {cut}");
        }
        assert!(read_all(&[]).is_err());
        assert!(read_all(b"not gzip at all").is_err());
    }
}
