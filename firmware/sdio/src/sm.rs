//! What the protocol needs from the board: one PIO state machine, its FIFOs and a clock. The
//! board implements it over embassy-rp (DMA for data blocks); the host tests over a
//! simulated card; the emulation over the PyPI PIO emulator and a pin-level card.

use crate::programs::{Mode, Speed};

/// The largest block `receive_blocks` moves, in words: 512 data bytes and the CRC.
pub const MAX_BLOCK_WORDS: usize = crate::data::RECEIVE_WORDS;

/// Why [`StateMachine::receive_blocks`] stopped before the last block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveStop {
    /// Block `n` (counted from 0) did not arrive in time.
    Timeout(usize),
    /// The sink refused block `n` (its CRC did not match).
    Rejected(usize),
}

/// One PIO state machine running the programs of [`crate::programs`], all loaded in its PIO
/// block, CLK driven by its side-set. Time limits are microseconds.
pub trait StateMachine {
    /// Stops the state machine, empties its FIFOs, sets it up for `mode` with the divider of
    /// `speed` and starts it at the mode's program's first instruction (a `pull`).
    fn start(&mut self, mode: Mode, speed: Speed);

    /// Puts `word` in the TX FIFO; false if there was no room within `timeout_us`.
    fn push(&mut self, word: u32, timeout_us: u32) -> bool;

    /// Takes a word from the RX FIFO; `None` if none arrived within `timeout_us`.
    fn pop(&mut self, timeout_us: u32) -> Option<u32>;

    /// Waits until the program has taken every pushed word and parked at its first `pull`
    /// (the clock stopped); false if it did not within `timeout_us`.
    fn wait_parked(&mut self, timeout_us: u32) -> bool;

    /// Microseconds since some fixed moment (for the power-up loop's deadline).
    fn micros(&mut self) -> u64;

    /// With `receive` running, receives `count` blocks of `nibbles` nibbles (a multiple of 8)
    /// each, pushing one count word per block, and hands each block's words to `sink` in
    /// order; stops at the first block that does not arrive within `timeout_us` or that
    /// `sink` refuses (returns false). The board overrides this with DMA; this default
    /// moves words one by one.
    fn receive_blocks(
        &mut self,
        nibbles: u32,
        count: usize,
        timeout_us: u32,
        sink: &mut dyn FnMut(usize, &[u32]) -> bool,
    ) -> Result<(), ReceiveStop> {
        let words = ((nibbles / 8) as usize).min(MAX_BLOCK_WORDS);
        let mut block = [0u32; MAX_BLOCK_WORDS];
        let mut credited = 0;
        for n in 0..count {
            // Keep the next block's count queued so the program never waits for it.
            while credited < count && credited <= n + 1 {
                if !self.push(nibbles - 1, timeout_us) {
                    return Err(ReceiveStop::Timeout(n));
                }
                credited += 1;
            }
            for word in block.iter_mut().take(words) {
                *word = self.pop(timeout_us).ok_or(ReceiveStop::Timeout(n))?;
            }
            if !sink(n, &block[..words]) {
                return Err(ReceiveStop::Rejected(n));
            }
        }
        Ok(())
    }
}
