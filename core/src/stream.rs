//! Reading a tensor front to back through the chunk buffer.

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

/// Hands out a tensor's bytes in whole units (blocks), refilling the chunk buffer as needed.
///
/// The buffer is `chunk` bytes plus room for one unit: a unit cut by the end of a read is
/// moved to the front before the next read, so reads stay `chunk`-sized and sequential
/// (sector-aligned when `chunk` is a multiple of 512) and no unit is ever split.
pub(crate) struct TensorStream<'a, S> {
    src: &'a mut Source<S>,
    buf: &'a mut [u8],
    chunk: usize,
    tensor: TensorId,
    next: u64,
    end: u64,
    start: usize,
    filled: usize,
    crc: Option<(crc32fast::Hasher, u32)>,
    /// The first read after this tensor, announced once its last chunk is in.
    then: Option<(u64, usize)>,
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
        Self {
            src,
            buf,
            chunk,
            tensor,
            next: offset,
            end: offset + len,
            start: 0,
            filled: 0,
            crc: expected_crc.map(|c| (crc32fast::Hasher::new(), c)),
            then: None,
        }
    }

    /// Announces `len` bytes at `offset` as the read that follows this tensor, so the
    /// storage can fetch them while the tensor's last chunk is being used.
    pub(crate) fn followed_by(mut self, offset: u64, len: usize) -> Self {
        self.then = Some((offset, len));
        self
    }

    /// The next `1..=max_units` whole units of `unit` bytes (as many as are buffered).
    pub(crate) fn take<KE>(
        &mut self,
        unit: usize,
        max_units: usize,
    ) -> Result<&[u8], Error<S::Error, KE>> {
        if self.filled - self.start < unit {
            self.refill(unit)?;
        }
        let units = ((self.filled - self.start) / unit).min(max_units);
        let out = &self.buf[self.start..self.start + units * unit];
        self.start += units * unit;
        Ok(out)
    }

    fn refill<KE>(&mut self, unit: usize) -> Result<(), Error<S::Error, KE>> {
        let kept = self.filled - self.start;
        self.buf.copy_within(self.start..self.filled, 0);
        self.start = 0;
        self.filled = kept;
        let room = (self.buf.len() - kept).min(self.chunk) as u64;
        let n = room.min(self.end - self.next) as usize;
        if kept + n < unit {
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
            self.start = self.filled;
            self.refill(1)?;
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
