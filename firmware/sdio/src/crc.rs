//! The SD bus's checksums: CRC7 on the CMD line, CRC16 on each DAT line.
//!
//! In 4-bit mode each DAT line carries its own CRC16 (CCITT polynomial `x^16 + x^12 + x^5 +
//! 1`, initial value 0) over the bits that line carried. The PIO program shifts the four lines
//! into 32-bit words, one nibble per clock, DAT3 in each nibble's top bit and the first clock in
//! the word's top nibble. Four CRC16s over interleaved lines are one CRC over the word stream
//! with the polynomial `G(x^4) = x^64 + x^48 + x^20 + 1`, whose 64-bit remainder is the four
//! CRC16s interleaved the same way: exactly the 16 CRC nibbles the card sends after the data.
//! [`crc16_lines`] computes it a word at a time; [`crc16_lines_plain`] is its bit-by-bit twin.

/// CRC7 (`x^7 + x^3 + 1`, initial 0) over `bytes`, as a command or response frame carries it
/// in the top seven bits of its last byte.
pub fn crc7(bytes: &[u8]) -> u8 {
    let mut crc = 0u8;
    for &byte in bytes {
        for bit in (0..8).rev() {
            let feedback = ((crc >> 6) ^ (byte >> bit)) & 1;
            crc = (crc << 1) & 0x7f;
            if feedback != 0 {
                crc ^= 0x09;
            }
        }
    }
    crc
}

/// CRC16 (CCITT polynomial `0x1021`, initial 0, no reflection: CRC-16/XMODEM) over a bit
/// stream, first bit first: one DAT line's checksum.
pub fn crc16_bits(bits: impl IntoIterator<Item = bool>) -> u16 {
    let mut crc = 0u16;
    for bit in bits {
        let feedback = (crc >> 15) ^ u16::from(bit);
        crc <<= 1;
        if feedback != 0 {
            crc ^= 0x1021;
        }
    }
    crc
}

/// CRC16 over bytes, most significant bit first (a 1-bit bus, or one line's bytes).
pub fn crc16(bytes: &[u8]) -> u16 {
    crc16_bits(bytes.iter().flat_map(|&b| (0..8).rev().map(move |i| (b >> i) & 1 != 0)))
}

/// The four DAT lines' CRC16s over `words` (as the PIO program delivers them: first clock in
/// the top nibble, DAT0 in each nibble's low bit), interleaved the way the card sends them:
/// the first CRC nibble in bits 63..60. A word at a time, for the board's hot path.
pub fn crc16_lines(words: impl IntoIterator<Item = u32>) -> u64 {
    let mut hi = 0u32;
    let mut lo = 0u32;
    for word in words {
        // Remainder of (crc · x^32 + word · x^64) mod x^64 + x^48 + x^20 + 1: the 32 bits
        // leaving the top, `t`, come back as t·(x^48 + x^20 + 1); the part of t·x^48 above
        // x^64, t >> 16, folds back once more. Both folds together are s = t ^ (t >> 16).
        let t = hi ^ word;
        let s = t ^ (t >> 16);
        hi = lo ^ (s << 16) ^ (s >> 12);
        lo = s ^ (s << 20);
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// [`crc16_lines`] the slow way: each line's bits pulled out of the nibbles and run through
/// [`crc16_bits`], then interleaved with [`interleave`]. The reference the fast one is tested
/// against.
pub fn crc16_lines_plain(words: &[u32]) -> u64 {
    let line = |i: u32| {
        crc16_bits(
            words.iter().flat_map(move |&w| (0..8).rev().map(move |n| (w >> (4 * n + i)) & 1 != 0)),
        )
    };
    interleave([line(0), line(1), line(2), line(3)])
}

/// Four per-line CRC16s (DAT0 first) as the 16 nibbles the card sends, first nibble in bits
/// 63..60.
pub fn interleave(lines: [u16; 4]) -> u64 {
    let mut value = 0u64;
    for bit in (0..16).rev() {
        let mut nibble = 0u64;
        for (i, crc) in lines.iter().enumerate() {
            nibble |= u64::from((crc >> bit) & 1) << i;
        }
        value = (value << 4) | nibble;
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reproducible word stream (xorshift), no crate needed.
    fn words(seed: u32, n: usize) -> impl Iterator<Item = u32> {
        let mut x = seed;
        (0..n).map(move |_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        })
    }

    #[test]
    fn crc7_of_the_spec_frames() {
        // SD Physical Layer spec, CRC7 examples: CMD0, CMD17 and CMD17's response.
        assert_eq!(crc7(&[0x40, 0, 0, 0, 0]), 0x4a);
        assert_eq!(crc7(&[0x51, 0, 0, 0, 0]), 0x2a);
        assert_eq!(crc7(&[0x11, 0, 0, 0x09, 0]), 0x33);
        // CMD8 with 0x1AA: the well-known 0x87 last byte.
        assert_eq!((crc7(&[0x48, 0, 0, 0x01, 0xaa]) << 1) | 1, 0x87);
    }

    #[test]
    fn crc16_check_value_and_the_spec_block() {
        assert_eq!(crc16(b"123456789"), 0x31c3);
        // SD spec: 512 bytes of 0xFF on one line give 0x7FA1.
        assert_eq!(crc16(&[0xff; 512]), 0x7fa1);
    }

    #[test]
    fn line_crcs_fast_equals_plain() {
        for (seed, n) in [(1, 0), (2, 1), (3, 2), (4, 16), (5, 128), (6, 129), (7, 500)] {
            let data: Vec<u32> = words(seed, n).collect();
            assert_eq!(
                crc16_lines(data.iter().copied()),
                crc16_lines_plain(&data),
                "seed {seed}, {n} words"
            );
        }
    }

    #[test]
    fn all_ones_on_four_lines_is_four_copies_of_the_spec_value() {
        // 512 bytes of 0xFF: each line carries 1024 ones, so each line's CRC16 is that of 128
        // bytes of 0xFF.
        let one_line = crc16(&[0xff; 128]);
        assert_eq!(crc16_lines([u32::MAX; 128]), interleave([one_line; 4]));
    }

    #[test]
    fn data_followed_by_its_crc_leaves_no_remainder() {
        let mut data: Vec<u32> = words(9, 128).collect();
        let crc = crc16_lines(data.iter().copied());
        data.push((crc >> 32) as u32);
        data.push(crc as u32);
        assert_eq!(crc16_lines(data), 0);
    }

    #[test]
    fn a_flipped_bit_on_any_line_changes_its_crc() {
        let data: Vec<u32> = words(11, 128).collect();
        let good = crc16_lines(data.iter().copied());
        for bit in [0, 1, 2, 3, 17, 31] {
            let mut bad = data.clone();
            bad[77] ^= 1 << bit;
            assert_ne!(crc16_lines(bad), good, "bit {bit}");
        }
    }
}
