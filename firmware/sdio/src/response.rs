//! Responses on the CMD line: rebuilt from the nibbles `receive` shifts in (CMD is each
//! nibble's bit 0), checked (transmission bit, index, CRC7, end bit) and taken apart.

use crate::command::ResponseKind;
use crate::crc::crc7;

/// Nibbles `receive` takes for a response of `bits` bits: every bit after the start bit, and
/// one more clock to round up to whole words.
pub const fn response_nibbles(bits: u32) -> u32 {
    bits.div_ceil(8) * 8
}

/// The most words a response takes (R2: 136 nibbles).
pub const MAX_RESPONSE_WORDS: usize = 17;

/// A response frame as bytes, start bit first (6 bytes, or 17 for R2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// The frame; only the first [`Response::len`] bytes are used.
    pub bytes: [u8; 17],
    /// 6 or 17.
    pub len: usize,
}

/// What was wrong with a response frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The transmission bit was not 0 (not a card's response).
    Direction,
    /// The index field was not the command's (or 63 for R2/R3).
    Index(u8),
    /// The CRC7 did not match.
    Crc,
    /// The end bit was 0.
    EndBit,
}

impl Response {
    /// Rebuilds the frame from `receive`'s words and checks it against `kind` and the
    /// command index it answers.
    pub fn decode(words: &[u32], kind: ResponseKind, index: u8) -> Result<Self, FrameError> {
        let len = (kind.bits() / 8) as usize;
        let mut bytes = [0u8; 17];
        // Bit 0 of the frame is the start bit (0, consumed by the program's wait).
        for bit in 1..kind.bits() as usize {
            let nibble = bit - 1;
            let word = words.get(nibble / 8).copied().unwrap_or(u32::MAX);
            let value = (word >> (28 - 4 * (nibble % 8))) & 1;
            bytes[bit / 8] |= (value as u8) << (7 - bit % 8);
        }
        let response = Self { bytes, len };
        response.check(kind, index)?;
        Ok(response)
    }

    fn check(&self, kind: ResponseKind, index: u8) -> Result<(), FrameError> {
        let b = &self.bytes;
        if b[0] & 0x40 != 0 {
            return Err(FrameError::Direction);
        }
        let field = b[0] & 0x3f;
        let expected = match kind {
            ResponseKind::R2 | ResponseKind::R3 => 0x3f,
            _ => index,
        };
        if field != expected {
            return Err(FrameError::Index(field));
        }
        let last = b[self.len - 1];
        if last & 1 == 0 {
            return Err(FrameError::EndBit);
        }
        let crc = match kind {
            ResponseKind::R3 => return Ok(()),
            ResponseKind::R2 => crc7(&b[1..16]),
            _ => crc7(&b[..5]),
        };
        if crc != last >> 1 {
            return Err(FrameError::Crc);
        }
        Ok(())
    }

    /// The 32-bit payload of a 48-bit response (card status, OCR, RCA and status, CMD8 echo).
    pub fn payload(&self) -> u32 {
        u32::from_be_bytes([self.bytes[1], self.bytes[2], self.bytes[3], self.bytes[4]])
    }

    /// The 128-bit register of an R2 (CID or CSD), bytes 1..=16, most significant first.
    pub fn register(&self) -> [u8; 16] {
        let mut register = [0u8; 16];
        register.copy_from_slice(&self.bytes[1..17]);
        register
    }
}

/// Bits of R1's card status that mean the command failed (SD spec 4.10.1): out of range,
/// address, block length, erase, write protect, lock, CRC of the command, illegal command, ECC,
/// controller and general errors, CSD overwrite, erase skip, AKE sequence.
pub const STATUS_ERRORS: u32 = 0xfdf9_8008;

/// The card's capacity in 512-byte blocks, from its CSD (version 1: standard capacity;
/// version 2: SDHC/SDXC). `None` for an unknown CSD structure.
pub fn csd_blocks(csd: &[u8; 16]) -> Option<u32> {
    let bits = |hi: u32, lo: u32| -> u32 {
        // Bit n of the 128-bit register is in byte 15 - n / 8.
        let mut value = 0u32;
        for n in (lo..=hi).rev() {
            let byte = csd[15 - (n / 8) as usize];
            value = (value << 1) | u32::from((byte >> (n % 8)) & 1);
        }
        value
    };
    match bits(127, 126) {
        0 => {
            let c_size = bits(73, 62);
            let mult = bits(49, 47);
            let read_bl_len = bits(83, 80);
            let bytes = u64::from(c_size + 1) << (mult + 2 + read_bl_len);
            u32::try_from(bytes / 512).ok()
        }
        1 => (bits(69, 48) + 1).checked_mul(1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `receive`'s words for a frame: one nibble per bit after the start bit, CMD in bit 0,
    /// the other lines high, padded with ones.
    pub(crate) fn nibble_words(frame: &[u8]) -> Vec<u32> {
        let bits: Vec<u32> = (1..frame.len() * 8)
            .map(|i| u32::from((frame[i / 8] >> (7 - i % 8)) & 1))
            .chain(core::iter::repeat(1))
            .take((frame.len() * 8).div_ceil(8) * 8)
            .collect();
        bits.chunks(8).map(|c| c.iter().fold(0, |w, &b| (w << 4) | 0xe | b)).collect()
    }

    #[test]
    fn an_r1_round_trips() {
        // CMD17's response from the spec's CRC example.
        let frame = [0x11, 0, 0, 0x09, 0, (0x33 << 1) | 1];
        let words = nibble_words(&frame);
        assert_eq!(words.len(), 6);
        let response = Response::decode(&words, ResponseKind::R1, 17).expect("valid");
        assert_eq!(response.payload(), 0x900);
    }

    #[test]
    fn a_wrong_crc_index_or_end_bit_is_caught() {
        let good = [0x11, 0, 0, 0x09, 0, (0x33 << 1) | 1];
        let mut bad_crc = good;
        bad_crc[3] ^= 0x10;
        assert_eq!(
            Response::decode(&nibble_words(&bad_crc), ResponseKind::R1, 17),
            Err(FrameError::Crc)
        );
        assert_eq!(
            Response::decode(&nibble_words(&good), ResponseKind::R1, 18),
            Err(FrameError::Index(17))
        );
        let mut no_end = good;
        no_end[5] &= 0xfe;
        assert_eq!(
            Response::decode(&nibble_words(&no_end), ResponseKind::R1, 17),
            Err(FrameError::EndBit)
        );
    }

    #[test]
    fn csd_capacities() {
        // CSD v2 with C_SIZE 0x3b37 (a 7.5 GiB SDHC card): (C_SIZE + 1) * 1024 blocks.
        let mut v2 = [0u8; 16];
        v2[0] = 0x40;
        v2[7] = 0x00;
        v2[8] = 0x3b;
        v2[9] = 0x37;
        assert_eq!(csd_blocks(&v2), Some((0x3b37 + 1) * 1024));
        // CSD v1: READ_BL_LEN 9, C_SIZE 4095, C_SIZE_MULT 7: 4096 * 512 * 512 bytes = 1 GiB.
        let mut v1 = [0u8; 16];
        v1[5] = 0x09; // READ_BL_LEN in bits 83..80
        v1[6] = 0x03; // C_SIZE bits 73..72
        v1[7] = 0xff; // C_SIZE bits 71..64
        v1[8] = 0xc0; // C_SIZE bits 63..62
        v1[9] = 0x03; // C_SIZE_MULT bits 49..48
        v1[10] = 0x80; // C_SIZE_MULT bit 47
        assert_eq!(csd_blocks(&v1), Some(4096 * 512));
    }
}
