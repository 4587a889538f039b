//! Storages that misbehave on purpose, for the tests and fuzz targets that hold core to its
//! promise: on a hostile pack or a failing card it returns a typed error, never panics,
//! never hangs and never reads outside the file.
//!
//! [`Recording`] serves a pack from memory with optional bit flips and checks that every
//! read stays within the file (like embassy's recording RAM flash); [`Faulty`] wraps any
//! storage and fails, shortens, ends early or slows down its reads.

use std::fmt;
use std::time::Duration;

use picogpt_core::Storage;

/// A pack in memory, read with bit flips applied, recording every read.
#[derive(Clone, Debug)]
pub struct Recording<'a> {
    data: &'a [u8],
    flips: Vec<(u64, u8)>,
    reads: u64,
    out_of_bounds: Option<(u64, usize)>,
}

impl<'a> Recording<'a> {
    /// Serves `data` as it is.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, flips: Vec::new(), reads: 0, out_of_bounds: None }
    }

    /// Serves `data` with the bits of `mask` flipped at each `(offset, mask)` (offsets past
    /// the end are ignored), without copying it.
    pub fn with_flips(data: &'a [u8], flips: Vec<(u64, u8)>) -> Self {
        Self { flips, ..Self::new(data) }
    }

    /// Calls of `read_at` so far.
    pub fn reads(&self) -> u64 {
        self.reads
    }

    /// The first read (offset, length) that asked for bytes past the end of the file, if any.
    pub fn out_of_bounds(&self) -> Option<(u64, usize)> {
        self.out_of_bounds
    }
}

impl Storage for Recording<'_> {
    type Error = std::convert::Infallible;

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.reads += 1;
        let len = self.data.len() as u64;
        if offset.checked_add(buf.len() as u64).is_none_or(|end| end > len) {
            self.out_of_bounds.get_or_insert((offset, buf.len()));
        }
        let start = offset.min(len) as usize;
        let n = buf.len().min(self.data.len() - start);
        buf[..n].copy_from_slice(&self.data[start..start + n]);
        for &(at, mask) in &self.flips {
            if let Some(i) = at.checked_sub(offset).filter(|&i| i < n as u64) {
                buf[i as usize] ^= mask;
            }
        }
        Ok(n)
    }

    fn size(&mut self) -> Result<u64, Self::Error> {
        Ok(self.data.len() as u64)
    }
}

/// How a [`Faulty`] storage misbehaves. Reads are numbered from 0, counting from the last
/// [`Faulty::arm`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Reads pass through.
    None,
    /// Read `k` fails with a [`FaultError`]; later reads succeed (a card that recovers).
    FailAt(u64),
    /// Every read from `k` on fails (a card that was pulled).
    FailFrom(u64),
    /// Read `k` returns 0 bytes (end of data) once.
    EofAt(u64),
    /// Every read at or past this file offset returns 0 bytes, although `size` says more (a
    /// file cut short under a stale length).
    EofBeyond(u64),
    /// `size` fails.
    FailSize,
    /// Each read returns at most `max` bytes, a pseudo-random number from 1 (seeded).
    Short {
        /// Most bytes one read returns.
        max: usize,
        /// Seed of the lengths.
        seed: u64,
    },
    /// Each read first sleeps this long.
    Slow(Duration),
}

/// The injected failure of a [`Faulty`] storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultError {
    /// Number of the read that failed (`u64::MAX` for `size`).
    pub read: u64,
    /// File offset it asked for.
    pub offset: u64,
}

impl fmt::Display for FaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "injected failure of read {} at offset {}", self.read, self.offset)
    }
}

impl std::error::Error for FaultError {}

/// Any storage, misbehaving as its [`Fault`] says.
#[derive(Debug)]
pub struct Faulty<S> {
    inner: S,
    fault: Fault,
    reads: u64,
    failed: Option<FaultError>,
}

impl<S: Storage> Faulty<S> {
    /// Wraps `inner`, misbehaving from the start.
    pub fn new(inner: S, fault: Fault) -> Self {
        Self { inner, fault, reads: 0, failed: None }
    }

    /// Switches to `fault` and restarts the read count.
    pub fn arm(&mut self, fault: Fault) {
        self.fault = fault;
        self.reads = 0;
        self.failed = None;
    }

    /// Reads since the last [`Self::arm`] (or since creation).
    pub fn reads(&self) -> u64 {
        self.reads
    }

    /// The last failure injected, if any.
    pub fn failed(&self) -> Option<FaultError> {
        self.failed
    }

    /// The wrapped storage.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: Storage> Storage for Faulty<S> {
    type Error = FaultError;

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, FaultError> {
        let read = self.reads;
        self.reads += 1;
        let fail = FaultError { read, offset };
        let mut len = buf.len();
        match self.fault {
            Fault::None | Fault::FailSize => {}
            Fault::FailAt(k) if read == k => {
                self.failed = Some(fail);
                return Err(fail);
            }
            Fault::FailFrom(k) if read >= k => {
                self.failed = Some(fail);
                return Err(fail);
            }
            Fault::EofAt(k) if read == k => return Ok(0),
            Fault::EofBeyond(end) if offset >= end => return Ok(0),
            Fault::EofBeyond(end) => len = len.min((end - offset) as usize),
            Fault::Short { max, seed } => {
                len = len.min(1 + (mix(seed ^ read) % max as u64) as usize)
            }
            Fault::Slow(pause) => std::thread::sleep(pause),
            Fault::FailAt(_) | Fault::FailFrom(_) | Fault::EofAt(_) => {}
        }
        // The inner storage's own failure is reported as a failure of this read.
        self.inner.read_at(offset, &mut buf[..len]).map_err(|_| fail)
    }

    fn size(&mut self) -> Result<u64, FaultError> {
        let fail = FaultError { read: u64::MAX, offset: 0 };
        if self.fault == Fault::FailSize {
            return Err(fail);
        }
        self.inner.size().map_err(|_| fail)
    }
}

/// SplitMix64's finalizer: well-spread pseudo-random lengths from a counter.
fn mix(x: u64) -> u64 {
    let x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_applies_flips_and_flags_reads_past_the_end() {
        let data = [1u8, 2, 3, 4];
        let mut s = Recording::with_flips(&data, vec![(2, 0xff), (9, 1)]);
        let mut buf = [0u8; 3];
        assert_eq!(s.read_at(1, &mut buf), Ok(3));
        assert_eq!(buf, [2, 0xfc, 4]);
        assert_eq!(s.out_of_bounds(), None);
        assert_eq!(s.read_at(3, &mut buf), Ok(1));
        assert_eq!(s.out_of_bounds(), Some((3, 3)));
        assert_eq!(s.reads(), 2);
    }

    #[test]
    fn faulty_fails_once_then_recovers() {
        let data = [7u8; 16];
        let mut s = Faulty::new(Recording::new(&data), Fault::FailAt(1));
        let mut buf = [0u8; 4];
        assert_eq!(s.read_at(0, &mut buf), Ok(4));
        assert_eq!(s.read_at(4, &mut buf), Err(FaultError { read: 1, offset: 4 }));
        assert_eq!(s.read_at(4, &mut buf), Ok(4));
        s.arm(Fault::Short { max: 3, seed: 5 });
        let n = s.read_at(0, &mut buf).unwrap();
        assert!((1..=3).contains(&n), "{n}");
        s.arm(Fault::EofBeyond(10));
        assert_eq!(s.read_at(8, &mut buf), Ok(2));
        assert_eq!(s.read_at(10, &mut buf), Ok(0));
    }
}
