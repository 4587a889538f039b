//! The seam between the read path and whatever carries the blocks: an SD card over SPI
//! ([`crate::sdspi::SdCard`]), a 4-bit SDIO host, a RAM disk in a test.
//!
//! The read path asks for runs of consecutive 512-byte blocks, one call per run (one
//! multi-block command, CMD18 … CMD12 on a card), and announces the run it will ask for next
//! with [`BlockDevice::read_ahead`], so a device with DMA can move it while the caller
//! computes. Devices that implement `embedded_sdmmc::BlockDevice` instead plug in through
//! [`FromSdmmc`]; the read path hands its own device to embedded-sdmmc (to find files and to
//! grow `KV.BIN`) through [`crate::card::SdmmcView`].

use core::fmt;

use embedded_sdmmc::{Block, BlockIdx};

use crate::meter::Metered;

/// Bytes per block: an SD card's sector.
pub const BLOCK_BYTES: usize = 512;

/// A device addressed in 512-byte blocks.
///
/// Buffers are whole blocks: `buf.len()` is a multiple of [`BLOCK_BYTES`] (callers guarantee
/// it; a device may reject anything else with its error).
pub trait BlockDevice {
    /// The device's failure, shown on a board's `error:` line.
    type Error: fmt::Debug + fmt::Display + 'static;

    /// Blocks the device holds.
    fn block_count(&mut self) -> Result<u32, Self::Error>;

    /// Reads `buf.len() / 512` consecutive blocks from block `first` into `buf`, in one
    /// multi-block transfer (on a card: one CMD18 … CMD12, or the continuation of the read
    /// that ended at `first`).
    fn read_blocks(&mut self, first: u32, buf: &mut [u8]) -> Result<(), Self::Error>;

    /// Writes `data` (`data.len() / 512` blocks) from block `first` on (on a card: CMD24, or
    /// CMD25 for more than one block).
    fn write_blocks(&mut self, first: u32, data: &[u8]) -> Result<(), Self::Error>;

    /// A hint: the next [`Self::read_blocks`] will most likely ask for `count` blocks from
    /// `first`. A device with DMA starts moving them now, into a buffer of its own, and the
    /// `read_blocks` that asks for them waits only for what is left; any other call first
    /// completes or abandons that transfer. Errors of a background transfer are reported by
    /// the call that claims it. The default does nothing.
    fn read_ahead(&mut self, first: u32, count: usize) {
        let _ = (first, count);
    }
}

impl<T: BlockDevice + ?Sized> BlockDevice for &mut T {
    type Error = T::Error;

    fn block_count(&mut self) -> Result<u32, Self::Error> {
        (**self).block_count()
    }

    fn read_blocks(&mut self, first: u32, buf: &mut [u8]) -> Result<(), Self::Error> {
        (**self).read_blocks(first, buf)
    }

    fn write_blocks(&mut self, first: u32, data: &[u8]) -> Result<(), Self::Error> {
        (**self).write_blocks(first, data)
    }

    fn read_ahead(&mut self, first: u32, count: usize) {
        (**self).read_ahead(first, count);
    }
}

/// An `embedded_sdmmc::BlockDevice` (an SDIO host, say) as a [`BlockDevice`]: each run is one
/// `read` or `write` call of up to `scratch.len()` blocks (so a host whose `read` of several
/// blocks is one CMD18 keeps that), copied through `scratch` because embedded-sdmmc moves
/// [`Block`]s rather than bytes. A device that implements [`BlockDevice`] itself skips the
/// copy and may also overlap transfers with [`BlockDevice::read_ahead`].
pub struct FromSdmmc<'s, D> {
    device: D,
    scratch: &'s mut [Block],
}

impl<'s, D: embedded_sdmmc::BlockDevice> FromSdmmc<'s, D> {
    /// Wraps `device`, moving blocks through `scratch` (as many blocks as one call should
    /// carry: the read path's window, ideally; at least one).
    pub fn new(device: D, scratch: &'s mut [Block]) -> Self {
        Self { device, scratch }
    }

    /// Gives the device back.
    pub fn into_inner(self) -> D {
        self.device
    }
}

/// embedded-sdmmc's trait has no counters: such a device reports no traffic.
impl<D> Metered for FromSdmmc<'_, D> {}

/// Why a [`FromSdmmc`] call failed.
#[derive(Debug)]
pub enum FromSdmmcError<E> {
    /// The device's own error.
    Device(E),
    /// No scratch block to move data through.
    NoScratch,
}

impl<E: fmt::Display> fmt::Display for FromSdmmcError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Device(e) => write!(f, "{e}"),
            Self::NoScratch => write!(f, "the block adapter was given no scratch blocks"),
        }
    }
}

impl<D: embedded_sdmmc::BlockDevice> BlockDevice for FromSdmmc<'_, D> {
    type Error = FromSdmmcError<D::Error>;

    fn block_count(&mut self) -> Result<u32, Self::Error> {
        self.device.num_blocks().map(|n| n.0).map_err(FromSdmmcError::Device)
    }

    fn read_blocks(&mut self, first: u32, buf: &mut [u8]) -> Result<(), Self::Error> {
        let per_call = self.scratch.len().max(1) * BLOCK_BYTES;
        let mut at = first;
        for piece in buf.chunks_mut(per_call) {
            let blocks = piece.len() / BLOCK_BYTES;
            let scratch = self.scratch.get_mut(..blocks).ok_or(FromSdmmcError::NoScratch)?;
            self.device.read(scratch, BlockIdx(at)).map_err(FromSdmmcError::Device)?;
            for (out, block) in piece.chunks_exact_mut(BLOCK_BYTES).zip(scratch.iter()) {
                out.copy_from_slice(&block.contents);
            }
            at += blocks as u32;
        }
        Ok(())
    }

    fn write_blocks(&mut self, first: u32, data: &[u8]) -> Result<(), Self::Error> {
        let per_call = self.scratch.len().max(1) * BLOCK_BYTES;
        let mut at = first;
        for piece in data.chunks(per_call) {
            let blocks = piece.len() / BLOCK_BYTES;
            let scratch = self.scratch.get_mut(..blocks).ok_or(FromSdmmcError::NoScratch)?;
            for (block, src) in scratch.iter_mut().zip(piece.chunks_exact(BLOCK_BYTES)) {
                block.contents.copy_from_slice(src);
            }
            self.device.write(scratch, BlockIdx(at)).map_err(FromSdmmcError::Device)?;
            at += blocks as u32;
        }
        Ok(())
    }
}
