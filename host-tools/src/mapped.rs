//! core's [`Storage`] over a memory-mapped pack: core computes on the mapping in place
//! ([`Storage::slice_at`]), so no weight byte is copied out of the page cache.

use std::fs::File;
use std::io;
use std::path::Path;

use memmap2::{Mmap, MmapOptions};
use picogpt_core::Storage;

/// A pack mapped read-only into memory.
///
/// As with any mapping, the file must not be truncated or rewritten while it is open (the
/// packer only ever replaces a pack by renaming a new file over it, which leaves this
/// mapping intact).
#[derive(Debug)]
pub struct MappedFile {
    map: Mmap,
}

impl MappedFile {
    /// Maps `path` (its pages are faulted in up front, so the first pass is not slowed by
    /// page faults).
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        // SAFETY: read-only mapping of a file this process does not write; see the type's
        // documentation for what other processes must not do.
        let map = unsafe { MmapOptions::new().populate().map(&file)? };
        Ok(Self { map })
    }
}

impl Storage for MappedFile {
    type Error = io::Error;

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(self.map.len());
        let n = buf.len().min(self.map.len() - start);
        buf[..n].copy_from_slice(&self.map[start..start + n]);
        Ok(n)
    }

    fn size(&mut self) -> io::Result<u64> {
        Ok(self.map.len() as u64)
    }

    fn slice_at(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(offset).ok()?;
        self.map.get(start..start.checked_add(len)?)
    }
}
