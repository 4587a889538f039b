//! core's [`Storage`] over a host file, read with ordinary positioned reads (no mmap), the
//! way a board reads its SD card.

use std::fs::File;
use std::io;
use std::path::Path;

use picogpt_core::{Storage, StorageMut};

/// A packed file opened for chunked reads.
#[derive(Debug)]
pub struct FileStorage {
    file: File,
    len: u64,
}

impl FileStorage {
    /// Opens `path` read-only.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(Self { file, len })
    }
}

impl Storage for FileStorage {
    type Error = io::Error;

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        read_file_at(&self.file, buf, offset)
    }

    fn size(&mut self) -> io::Result<u64> {
        Ok(self.len)
    }
}

/// A temporary file for the part of the KV cache that does not fit the RAM budget, deleted
/// when dropped: the host's stand-in for a preallocated file on the SD card.
#[derive(Debug)]
pub struct KvFile {
    file: File,
    len: u64,
}

impl KvFile {
    /// Creates and preallocates `len` bytes.
    pub fn create(len: u64) -> io::Result<Self> {
        let file = tempfile::tempfile()?;
        file.set_len(len)?;
        Ok(Self { file, len })
    }
}

impl Storage for KvFile {
    type Error = io::Error;

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        read_file_at(&self.file, buf, offset)
    }

    fn size(&mut self) -> io::Result<u64> {
        Ok(self.len)
    }
}

impl StorageMut for KvFile {
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::write_all_at(&self.file, buf, offset)
        }
        #[cfg(windows)]
        {
            let mut done = 0;
            while done < buf.len() {
                let at = offset + done as u64;
                done += std::os::windows::fs::FileExt::seek_write(&self.file, &buf[done..], at)?;
            }
            Ok(())
        }
    }
}

/// One positioned read, without moving a shared file cursor.
pub(crate) fn read_file_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        std::os::windows::fs::FileExt::seek_read(file, buf, offset)
    }
}
