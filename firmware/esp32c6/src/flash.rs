//! A pack in the ESP32-C6's own flash, read through esp-storage (the ROM's SPI flash reads):
//! what answers when no SD card does. `espflash write-bin 0x200000 small.pgpt` puts one there,
//! after `host-tools flash-pack --board esp32c6 small.pgpt` has checked that it fits.
//!
//! The firmware and its partition table keep the first 2 MiB; a pack lives from
//! [`PACK_OFFSET`] to the end of the flash (2 MiB on a 4 MiB part, 6 MiB on the DevKitC-1's
//! 8 MiB): a small model, not GPT-2 124M.

use esp_storage::{FlashStorage, FlashStorageError};
use picogpt_board::Metered;
use picogpt_core::Storage;

/// Where a pack in flash starts.
pub const PACK_OFFSET: u32 = 0x20_0000;

/// The flash from [`PACK_OFFSET`] on, as core's storage.
pub struct FlashPack {
    flash: FlashStorage<'static>,
    len: u64,
}

impl FlashPack {
    /// The region after the firmware, if the flash extends past it.
    pub fn new(flash: FlashStorage<'static>) -> Self {
        let len = (flash.capacity() as u64).saturating_sub(u64::from(PACK_OFFSET));
        Self { flash, len }
    }
}

/// Why flash could not be read.
#[derive(Debug)]
pub struct FlashError(FlashStorageError);

impl core::fmt::Display for FlashError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "flash read failed ({:?})", self.0)
    }
}

impl Storage for FlashPack {
    type Error = FlashError;

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, FlashError> {
        if offset >= self.len {
            return Ok(0);
        }
        let n = buf.len().min((self.len - offset) as usize);
        let at = PACK_OFFSET + offset as u32;
        self.flash.read(at, &mut buf[..n]).map_err(FlashError)?;
        Ok(n)
    }

    fn size(&mut self) -> Result<u64, FlashError> {
        Ok(self.len)
    }
}

/// Flash has no bus to count.
impl Metered for FlashPack {}
