//! The card as the boards' block device (feature `board`): [`picogpt_board::block::BlockDevice`],
//! so the common read path (FAT extents, windows of many blocks) runs over SDIO exactly as
//! over SPI, each window one CMD18 … CMD12, with the bus traffic counted for the board's
//! `sd per token:` line.

use picogpt_board::block::BlockDevice;
use picogpt_board::meter::{Metered, Traffic};

use crate::card::{Card, Error};
use crate::data::BLOCK_BYTES;
use crate::sm::StateMachine;

/// Bytes on the four DAT lines besides a block's data: each line's CRC16 and end bit, and
/// the start bit.
const BLOCK_FRAMING_BYTES: u64 = 9;

/// Bytes of a command and its 48-bit response on CMD.
const COMMAND_BYTES: u64 = 12;

/// A [`Card`] identified on first use (and again after [`SdioCard::restart`]), counting what
/// its bus carries.
pub struct SdioCard<S> {
    card: Card<S>,
    traffic: Traffic,
}

impl<S: StateMachine> SdioCard<S> {
    /// Wraps a card (not yet identified).
    pub fn new(card: Card<S>) -> Self {
        Self { card, traffic: Traffic::default() }
    }

    /// Identifies the card again (it may have been swapped) and returns its size in bytes.
    pub fn restart(&mut self) -> Result<u64, Error> {
        let info = self.card.init()?;
        Ok(u64::from(info.blocks) * BLOCK_BYTES as u64)
    }

    /// The card, for anything this interface does not cover.
    pub fn card(&mut self) -> &mut Card<S> {
        &mut self.card
    }

    fn ready(&mut self) -> Result<(), Error> {
        if self.card.info().is_none() {
            self.card.init()?;
        }
        Ok(())
    }

    /// Counts a transfer of `blocks` blocks: one command and, for several blocks, CMD12.
    fn count(&mut self, blocks: usize, read: bool) {
        let t = &mut self.traffic;
        let commands = if read && blocks > 1 { 2 } else { 1 };
        t.commands += commands;
        t.bus_bytes +=
            commands * COMMAND_BYTES + blocks as u64 * (BLOCK_BYTES as u64 + BLOCK_FRAMING_BYTES);
        if read {
            t.blocks_read += blocks as u64;
            if blocks > 1 {
                t.multi_reads += 1;
            } else {
                t.single_reads += 1;
            }
        } else {
            t.writes += 1;
            t.blocks_written += blocks as u64;
        }
    }
}

/// The card's counts of commands and bytes (retried blocks are not counted again).
impl<S> Metered for SdioCard<S> {
    fn traffic(&self) -> Traffic {
        self.traffic
    }
}

impl<S: StateMachine> BlockDevice for SdioCard<S> {
    type Error = Error;

    fn block_count(&mut self) -> Result<u32, Error> {
        self.ready()?;
        Ok(self.card.info().map_or(0, |info| info.blocks))
    }

    fn read_blocks(&mut self, first: u32, buf: &mut [u8]) -> Result<(), Error> {
        self.ready()?;
        let (blocks, rest) = buf.as_chunks_mut::<BLOCK_BYTES>();
        if !rest.is_empty() {
            return Err(Error::PartialBlock { bytes: blocks.len() * BLOCK_BYTES + rest.len() });
        }
        self.card.read(first, blocks)?;
        self.count(blocks.len(), true);
        Ok(())
    }

    fn write_blocks(&mut self, first: u32, data: &[u8]) -> Result<(), Error> {
        self.ready()?;
        let (blocks, rest) = data.as_chunks::<BLOCK_BYTES>();
        if !rest.is_empty() {
            return Err(Error::PartialBlock { bytes: blocks.len() * BLOCK_BYTES + rest.len() });
        }
        self.card.write(first, blocks)?;
        self.count(blocks.len(), false);
        Ok(())
    }
}
