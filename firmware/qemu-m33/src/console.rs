//! Text out through semihosting, to QEMU's standard output, a line at a time.

use core::fmt;

use cortex_m_semihosting::nr::open::W_TRUNC;

use crate::semihost::{self, Handle, HostError};

/// Bytes gathered before a write call (a line is written as soon as it ends).
const LINE: usize = 160;

/// The host's terminal (`:tt`, opened for writing: standard output).
pub struct Console {
    handle: Handle,
    buf: [u8; LINE],
    len: usize,
}

impl Console {
    /// Opens the host's terminal.
    pub fn open() -> Result<Self, HostError> {
        let handle = semihost::open(c":tt", W_TRUNC)?;
        Ok(Self { handle, buf: [0; LINE], len: 0 })
    }

    /// Writes out what is gathered.
    pub fn flush(&mut self) -> fmt::Result {
        let pending = self.buf.get(..self.len).unwrap_or_default();
        self.len = 0;
        semihost::write(self.handle, pending).map_err(|_| fmt::Error)
    }
}

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
            if b == b'\n' || self.len == LINE {
                self.flush()?;
            }
        }
        Ok(())
    }
}
