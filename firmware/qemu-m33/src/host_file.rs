//! core's [`Storage`] over a host file read through semihosting: the packed file stays on the
//! host and is read 16 KiB at a time, the way a board reads its SD card. A file created
//! read-write is also a [`StorageMut`], for the KV positions the RAM cannot hold.

use core::ffi::CStr;
use core::fmt;

use cortex_m_semihosting::nr::open::{R_BINARY, RW_TRUNC_BINARY};
use picogpt_board::Metered;
use picogpt_core::{Storage, StorageMut};

use crate::semihost::{self, Handle, HostError};

/// Most bytes one read asks the host for (core retries short reads): a board's read.
const READ_MAX: usize = picogpt_board::CHUNK_BYTES;
/// Longest path accepted, NUL included.
const PATH_MAX: usize = 256;

/// Why the file could not be opened or read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileError {
    /// The path does not fit the guest's buffer.
    PathTooLong,
    /// The host refused a call.
    Host(HostError),
    /// Semihosting seeks are 32-bit: the file is larger than the guest can address.
    Beyond4GiB {
        /// Offset asked for.
        offset: u64,
    },
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PathTooLong => write!(f, "path longer than {} bytes", PATH_MAX - 1),
            Self::Host(e) => write!(f, "{e}"),
            Self::Beyond4GiB { offset } => {
                write!(f, "offset {offset} is beyond the 4 GiB semihosting can seek to")
            }
        }
    }
}

impl From<HostError> for FileError {
    fn from(e: HostError) -> Self {
        Self::Host(e)
    }
}

/// A host file opened for reading (or created for reading and writing).
pub struct HostFile {
    handle: Handle,
    len: u64,
    /// Where the host's file position is, to skip needless seeks.
    pos: u64,
}

impl HostFile {
    /// Opens `path` (relative to QEMU's working directory) read-only.
    pub fn open(path: &str) -> Result<Self, FileError> {
        let handle = semihost::open(c_path(path, &mut [0u8; PATH_MAX])?, R_BINARY)?;
        match semihost::flen(handle) {
            Ok(len) => Ok(Self { handle, len, pos: 0 }),
            Err(e) => {
                let _ = semihost::close(handle);
                Err(e.into())
            }
        }
    }

    /// Creates (or truncates) `path` for reading and writing, `len` bytes long (of zeros).
    pub fn create(path: &str, len: u64) -> Result<Self, FileError> {
        let last = len.saturating_sub(1);
        let at = u32::try_from(last).map_err(|_| FileError::Beyond4GiB { offset: last })?;
        let handle = semihost::open(c_path(path, &mut [0u8; PATH_MAX])?, RW_TRUNC_BINARY)?;
        let mut file = Self { handle, len: 0, pos: 0 };
        // Writing the last byte sets the length; the host fills the gap with zeros.
        if len > 0 {
            semihost::seek(handle, at)?;
            semihost::write(handle, &[0])?;
            (file.len, file.pos) = (len, len);
        }
        Ok(file)
    }

    /// Moves the host's file position to `offset`, unless it is there.
    fn seek(&mut self, offset: u64) -> Result<(), FileError> {
        if offset != self.pos {
            let at = u32::try_from(offset).map_err(|_| FileError::Beyond4GiB { offset })?;
            semihost::seek(self.handle, at)?;
            self.pos = offset;
        }
        Ok(())
    }
}

/// `path` with a NUL, in `buf`.
fn c_path<'b>(path: &str, buf: &'b mut [u8; PATH_MAX]) -> Result<&'b CStr, FileError> {
    let bytes = buf.get_mut(..path.len()).ok_or(FileError::PathTooLong)?;
    bytes.copy_from_slice(path.as_bytes());
    let with_nul = buf.get(..=path.len()).ok_or(FileError::PathTooLong)?;
    // The command line cannot carry a NUL, so the only one is the terminator.
    CStr::from_bytes_with_nul(with_nul).map_err(|_| FileError::PathTooLong)
}

impl Storage for HostFile {
    type Error = FileError;

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, FileError> {
        if offset >= self.len {
            return Ok(0);
        }
        let n = buf.len().min(READ_MAX).min((self.len - offset) as usize);
        self.seek(offset)?;
        let read = semihost::read(self.handle, buf.get_mut(..n).unwrap_or_default())?;
        self.pos += read as u64;
        Ok(read)
    }

    fn size(&mut self) -> Result<u64, FileError> {
        Ok(self.len)
    }
}

impl StorageMut for HostFile {
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), FileError> {
        self.seek(offset)?;
        semihost::write(self.handle, buf)?;
        self.pos += buf.len() as u64;
        self.len = self.len.max(self.pos);
        Ok(())
    }
}

/// Semihosting has no bus to count: nothing to report per token.
impl Metered for HostFile {}

impl Drop for HostFile {
    fn drop(&mut self) {
        let _ = semihost::close(self.handle);
    }
}
