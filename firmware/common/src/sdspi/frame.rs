//! A multi-block read as the card sends it over SPI, taken apart: for each block, `0xFF`
//! bytes while the card is busy, the start token `0xFE` (or an error token), 512 data bytes
//! and their CRC16. The bytes come in runs of any length (one DMA transfer, then top-ups);
//! [`Deframer::needed`] says how many more can be clocked without reading past the last block.

use crate::block::BLOCK_BYTES;
use crate::crc::crc16;

/// The token that starts a data block.
pub const START_TOKEN: u8 = 0xfe;

/// Bytes a block takes on the wire besides its gap: token, data, CRC.
pub const FRAME_BYTES: usize = 1 + BLOCK_BYTES + 2;

/// Why a read's bytes are not the blocks asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The card sent an error token instead of a block (out of range, ECC failed, …).
    Token {
        /// Index of the block in the run.
        block: usize,
        /// The token.
        token: u8,
    },
    /// A byte that is neither idle (`0xFF`) nor a token where a block should start.
    Garbage {
        /// Index of the block in the run.
        block: usize,
        /// The byte.
        byte: u8,
    },
    /// The card stayed busy longer than the limit before a block.
    Timeout {
        /// Index of the block in the run.
        block: usize,
    },
    /// The block's data does not match its CRC16.
    Crc {
        /// Index of the block in the run.
        block: usize,
        /// CRC sent by the card.
        sent: u16,
        /// CRC of the data received.
        found: u16,
    },
}

/// Where in a block the next byte belongs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    /// Waiting for the start token.
    Gap,
    /// Data byte `at` of the block.
    Data { at: usize },
    /// CRC byte `at` (0 or 1) of the block.
    Crc { at: usize, sent: u16 },
}

/// Takes the blocks of one read out of the bytes clocked in.
#[derive(Clone, Debug)]
pub struct Deframer {
    blocks: usize,
    done: usize,
    part: Part,
    gap: usize,
    max_gap: usize,
    gaps_total: usize,
}

impl Deframer {
    /// A read of `blocks` blocks, failing when the card is idle for more than `max_gap` bytes
    /// before one of them.
    pub fn new(blocks: usize, max_gap: usize) -> Self {
        Self { blocks, done: 0, part: Part::Gap, gap: 0, max_gap, gaps_total: 0 }
    }

    /// Blocks complete so far.
    pub fn done(&self) -> usize {
        self.done
    }

    /// Whether every block is in.
    pub fn is_complete(&self) -> bool {
        self.done == self.blocks
    }

    /// Idle bytes seen between the blocks so far.
    pub fn gap_bytes(&self) -> usize {
        self.gaps_total
    }

    /// The fewest bytes that finish the read if the card sends no more idle bytes: clocking
    /// this many never reads past the last block.
    pub fn needed(&self) -> usize {
        let rest = self.blocks.saturating_sub(self.done);
        if rest == 0 {
            return 0;
        }
        let current = match self.part {
            Part::Gap => FRAME_BYTES,
            Part::Data { at } => BLOCK_BYTES - at + 2,
            Part::Crc { at, .. } => 2 - at,
        };
        current + (rest - 1) * FRAME_BYTES
    }

    /// Bytes that finish the block in progress, if the bytes so far stopped inside one (0
    /// between blocks).
    pub fn rest_of_block(&self) -> usize {
        match self.part {
            Part::Gap => 0,
            Part::Data { at } => BLOCK_BYTES - at + 2,
            Part::Crc { at, .. } => 2 - at,
        }
    }

    /// Takes in `raw`, the next bytes clocked from the card, putting block `i`'s data at
    /// `out[i * 512..]` (checked against its CRC) or, with no `out`, dropping it. Bytes after
    /// the last block are ignored: clock no more than [`Self::needed`].
    pub fn feed(&mut self, mut raw: &[u8], mut out: Option<&mut [u8]>) -> Result<(), FrameError> {
        while let Some((&byte, rest)) = raw.split_first().filter(|_| !self.is_complete()) {
            let block = self.done;
            match self.part {
                Part::Gap => {
                    raw = rest;
                    match byte {
                        0xff => {
                            self.gap += 1;
                            self.gaps_total += 1;
                            if self.gap > self.max_gap {
                                return Err(FrameError::Timeout { block });
                            }
                        }
                        START_TOKEN => {
                            self.gap = 0;
                            self.part = Part::Data { at: 0 };
                        }
                        token if token & 0xf0 == 0 => {
                            return Err(FrameError::Token { block, token });
                        }
                        byte => return Err(FrameError::Garbage { block, byte }),
                    }
                }
                Part::Data { at } => {
                    let n = raw.len().min(BLOCK_BYTES - at);
                    let (data, rest) = raw.split_at(n);
                    if let Some(dst) = out.as_deref_mut() {
                        let start = block * BLOCK_BYTES + at;
                        if let Some(dst) = dst.get_mut(start..start + n) {
                            dst.copy_from_slice(data);
                        }
                    }
                    raw = rest;
                    self.part = if at + n == BLOCK_BYTES {
                        Part::Crc { at: 0, sent: 0 }
                    } else {
                        Part::Data { at: at + n }
                    };
                }
                Part::Crc { at, sent } => {
                    raw = rest;
                    let sent = (sent << 8) | u16::from(byte);
                    if at == 0 {
                        self.part = Part::Crc { at: 1, sent };
                        continue;
                    }
                    if let Some(dst) = out.as_deref() {
                        let start = block * BLOCK_BYTES;
                        let data = dst.get(start..start + BLOCK_BYTES).unwrap_or_default();
                        let found = crc16(data);
                        if found != sent {
                            return Err(FrameError::Crc { block, sent, found });
                        }
                    }
                    self.done += 1;
                    self.part = Part::Gap;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec;
    use std::vec::Vec;

    use super::*;

    /// The bytes a card sends for `blocks`, with `gap` idle bytes before each.
    fn wire(blocks: &[Vec<u8>], gap: impl Fn(usize) -> usize) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, b) in blocks.iter().enumerate() {
            out.extend(std::iter::repeat_n(0xff, gap(i)));
            out.push(START_TOKEN);
            out.extend_from_slice(b);
            out.extend_from_slice(&crc16(b).to_be_bytes());
        }
        out
    }

    fn blocks(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| (0..512).map(|j| (i * 7 + j * 13) as u8).collect()).collect()
    }

    /// Feeds `raw` in pieces no longer than `piece` and never past `needed()`.
    fn run(
        d: &mut Deframer,
        raw: &[u8],
        piece: usize,
        out: &mut [u8],
    ) -> Result<usize, FrameError> {
        let mut at = 0;
        let mut calls = 0;
        while !d.is_complete() {
            let n = d.needed().min(piece).min(raw.len() - at);
            assert!(n > 0, "ran out of bytes");
            d.feed(&raw[at..at + n], Some(out))?;
            at += n;
            calls += 1;
        }
        assert_eq!(at, raw.len(), "stopped before the end");
        Ok(calls)
    }

    #[test]
    fn takes_blocks_out_of_any_split_without_reading_past_the_last() {
        let data = blocks(5);
        let raw = wire(&data, |i| [1, 0, 7, 300, 2][i]);
        for piece in [1, 3, 514, 515, 4096, usize::MAX] {
            let mut d = Deframer::new(5, 1000);
            let mut out = vec![0u8; 5 * 512];
            run(&mut d, &raw, piece, &mut out).unwrap();
            assert_eq!(out, data.concat(), "pieces of {piece}");
            assert_eq!(d.gap_bytes(), 310);
        }
    }

    #[test]
    fn a_first_transfer_of_the_frames_alone_leaves_the_gaps_for_a_top_up() {
        let data = blocks(3);
        let raw = wire(&data, |_| 1);
        let mut d = Deframer::new(3, 10);
        assert_eq!(d.needed(), 3 * FRAME_BYTES);
        let mut out = vec![0u8; 3 * 512];
        d.feed(&raw[..3 * FRAME_BYTES], Some(&mut out)).unwrap();
        assert_eq!(d.needed(), 3, "three idle bytes shifted the frames");
        d.feed(&raw[3 * FRAME_BYTES..], Some(&mut out)).unwrap();
        assert!(d.is_complete());
        assert_eq!(out, data.concat());
    }

    #[test]
    fn a_bad_crc_names_the_block() {
        let data = blocks(2);
        let mut raw = wire(&data, |_| 0);
        raw[FRAME_BYTES + 100] ^= 1;
        let mut d = Deframer::new(2, 10);
        let mut out = vec![0u8; 1024];
        let Err(FrameError::Crc { block, .. }) = run(&mut d, &raw, 600, &mut out) else {
            panic!("corruption not caught");
        };
        assert_eq!(block, 1);
        // Dropped data is not checked: the stream position is all that matters then.
        let mut d = Deframer::new(2, 10);
        d.feed(&raw, None).unwrap();
        assert!(d.is_complete());
    }

    #[test]
    fn error_tokens_garbage_and_long_waits_are_errors() {
        let mut d = Deframer::new(1, 4);
        assert_eq!(d.feed(&[0xff, 0x08], None), Err(FrameError::Token { block: 0, token: 0x08 }));
        let mut d = Deframer::new(1, 4);
        assert_eq!(d.feed(&[0xff, 0x3c], None), Err(FrameError::Garbage { block: 0, byte: 0x3c }));
        let mut d = Deframer::new(1, 4);
        assert_eq!(d.feed(&[0xff; 5], None), Err(FrameError::Timeout { block: 0 }));
    }
}
