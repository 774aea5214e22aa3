//! The compressions barman-cloud uses, with its file extensions and stream formats: gzip
//! (`.gz`), bzip2 (`.bz2`), xz (`.xz`, the xz container), snappy (`.snappy`, the snappy
//! *framing* format python-snappy's `stream_compress` writes), zstd (`.zst`, zstd frames) and
//! lz4 (`.lz4`, the lz4 frame format).

use crate::parallel_gzip::ParallelGzEncoder;
use pgherd_api::barman::{DataCompression, WalCompression};
use std::io::{self, Read, Write};

/// The gzip level of every gzip stream the engine writes (Python's `gzip` module, which
/// barman-cloud uses, defaults to 9; pgBackRest and `gzip` itself to 6).
pub const GZIP_LEVEL: u32 = 6;

/// A compression algorithm barman-cloud knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// `.gz`
    Gzip,
    /// `.bz2`
    Bzip2,
    /// `.xz`
    Xz,
    /// `.snappy` (framing format)
    Snappy,
    /// `.zst`
    Zstd,
    /// `.lz4` (frame format)
    Lz4,
}

impl Compression {
    /// Every algorithm, in barman's order of extension lookup.
    pub const ALL: [Compression; 6] = [
        Compression::Gzip,
        Compression::Bzip2,
        Compression::Xz,
        Compression::Snappy,
        Compression::Zstd,
        Compression::Lz4,
    ];

    /// The file extension barman appends, with its dot.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Gzip => ".gz",
            Compression::Bzip2 => ".bz2",
            Compression::Xz => ".xz",
            Compression::Snappy => ".snappy",
            Compression::Zstd => ".zst",
            Compression::Lz4 => ".lz4",
        }
    }

    /// The name barman records (`compression=` in backup.info, `--compression` values).
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
            Compression::Snappy => "snappy",
            Compression::Zstd => "zstd",
            Compression::Lz4 => "lz4",
        }
    }

    /// The algorithm barman records under `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Compresses `data` in memory.
    pub fn compress(self, data: &[u8]) -> io::Result<Vec<u8>> {
        if self == Compression::Gzip {
            return crate::parallel_gzip::gzip(data, GZIP_LEVEL);
        }
        let mut encoder = Encoder::new(self, Vec::with_capacity(data.len() / 4))?;
        encoder.write_all(data)?;
        encoder.finish()
    }

    /// Decompresses `data` in memory.
    pub fn decompress(self, data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(data.len() * 4);
        self.decoder(data)?.read_to_end(&mut out)?;
        Ok(out)
    }

    /// A reader that decompresses `inner`.
    pub fn decoder<'a, R: Read + Send + 'a>(
        self,
        inner: R,
    ) -> io::Result<Box<dyn Read + Send + 'a>> {
        Ok(match self {
            Compression::Gzip => Box::new(crate::gzip_reader::GzipReader::new(
                io::BufReader::with_capacity(256 * 1024, inner),
            )),
            Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(inner)),
            Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(inner)),
            Compression::Snappy => Box::new(snap::read::FrameDecoder::new(inner)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(inner)?),
            Compression::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(inner)),
        })
    }
}

impl From<WalCompression> for Compression {
    fn from(c: WalCompression) -> Self {
        match c {
            WalCompression::Bzip2 => Compression::Bzip2,
            WalCompression::Gzip => Compression::Gzip,
            WalCompression::Lz4 => Compression::Lz4,
            WalCompression::Snappy => Compression::Snappy,
            WalCompression::Xz => Compression::Xz,
            WalCompression::Zstd => Compression::Zstd,
        }
    }
}

impl From<DataCompression> for Compression {
    fn from(c: DataCompression) -> Self {
        match c {
            DataCompression::Bzip2 => Compression::Bzip2,
            DataCompression::Gzip => Compression::Gzip,
            DataCompression::Lz4 => Compression::Lz4,
            DataCompression::Snappy => Compression::Snappy,
        }
    }
}

/// A writer that compresses into `W`; call [`Encoder::finish`] to write the trailer.
// One encoder exists per stream: the variants' size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Encoder<W: Write> {
    /// bzip2
    Bzip2(bzip2::write::BzEncoder<W>),
    /// xz
    Xz(liblzma::write::XzEncoder<W>),
    /// snappy framing format
    Snappy(snap::write::FrameEncoder<W>),
    /// zstd
    Zstd(zstd::stream::write::Encoder<'static, W>),
    /// lz4 frame
    Lz4(lz4_flex::frame::FrameEncoder<W>),
    /// gzip, compressed in blocks on one or more threads (one gzip member all the same)
    Gzip(ParallelGzEncoder<W>),
    /// no compression
    Plain(W),
}

impl<W: Write> std::fmt::Debug for Encoder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Encoder")
    }
}

impl<W: Write> Encoder<W> {
    /// Compresses with `compression` (or copies when `None`... use [`Encoder::plain`]).
    pub fn new(compression: Compression, inner: W) -> io::Result<Self> {
        Ok(match compression {
            // barman's defaults: gzip and bzip2 level 9 in Python's modules, xz preset 6,
            // zstd level 3; the formats do not depend on the level.
            // One worker: it compresses while the caller reads, and gzip's CRC is computed
            // with the CPU's carry-less multiply (see `parallel_gzip`).
            Compression::Gzip => Encoder::Gzip(ParallelGzEncoder::new(inner, GZIP_LEVEL, 1)?),
            Compression::Bzip2 => Encoder::Bzip2(bzip2::write::BzEncoder::new(
                inner,
                bzip2::Compression::new(9),
            )),
            Compression::Xz => Encoder::Xz(liblzma::write::XzEncoder::new(inner, 6)),
            Compression::Snappy => Encoder::Snappy(snap::write::FrameEncoder::new(inner)),
            Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(inner, 3)?),
            Compression::Lz4 => Encoder::Lz4(lz4_flex::frame::FrameEncoder::new(inner)),
        })
    }

    /// Compresses with `compression`, or passes through when `None`.
    pub fn maybe(compression: Option<Compression>, inner: W) -> io::Result<Self> {
        match compression {
            Some(c) => Self::new(c, inner),
            None => Ok(Encoder::Plain(inner)),
        }
    }

    /// Compresses with `compression` on `jobs` threads where the format allows it without
    /// changing what readers see (gzip: one member compressed in blocks, see
    /// [`crate::parallel_gzip`]); otherwise as [`Encoder::maybe`].
    pub fn parallel(compression: Option<Compression>, jobs: usize, inner: W) -> io::Result<Self> {
        match compression {
            Some(Compression::Gzip) => Ok(Encoder::Gzip(ParallelGzEncoder::new(
                inner, GZIP_LEVEL, jobs,
            )?)),
            _ => Self::maybe(compression, inner),
        }
    }

    /// Writes the end of the stream and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Bzip2(e) => e.finish(),
            Encoder::Xz(e) => e.finish(),
            Encoder::Snappy(e) => e.into_inner().map_err(|e| e.into_error()),
            Encoder::Zstd(e) => e.finish(),
            Encoder::Lz4(e) => e.finish().map_err(io::Error::other),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Plain(w) => Ok(w),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Bzip2(e) => e.write(buf),
            Encoder::Xz(e) => e.write(buf),
            Encoder::Snappy(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
            Encoder::Lz4(e) => e.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Plain(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Bzip2(e) => e.flush(),
            Encoder::Xz(e) => e.flush(),
            Encoder::Snappy(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
            Encoder::Lz4(e) => e.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Plain(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_algorithm() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for c in Compression::ALL {
            let packed = c.compress(&data).unwrap();
            assert!(packed.len() < data.len(), "{c:?} compresses");
            assert_eq!(c.decompress(&packed).unwrap(), data, "{c:?}");
            assert_eq!(Compression::from_name(c.name()), Some(c));
        }
    }

    #[test]
    fn magic_numbers_match_the_formats_barman_reads() {
        let magic = |c: Compression| c.compress(b"hello").unwrap();
        assert_eq!(&magic(Compression::Gzip)[..2], &[0x1f, 0x8b]);
        assert_eq!(&magic(Compression::Bzip2)[..3], b"BZh");
        assert_eq!(
            &magic(Compression::Xz)[..6],
            &[0xfd, b'7', b'z', b'X', b'Z', 0]
        );
        // snappy framing format: stream identifier chunk
        assert_eq!(&magic(Compression::Snappy)[..10], b"\xff\x06\x00\x00sNaPpY");
        assert_eq!(&magic(Compression::Zstd)[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
        assert_eq!(&magic(Compression::Lz4)[..4], &[0x04, 0x22, 0x4d, 0x18]);
    }

    #[test]
    fn corrupt_input_is_an_error() {
        for c in Compression::ALL {
            assert!(c.decompress(b"definitely not compressed").is_err(), "{c:?}");
        }
    }
}
