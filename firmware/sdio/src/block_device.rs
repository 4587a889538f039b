//! The card as embedded-sdmmc's [`BlockDevice`] (feature `block-device`), so its volume
//! manager finds files on it and a multi-block `read` is one CMD18 ... CMD12.

use core::cell::RefCell;

use embedded_sdmmc::{Block, BlockCount, BlockDevice, BlockIdx};

use crate::card::{BlockBuf, Card, Error};
use crate::data::BLOCK_BYTES;
use crate::sm::StateMachine;

impl BlockBuf for Block {
    fn bytes(&self) -> &[u8; BLOCK_BYTES] {
        &self.contents
    }
    fn bytes_mut(&mut self) -> &mut [u8; BLOCK_BYTES] {
        &mut self.contents
    }
}

/// A [`Card`] behind a `RefCell`, as `BlockDevice`'s `&self` methods need; identified on first
/// use, again after [`SdioCard::restart`].
pub struct SdioCard<S> {
    card: RefCell<Card<S>>,
}

impl<S: StateMachine> SdioCard<S> {
    /// Wraps a card (not yet identified).
    pub fn new(card: Card<S>) -> Self {
        Self { card: RefCell::new(card) }
    }

    /// Identifies the card again (it may have been swapped) and returns its size in bytes.
    pub fn restart(&self) -> Result<u64, Error> {
        let info = self.card.borrow_mut().init()?;
        Ok(u64::from(info.blocks) * BLOCK_BYTES as u64)
    }

    /// The card, for anything this interface does not cover.
    pub fn card(&self) -> &RefCell<Card<S>> {
        &self.card
    }

    fn ready(&self) -> Result<(), Error> {
        let mut card = self.card.borrow_mut();
        if card.info().is_none() {
            card.init()?;
        }
        Ok(())
    }
}

impl<S: StateMachine> BlockDevice for SdioCard<S> {
    type Error = Error;

    fn read(&self, blocks: &mut [Block], start: BlockIdx) -> Result<(), Error> {
        self.ready()?;
        self.card.borrow_mut().read(start.0, blocks)
    }

    fn write(&self, blocks: &[Block], start: BlockIdx) -> Result<(), Error> {
        self.ready()?;
        self.card.borrow_mut().write(start.0, blocks)
    }

    fn num_blocks(&self) -> Result<BlockCount, Error> {
        self.ready()?;
        let blocks = self.card.borrow().info().map_or(0, |info| info.blocks);
        Ok(BlockCount(blocks))
    }
}
