//! Block-parallel gzip, written the way pigz writes it: one gzip member (so a streaming reader
//! such as Python's `tarfile` in `r|gz` mode, which barman-cloud-restore uses, and `gzip -d`
//! read it like any other), whose deflate data is the concatenation of independently
//! compressed blocks. Each block is deflated on a worker thread with the previous block's last
//! 32 KiB of input as its preset dictionary (so matches across the boundary are not lost) and ends with
//! a sync flush (an empty stored block, which leaves the bit stream byte-aligned), except the
//! last, which ends the deflate stream. Each worker also computes its block's CRC-32; the
//! writer combines them in order for the gzip trailer.

use crc32fast::Hasher as Crc;
use flate2::{Compress, FlushCompress, Status};
use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

/// Uncompressed bytes per block (pigz uses 128 KiB; larger blocks mean fewer hand-offs).
pub const DEFAULT_BLOCK_SIZE: usize = 256 * 1024;

/// The deflate window: how much of the previous block a block may refer to.
const WINDOW: usize = 32 * 1024;

/// gzip header: magic, deflate, no flags, no mtime, no extra flags, OS unknown (as flate2's
/// `GzEncoder` writes it).
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

struct Job {
    input: Vec<u8>,
    dictionary: Arc<[u8]>,
    last: bool,
    reply: mpsc::SyncSender<io::Result<Block>>,
}

struct Block {
    output: Vec<u8>,
    crc: Crc,
    /// Input bytes (modulo 2^32, as gzip's trailer keeps them).
    size: u32,
}

/// A `Write` that gzips into `W` with `jobs` worker threads; call
/// [`ParallelGzEncoder::finish`] to write the end of the stream.
pub struct ParallelGzEncoder<W: Write> {
    inner: W,
    block_size: usize,
    block: Vec<u8>,
    dictionary: Arc<[u8]>,
    jobs: Option<mpsc::SyncSender<Job>>,
    pending: VecDeque<mpsc::Receiver<io::Result<Block>>>,
    max_pending: usize,
    workers: Vec<JoinHandle<()>>,
    crc: Crc,
    size: u32,
    header_written: bool,
}

impl<W: Write> std::fmt::Debug for ParallelGzEncoder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParallelGzEncoder")
            .field("block_size", &self.block_size)
            .field("workers", &self.workers.len())
            .finish()
    }
}

impl<W: Write> ParallelGzEncoder<W> {
    /// Compresses at `level` (0-9) with `jobs` worker threads (at least 1).
    pub fn new(inner: W, level: u32, jobs: usize) -> io::Result<Self> {
        Self::with_block_size(inner, level, jobs, DEFAULT_BLOCK_SIZE)
    }

    /// [`ParallelGzEncoder::new`] with `block_size` bytes of input per block (at least 1).
    pub fn with_block_size(
        inner: W,
        level: u32,
        jobs: usize,
        block_size: usize,
    ) -> io::Result<Self> {
        let jobs = jobs.max(1);
        let block_size = block_size.max(1);
        let (tx, rx) = mpsc::sync_channel::<Job>(jobs);
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..jobs)
            .map(|i| {
                let rx = Arc::clone(&rx);
                std::thread::Builder::new()
                    .name(format!("gzip-{i}"))
                    .spawn(move || worker(&rx, level))
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(ParallelGzEncoder {
            inner,
            block_size,
            block: Vec::with_capacity(block_size),
            dictionary: Arc::from(&[][..]),
            jobs: Some(tx),
            pending: VecDeque::new(),
            // Enough blocks in flight to keep every worker busy while the writer collects.
            max_pending: 2 * jobs,
            workers,
            crc: Crc::new(),
            size: 0,
            header_written: false,
        })
    }

    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        let input = std::mem::replace(&mut self.block, Vec::with_capacity(self.block_size));
        // The next block's dictionary: the last 32 KiB of everything so far (more than this
        // block when blocks are smaller than the window).
        let keep = WINDOW
            .saturating_sub(input.len())
            .min(self.dictionary.len());
        let mut window = Vec::with_capacity(WINDOW);
        window.extend_from_slice(&self.dictionary[self.dictionary.len() - keep..]);
        window.extend_from_slice(&input[input.len().saturating_sub(WINDOW)..]);
        let next_dictionary: Arc<[u8]> = Arc::from(window);
        let (reply, result) = mpsc::sync_channel(1);
        let job = Job {
            input,
            dictionary: std::mem::replace(&mut self.dictionary, next_dictionary),
            last,
            reply,
        };
        self.jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("the gzip encoder is finished"))?
            .send(job)
            .map_err(|_| io::Error::other("the gzip workers stopped"))?;
        self.pending.push_back(result);
        while self.pending.len() > self.max_pending {
            self.collect_one()?;
        }
        // Pass on whatever is already done, so the output streams as it is made.
        while let Some(front) = self.pending.front() {
            match front.try_recv() {
                Ok(block) => {
                    self.pending.pop_front();
                    self.emit(block)?;
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return Err(worker_failed()),
            }
        }
        Ok(())
    }

    fn collect_one(&mut self) -> io::Result<()> {
        let Some(result) = self.pending.pop_front() else {
            return Ok(());
        };
        let block = result.recv().map_err(|_| worker_failed())?;
        self.emit(block)
    }

    fn emit(&mut self, block: io::Result<Block>) -> io::Result<()> {
        let block = block?;
        if !self.header_written {
            self.inner.write_all(&HEADER)?;
            self.header_written = true;
        }
        self.inner.write_all(&block.output)?;
        self.crc.combine(&block.crc);
        self.size = self.size.wrapping_add(block.size);
        Ok(())
    }

    /// Compresses what is left, writes the gzip trailer and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.dispatch(true)?;
        while !self.pending.is_empty() {
            self.collect_one()?;
        }
        self.jobs = None;
        for worker in self.workers.drain(..) {
            worker.join().map_err(|_| worker_failed())?;
        }
        self.inner.write_all(&self.crc.finalize().to_le_bytes())?;
        self.inner.write_all(&self.size.to_le_bytes())?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParallelGzEncoder<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let written = data.len();
        while !data.is_empty() {
            let room = self.block_size - self.block.len();
            let take = room.min(data.len());
            self.block.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.block.len() == self.block_size {
                self.dispatch(false)?;
            }
        }
        Ok(written)
    }

    /// Writes what is compressed so far; the current partial block stays buffered (flushing
    /// it would need a block boundary the output does not need).
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn worker_failed() -> io::Error {
    io::Error::other("a gzip worker thread failed")
}

fn worker(jobs: &Mutex<mpsc::Receiver<Job>>, level: u32) {
    let mut deflate = Compress::new(flate2::Compression::new(level), false);
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let result = compress_block(&mut deflate, &job.input, &job.dictionary, job.last);
        // The receiver is gone when the encoder was dropped without finishing.
        let _ = job.reply.send(result);
    }
}

/// Deflates `input` (raw deflate, no zlib header) with `dictionary` as the window before it,
/// ending with a sync flush, or with the end of the stream when `last`.
fn compress_block(
    deflate: &mut Compress,
    input: &[u8],
    dictionary: &[u8],
    last: bool,
) -> io::Result<Block> {
    deflate.reset();
    if !dictionary.is_empty() {
        deflate
            .set_dictionary(dictionary)
            .map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut output = Vec::with_capacity(input.len() / 2 + 1024);
    let mut consumed = 0;
    loop {
        if output.capacity() - output.len() < 64 {
            output.reserve(output.capacity().max(4096));
        }
        let before = deflate.total_in();
        let status = deflate
            .compress_vec(&input[consumed..], &mut output, flush)
            .map_err(io::Error::other)?;
        consumed += usize::try_from(deflate.total_in() - before).map_err(io::Error::other)?;
        let done = match status {
            Status::StreamEnd => true,
            // A flush is complete once all input is in and the output was not filled up.
            Status::Ok | Status::BufError => {
                !last && consumed == input.len() && output.len() < output.capacity()
            }
        };
        if done {
            break;
        }
    }
    let mut crc = Crc::new();
    crc.update(input);
    let size = input.len() as u64 as u32; // modulo 2^32, as gzip's trailer
    Ok(Block { output, crc, size })
}

/// `data` gzipped in one go on this thread at `level` (the same stream as the encoder's with
/// one block).
pub fn gzip(data: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let mut deflate = Compress::new(flate2::Compression::new(level), false);
    let block = compress_block(&mut deflate, data, &[], true)?;
    let mut out = Vec::with_capacity(HEADER.len() + block.output.len() + 8);
    out.extend_from_slice(&HEADER);
    out.extend_from_slice(&block.output);
    out.extend_from_slice(&block.crc.finalize().to_le_bytes());
    out.extend_from_slice(&block.size.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(data: &[u8]) -> Vec<u8> {
        // A single-member decoder: the output must be one gzip member.
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// Deterministic data mixing repeats (compressible, with matches across blocks) and noise.
    fn data(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let word = (state >> 33) as u32;
            if word.is_multiple_of(3) {
                out.extend_from_slice(b"pgherd base backup block ");
            } else {
                out.extend_from_slice(&word.to_le_bytes());
            }
        }
        out.truncate(len);
        out
    }

    fn gzip(input: &[u8], jobs: usize, block: usize, write_size: usize) -> Vec<u8> {
        let mut enc = ParallelGzEncoder::with_block_size(Vec::new(), 6, jobs, block).unwrap();
        for chunk in input.chunks(write_size.max(1)) {
            enc.write_all(chunk).unwrap();
        }
        enc.finish().unwrap()
    }

    #[test]
    fn decompresses_to_the_input_for_sizes_around_block_boundaries() {
        let block = 1000;
        let sizes = [
            0,
            1,
            2,
            block - 1,
            block,
            block + 1,
            2 * block - 1,
            2 * block,
            2 * block + 1,
            WINDOW + 1,
            7 * block + 333,
            40 * block,
        ];
        for (i, &size) in sizes.iter().enumerate() {
            let input = data(size, i as u64);
            for jobs in [1, 2, 3] {
                for write_size in [1, 7, block, 4096] {
                    if write_size == 1 && size > 10_000 {
                        continue;
                    }
                    let packed = gzip(&input, jobs, block, write_size);
                    assert_eq!(&packed[..3], &[0x1f, 0x8b, 8], "size {size}");
                    assert_eq!(
                        gunzip(&packed),
                        input,
                        "size {size}, jobs {jobs}, writes of {write_size}"
                    );
                }
            }
        }
    }

    #[test]
    fn random_sizes_and_block_sizes_round_trip() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |m: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % m
        };
        for round in 0..40 {
            let size = usize::try_from(next(300_000)).unwrap();
            let block = usize::try_from(next(70_000) + 1).unwrap();
            let jobs = usize::try_from(next(4) + 1).unwrap();
            let write = usize::try_from(next(50_000) + 1).unwrap();
            let input = data(size, round);
            let packed = gzip(&input, jobs, block, write);
            assert_eq!(
                gunzip(&packed),
                input,
                "size {size}, block {block}, jobs {jobs}, writes of {write}"
            );
        }
    }

    #[test]
    fn the_trailer_holds_the_crc_and_size_of_the_whole_input() {
        let input = data(123_457, 9);
        let packed = gzip(&input, 2, 10_000, 4096);
        let n = packed.len();
        // flate2's own CRC-32: another implementation than the encoder's.
        let mut crc = flate2::Crc::new();
        crc.update(&input);
        assert_eq!(packed[n - 8..n - 4], crc.sum().to_le_bytes());
        assert_eq!(packed[n - 4..], 123_457u32.to_le_bytes());
    }

    #[test]
    fn one_shot_gzip_is_read_back_by_a_checking_decoder() {
        for size in [0, 1, 65_537, 1_000_003] {
            let input = data(size, 3);
            let packed = super::gzip(&input, 6).unwrap();
            // The decoder checks the trailer's CRC and size.
            assert_eq!(gunzip(&packed), input, "size {size}");
            let mut crc = flate2::Crc::new();
            crc.update(&input);
            let n = packed.len();
            assert_eq!(packed[n - 8..n - 4], crc.sum().to_le_bytes());
        }
    }

    #[test]
    fn the_dictionary_keeps_matches_across_blocks() {
        // 24 KiB of noise repeated, in 16 KiB blocks: a block repeats nothing of itself, only
        // what came before it, so without the previous block as its dictionary every block
        // would be stored about as large as it is.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let noise: Vec<u8> = (0..24 * 1024)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect();
        let input: Vec<u8> = noise.iter().copied().cycle().take(40 * 16 * 1024).collect();
        let parallel = gzip(&input, 2, 16 * 1024, 65536);
        assert!(
            parallel.len() < input.len() / 10,
            "{} bytes from {}",
            parallel.len(),
            input.len()
        );
        assert_eq!(gunzip(&parallel), input);
    }

    #[test]
    fn a_failing_writer_fails_the_encoder() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut enc = ParallelGzEncoder::with_block_size(Broken, 6, 2, 100).unwrap();
        let input = data(100_000, 1);
        let written = enc.write_all(&input);
        assert!(written.is_err() || enc.finish().is_err());
    }
}
