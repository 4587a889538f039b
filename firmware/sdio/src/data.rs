//! Data blocks on DAT0-3 as the PIO programs move them: 32-bit words of eight nibbles, the
//! first nibble (a byte's high half) in the top bits, so a word is four bytes big-endian.

use crate::crc::crc16_lines;

/// Bytes in a data block.
pub const BLOCK_BYTES: usize = 512;

/// Words of data in a block.
pub const BLOCK_WORDS: usize = BLOCK_BYTES / 4;

/// Words `receive` delivers per 512-byte block: the data and the 16 CRC nibbles.
pub const RECEIVE_WORDS: usize = BLOCK_WORDS + 2;

/// Words `transmit` takes per 512-byte block: idle nibbles and the start nibble, the data,
/// the CRC, and the end nibble (the rest of that last word is never sent).
pub const TRANSMIT_WORDS: usize = BLOCK_WORDS + 4;

/// Nibbles `transmit` sends per block: 7 idle, start, 1024 data, 16 CRC, end.
pub const TRANSMIT_NIBBLES: u32 = 8 + 2 * BLOCK_BYTES as u32 + 16 + 1;

/// Nibbles `receive` takes for a block of `bytes` after its start bit: the data and the CRC
/// (the end bit is clocked while waiting for the next start bit).
pub const fn receive_nibbles(bytes: usize) -> u32 {
    (2 * bytes + 16) as u32
}

/// The data of a received block did not match its CRC: the lines' remainders, as received
/// and as computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrcMismatch {
    /// The 16 CRC nibbles the card sent.
    pub received: u64,
    /// What the data gives.
    pub computed: u64,
}

/// Checks a received block (`words`: data words, then the two CRC words) and writes its
/// bytes to `out` (4 bytes per data word). `out` is written even when the CRC fails.
pub fn unpack(words: &[u32], out: &mut [u8]) -> Result<(), CrcMismatch> {
    let data_words = words.len().saturating_sub(2);
    let (data, crc) = words.split_at(data_words);
    let received = match crc {
        [hi, lo] => (u64::from(*hi) << 32) | u64::from(*lo),
        _ => 0,
    };
    for (chunk, word) in out.chunks_exact_mut(4).zip(data) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    let computed = crc16_lines(data.iter().copied());
    if computed == received { Ok(()) } else { Err(CrcMismatch { received, computed }) }
}

/// A block's bytes as words, four bytes big-endian each (the order the nibbles go out).
fn be_words(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    bytes.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
}

/// The [`TRANSMIT_WORDS`] words `transmit` sends for one block (after its count word): seven
/// idle nibbles and the start nibble, the data, its four CRC16s, and the end nibble (the top
/// of the last word). Made as they are pushed, so a write needs no 528-byte buffer.
pub fn transmit_words(block: &[u8; BLOCK_BYTES]) -> impl Iterator<Item = u32> + '_ {
    let crc = crc16_lines(be_words(block));
    core::iter::once(0xffff_fff0).chain(be_words(block)).chain([
        (crc >> 32) as u32,
        crc as u32,
        u32::MAX,
    ])
}

/// The CRC status token the card sends on DAT0 after a written block: `010` accepted, `101`
/// rejected for a CRC error, `110` a write error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteToken {
    /// `010`: the block was accepted.
    Accepted,
    /// `101`: the card saw a CRC error.
    CrcError,
    /// `110`: the card could not write.
    WriteError,
    /// Anything else (three bits, as received).
    Other(u8),
}

impl WriteToken {
    /// Decodes the word `receive` (from DAT0-3) delivers after a block: DAT0 is bit 0 of each
    /// nibble; the first three nibbles are the status bits.
    pub fn from_word(word: u32) -> Self {
        let bit = |n: u32| (word >> (28 - 4 * n)) & 1;
        match ((bit(0) << 2) | (bit(1) << 1) | bit(2)) as u8 {
            0b010 => Self::Accepted,
            0b101 => Self::CrcError,
            0b110 => Self::WriteError,
            other => Self::Other(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transmitted_words_unpack_to_the_block() {
        let mut block = [0u8; BLOCK_BYTES];
        for (i, b) in block.iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        let words: Vec<u32> = transmit_words(&block).collect();
        assert_eq!(words.len(), TRANSMIT_WORDS);
        assert_eq!(words[0], 0xffff_fff0);
        assert_eq!(words[1], u32::from_be_bytes([3, 10, 17, 24]));
        assert_eq!(words[TRANSMIT_WORDS - 1] >> 28, 0xf);
        let mut out = [0u8; BLOCK_BYTES];
        assert_eq!(unpack(&words[1..=RECEIVE_WORDS], &mut out), Ok(()));
        assert_eq!(out, block);
    }

    #[test]
    fn a_corrupted_word_fails_the_crc() {
        let block = [0x5au8; BLOCK_BYTES];
        let mut words: Vec<u32> = transmit_words(&block).collect();
        words[40] ^= 0x0100;
        let mut out = [0u8; BLOCK_BYTES];
        let err = unpack(&words[1..=RECEIVE_WORDS], &mut out);
        assert!(matches!(err, Err(CrcMismatch { received, computed }) if received != computed));
    }

    #[test]
    fn write_tokens_decode_from_dat0() {
        // DAT0 bits 0,1,0 then the end bit 1: nibbles with bit 0 set where the bit is 1.
        assert_eq!(WriteToken::from_word(0x0101_0000), WriteToken::Accepted);
        assert_eq!(WriteToken::from_word(0x1011_0000), WriteToken::CrcError);
        assert_eq!(WriteToken::from_word(0x110f_0000), WriteToken::WriteError);
        assert_eq!(WriteToken::from_word(0x1110_0000), WriteToken::Other(0b111));
    }

    #[test]
    fn nibble_counts() {
        assert_eq!(receive_nibbles(512), 1040);
        assert_eq!(receive_nibbles(64), 144);
        assert_eq!(TRANSMIT_NIBBLES, 1049);
    }
}
