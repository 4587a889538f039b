//! The one way weights arrive: reads at an offset into a caller's buffer, or, from storage
//! that is memory already, slices of it.

use core::convert::Infallible;
use core::fmt;

/// Random-access, read-only bytes: an SD-card file, external flash, a host file.
///
/// Implementations may return fewer bytes than asked (a short read); `core` asks again for
/// the rest, and treats a read of 0 bytes as the end of the data.
pub trait Storage {
    /// The storage's own failure.
    type Error: fmt::Debug + fmt::Display;

    /// Reads up to `buf.len()` bytes starting at `offset`; returns how many were read.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, Self::Error>;

    /// Total size in bytes.
    fn size(&mut self) -> Result<u64, Self::Error>;

    /// A hint: the next `read_at` will most likely ask for `len` bytes at `offset`. `core`
    /// gives it right after each chunk read, before computing on that chunk, so a storage
    /// with DMA, a second core or a reader thread can fetch the next chunk meanwhile (double
    /// buffering). The default does nothing.
    fn prefetch(&mut self, offset: u64, len: usize) {
        let _ = (offset, len);
    }

    /// The `len` bytes at `offset` in place, when the storage is addressable memory (a
    /// memory-mapped file on the host, XIP flash on a board, a buffer in a test); `None`
    /// otherwise, and for any range it does not hold entirely. The default is `None`.
    ///
    /// When it answers for a whole tensor, `core` computes on the returned slice instead of
    /// copying the bytes into the chunk buffer: the same forward pass, nothing moved. A
    /// storage must answer the same way for the same range for as long as it is borrowed.
    fn slice_at(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let _ = (offset, len);
        None
    }
}

impl<T: Storage + ?Sized> Storage for &mut T {
    type Error = T::Error;

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, Self::Error> {
        (**self).read_at(offset, buf)
    }

    fn size(&mut self) -> Result<u64, Self::Error> {
        (**self).size()
    }

    fn prefetch(&mut self, offset: u64, len: usize) {
        (**self).prefetch(offset, len);
    }

    fn slice_at(&self, offset: u64, len: usize) -> Option<&[u8]> {
        (**self).slice_at(offset, len)
    }
}

/// A pack that is already addressable memory: memory-mapped flash (XIP) or a test buffer.
#[derive(Clone, Copy, Debug)]
pub struct SliceStorage<'a> {
    data: &'a [u8],
}

impl<'a> SliceStorage<'a> {
    /// Wraps a byte slice.
    pub const fn new(data: &'a [u8]) -> Self {
        Self { data }
    }
}

impl Storage for SliceStorage<'_> {
    type Error = Infallible;

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, Infallible> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(self.data.len());
        let n = buf.len().min(self.data.len() - start);
        buf[..n].copy_from_slice(&self.data[start..start + n]);
        Ok(n)
    }

    fn size(&mut self) -> Result<u64, Infallible> {
        Ok(self.data.len() as u64)
    }

    fn slice_at(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(offset).ok()?;
        self.data.get(start..start.checked_add(len)?)
    }
}
