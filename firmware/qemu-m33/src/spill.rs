//! The KV positions the RAM cannot hold, in a host file (`--kv-file PATH`) written and read
//! back over semihosting: the emulator's stand-in for `KV.BIN` on a board's SD card.

use picogpt_board::{Spill, SpillError};

use crate::host_file::{FileError, HostFile};

/// What the error says when a context needs more positions than the RAM holds and no file
/// was given.
const HINT: &str = "give --kv-file PATH to spill the rest to a host file, or shorten the \
                    prompt or -n";

/// The host file given with `--kv-file`, if any.
pub struct HostSpill<'a> {
    path: Option<&'a str>,
}

impl<'a> HostSpill<'a> {
    /// Spills to `path` when a generation needs it; without one, contexts must fit the RAM.
    pub fn new(path: Option<&'a str>) -> Self {
        Self { path }
    }
}

impl Spill for HostSpill<'_> {
    type Storage = HostFile;

    fn medium(&self) -> &'static str {
        "host"
    }

    fn name(&self) -> &str {
        self.path.unwrap_or_default()
    }

    fn available(&self) -> Result<(), &'static str> {
        self.path.map(|_| ()).ok_or(HINT)
    }

    fn open(&mut self, bytes: u64) -> Result<HostFile, SpillError<FileError>> {
        let path = self.path.ok_or(SpillError::Unavailable { hint: HINT })?;
        HostFile::create(path, bytes).map_err(|error| match error {
            FileError::Beyond4GiB { .. } => SpillError::TooLarge { what: "--kv-file", bytes },
            error => SpillError::Storage { what: "--kv-file", error },
        })
    }
}
