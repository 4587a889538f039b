//! Reading a tensor front to back: through the chunk buffer, or in place when the storage
//! is memory ([`Storage::slice_at`]).

use crate::error::{Error, FormatError};
use crate::format::TensorId;
use crate::storage::Storage;

/// A storage plus the count of bytes read from it.
#[derive(Debug)]
pub(crate) struct Source<S> {
    pub(crate) storage: S,
    pub(crate) bytes_read: u64,
}

impl<S: Storage> Source<S> {
    /// Fills `buf` from `offset`, asking again after short reads; end of data is an error.
    pub(crate) fn read_exact<KE>(
        &mut self,
        offset: u64,
        buf: &mut [u8],
        tensor: Option<TensorId>,
    ) -> Result<(), Error<S::Error, KE>> {
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            let n = self
                .storage
                .read_at(at, &mut buf[done..])
                .map_err(|source| Error::Storage { source, offset: at, tensor })?;
            if n == 0 {
                return Err(Error::UnexpectedEof { offset: at, tensor });
            }
            let n = n.min(buf.len() - done);
            done += n;
            self.bytes_read += n as u64;
        }
        Ok(())
    }
}

/// Moves `buf[start..start + len]` to the front: a plain copy when the two do not overlap
/// (the usual case: a unit cut by the end of a read, far smaller than a read), which the
/// compiler turns into word moves.
fn move_to_front(buf: &mut [u8], start: usize, len: usize) {
    if start >= len {
        let (front, back) = buf.split_at_mut(start);
        front[..len].copy_from_slice(&back[..len]);
    } else {
        buf.copy_within(start..start + len, 0);
    }
}

/// Hands out a tensor's bytes in whole units (blocks), refilling the chunk buffer as needed.
///
/// The buffer is `chunk` bytes plus room for one unit: a unit cut by the end of a read is
/// moved to the front before the next read, so reads stay sequential and at most `chunk`
/// bytes, and no unit is ever split. A stream of matrix rows ([`Self::in_rows`]) ends each
/// read at a row's end when the buffer then holds at least one whole row, so its rows reach
/// the kernels whole; other streams read `chunk` bytes at a time (sector-aligned when `chunk`
/// is a multiple of 512). When the
/// storage holds the whole tensor in memory, the buffer is not used: every take is a slice
/// of the storage, and the whole rest of the tensor is "ready".
pub(crate) struct TensorStream<'a, S> {
    src: &'a mut Source<S>,
    buf: &'a mut [u8],
    chunk: usize,
    tensor: TensorId,
    next: u64,
    end: u64,
    /// The length of the tensor's rows (0: reads are not cut at rows), and how far into its
    /// row `next` is.
    row_bytes: usize,
    row_at: usize,
    start: usize,
    filled: usize,
    crc: Option<(crc32fast::Hasher, u32)>,
    /// The first read after this tensor, announced once its last chunk is in.
    then: Option<(u64, usize)>,
    /// The storage lends the tensor's bytes in place.
    borrowed: bool,
}

impl<'a, S: Storage> TensorStream<'a, S> {
    /// Streams bytes `offset..offset + len` of `tensor`; with `expected_crc`, checks them on
    /// [`Self::finish`].
    pub(crate) fn new(
        src: &'a mut Source<S>,
        buf: &'a mut [u8],
        chunk: usize,
        tensor: TensorId,
        offset: u64,
        len: u64,
        expected_crc: Option<u32>,
    ) -> Self {
        let borrowed =
            usize::try_from(len).is_ok_and(|len| src.storage.slice_at(offset, len).is_some());
        Self {
            src,
            buf,
            chunk,
            tensor,
            next: offset,
            end: offset + len,
            row_bytes: 0,
            row_at: 0,
            start: 0,
            filled: 0,
            crc: expected_crc.map(|c| (crc32fast::Hasher::new(), c)),
            then: None,
            borrowed,
        }
    }

    /// Announces `len` bytes at `offset` as the read that follows this tensor, so the
    /// storage can fetch them while the tensor's last chunk is being used.
    pub(crate) fn followed_by(mut self, offset: u64, len: usize) -> Self {
        self.then = Some((offset, len));
        self
    }

    /// Ends reads at the ends of the tensor's rows of `row_bytes` (from its first byte) when
    /// a read then still brings the buffer to a whole row, so rows are not cut between reads.
    pub(crate) fn in_rows(mut self, row_bytes: usize) -> Self {
        self.row_bytes = row_bytes;
        self
    }

    /// The next `1..=max_units` whole units of `unit` bytes (as many as are ready).
    pub(crate) fn take<KE>(
        &mut self,
        unit: usize,
        max_units: usize,
    ) -> Result<&[u8], Error<S::Error, KE>> {
        self.take_cut(unit, |ready| (ready / unit).min(max_units) * unit)
    }

    /// The next bytes: `cut(ready)` of the `ready` ones, where `ready ≥ min` (the buffer is
    /// refilled when fewer are) and the result is kept within `min..=ready`.
    pub(crate) fn take_cut<KE>(
        &mut self,
        min: usize,
        cut: impl FnOnce(usize) -> usize,
    ) -> Result<&[u8], Error<S::Error, KE>> {
        if self.borrowed {
            let ready = usize::try_from(self.end - self.next).unwrap_or(usize::MAX);
            if ready < min {
                return Err(Error::UnexpectedEof { offset: self.end, tensor: Some(self.tensor) });
            }
            let n = cut(ready).clamp(min, ready);
            let at = self.next;
            let tensor = Some(self.tensor);
            let bytes = self
                .src
                .storage
                .slice_at(at, n)
                .ok_or(Error::UnexpectedEof { offset: at, tensor })?;
            if let Some((hasher, _)) = &mut self.crc {
                hasher.update(bytes);
            }
            self.next += n as u64;
            self.src.bytes_read += n as u64;
            return Ok(bytes);
        }
        if self.filled - self.start < min {
            self.refill(min)?;
        }
        let ready = self.filled - self.start;
        let n = cut(ready).clamp(min, ready);
        let out = &self.buf[self.start..self.start + n];
        self.start += n;
        Ok(out)
    }

    fn refill<KE>(&mut self, min: usize) -> Result<(), Error<S::Error, KE>> {
        let kept = self.filled - self.start;
        move_to_front(self.buf, self.start, kept);
        self.start = 0;
        self.filled = kept;
        let room = (self.buf.len() - kept).min(self.chunk) as u64;
        let mut n = room.min(self.end - self.next) as usize;
        if self.row_bytes > 0 {
            // Bytes past the last row end the read would reach (the tensor's end is one).
            let over = (self.row_at + n) % self.row_bytes;
            let last = self.next + n as u64 == self.end;
            if !last && over < n && kept + n - over >= min.max(self.row_bytes) {
                n -= over;
            }
            self.row_at = (self.row_at + n) % self.row_bytes;
        }
        if kept + n < min {
            // The layout guarantees whole units; running out means the table lied.
            return Err(Error::UnexpectedEof { offset: self.end, tensor: Some(self.tensor) });
        }
        let dst = &mut self.buf[kept..kept + n];
        self.src.read_exact(self.next, dst, Some(self.tensor))?;
        if let Some((hasher, _)) = &mut self.crc {
            hasher.update(dst);
        }
        self.next += n as u64;
        self.filled = kept + n;
        if self.next < self.end {
            let ahead = (self.end - self.next).min(self.chunk as u64) as usize;
            self.src.storage.prefetch(self.next, ahead);
        } else if let Some((offset, len)) = self.then {
            self.src.storage.prefetch(offset, len);
        }
        Ok(())
    }

    /// Ends the stream; when checking, reads any bytes not yet consumed and compares CRCs.
    pub(crate) fn finish<KE>(mut self) -> Result<(), Error<S::Error, KE>> {
        let Some((_, expected)) = self.crc else {
            return Ok(());
        };
        while self.next < self.end {
            if self.borrowed {
                self.take_cut(1, |ready| ready)?;
            } else {
                self.start = self.filled;
                self.refill(1)?;
            }
        }
        if let Some((hasher, _)) = self.crc.take() {
            let found = hasher.finalize();
            if found != expected {
                let tensor = self.tensor;
                return Err(FormatError::Crc { tensor, expected, found }.into());
            }
        }
        Ok(())
    }
}
