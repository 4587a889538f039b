//! core's [`Storage`] over a host file, read with ordinary positioned reads (no mmap), the
//! way a board reads its SD card.

use std::fs::File;
use std::io;
use std::path::Path;

use picogpt_core::Storage;

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
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::read_at(&self.file, buf, offset)
        }
        #[cfg(windows)]
        {
            std::os::windows::fs::FileExt::seek_read(&self.file, buf, offset)
        }
    }

    fn size(&mut self) -> io::Result<u64> {
        Ok(self.len)
    }
}
