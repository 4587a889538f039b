//! Double buffering on the host: a reader thread fetches the chunk core announced with
//! [`Storage::prefetch`] while core computes on the current one, as a board's DMA engine or
//! second core would. It also records how each read was served, to check the schedule.
//!
//! Both sides block on their channel rather than spin: on a machine with more busy threads
//! than cores, a thread spinning for its partner takes the core the partner needs, and every
//! chunk then waits for the scheduler (run --prefetch was 18× slower than plain reads that
//! way). What remains is a thread wake-up and one copy per chunk, which on the host cost
//! about what the page-cache read they hide costs; on a board the read is the slow part.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use picogpt_core::Storage;

use crate::file_storage::read_file_at;

/// How reads were served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefetchStats {
    /// Reads served from a chunk the reader thread had fetched ahead.
    pub hits: u64,
    /// Reads that had to wait for a synchronous read (nothing, or something else, was ahead).
    pub misses: u64,
    /// Prefetched chunks that were never asked for.
    pub wasted: u64,
}

/// A request to the reader thread, carrying a buffer to fill.
struct Request {
    offset: u64,
    buf: Vec<u8>,
}

/// What the reader thread sends back.
struct Filled {
    buf: Vec<u8>,
    result: io::Result<usize>,
}

/// A file read through a reader thread that stays one chunk ahead.
pub struct PrefetchingFile {
    file: File,
    len: u64,
    requests: Option<Sender<Request>>,
    filled: Receiver<Filled>,
    worker: Option<JoinHandle<()>>,
    /// Offset and length of the chunk in flight, if any.
    pending: Option<(u64, usize)>,
    spare: Vec<u8>,
    stats: PrefetchStats,
}

impl PrefetchingFile {
    /// Opens `path` and starts its reader thread.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let reader = file.try_clone()?;
        let (requests, inbox) = channel::<Request>();
        let (outbox, filled) = channel::<Filled>();
        let worker = std::thread::Builder::new().name("prefetch".into()).spawn(move || {
            while let Ok(Request { offset, mut buf }) = inbox.recv() {
                let result = read_file_at(&reader, &mut buf, offset);
                if outbox.send(Filled { buf, result }).is_err() {
                    break;
                }
            }
        })?;
        Ok(Self {
            file,
            len,
            requests: Some(requests),
            filled,
            worker: Some(worker),
            pending: None,
            spare: Vec::new(),
            stats: PrefetchStats::default(),
        })
    }

    /// How the reads so far were served.
    pub fn stats(&self) -> PrefetchStats {
        self.stats
    }

    /// Waits for the chunk in flight.
    fn collect(&mut self) -> Option<Filled> {
        self.pending.take()?;
        self.filled.recv().ok()
    }
}

impl Storage for PrefetchingFile {
    type Error = io::Error;

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let ahead = self.pending.filter(|&(o, len)| o == offset && len >= buf.len());
        match (ahead, self.collect()) {
            (Some(_), Some(filled)) => {
                self.stats.hits += 1;
                let n = filled.result?.min(buf.len());
                buf[..n].copy_from_slice(&filled.buf[..n]);
                self.spare = filled.buf;
                Ok(n)
            }
            (_, wasted) => {
                if let Some(filled) = wasted {
                    self.stats.wasted += 1;
                    self.spare = filled.buf;
                }
                self.stats.misses += 1;
                read_file_at(&self.file, buf, offset)
            }
        }
    }

    fn size(&mut self) -> io::Result<u64> {
        Ok(self.len)
    }

    fn prefetch(&mut self, offset: u64, len: usize) {
        if let Some(filled) = self.collect() {
            self.stats.wasted += 1;
            self.spare = filled.buf;
        }
        let mut buf = std::mem::take(&mut self.spare);
        buf.resize(len, 0);
        if let Some(requests) = &self.requests
            && requests.send(Request { offset, buf }).is_ok()
        {
            self.pending = Some((offset, len));
        }
    }
}

impl Drop for PrefetchingFile {
    fn drop(&mut self) {
        self.requests = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}
