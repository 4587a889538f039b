//! The SD card's checksums in SPI mode: CRC7 closing every command, CRC16 (CCITT polynomial
//! 0x1021, initial value 0, most significant bit first: CRC-16/XMODEM) after every data block.
//!
//! The data CRC runs over every byte read from the card, so it is table driven, four bytes a
//! step ("slicing by 4", 2 KiB of tables in flash); [`crc16_bitwise`] is its plain twin.

/// CRC16 polynomial x^16 + x^12 + x^5 + 1.
const POLY16: u16 = 0x1021;

/// `TABLES[k][b]`: the CRC of byte `b` followed by `k` zero bytes.
const TABLES: [[u16; 256]; 4] = tables();

const fn tables() -> [[u16; 256]; 4] {
    let mut t = [[0u16; 256]; 4];
    let mut b = 0;
    while b < 256 {
        let mut crc = (b as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ POLY16 } else { crc << 1 };
            bit += 1;
        }
        t[0][b] = crc;
        b += 1;
    }
    let mut k = 1;
    while k < 4 {
        let mut b = 0;
        while b < 256 {
            let prev = t[k - 1][b];
            t[k][b] = (prev << 8) ^ t[0][(prev >> 8) as usize];
            b += 1;
        }
        k += 1;
    }
    t
}

/// CRC16 of `data`: what the card sends after a 512-byte block.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc = 0u16;
    let (words, rest) = data.as_chunks::<4>();
    for w in words {
        let [hi, lo] = crc.to_be_bytes();
        crc = TABLES[3][usize::from(hi ^ w[0])]
            ^ TABLES[2][usize::from(lo ^ w[1])]
            ^ TABLES[1][usize::from(w[2])]
            ^ TABLES[0][usize::from(w[3])];
    }
    for &b in rest {
        crc = (crc << 8) ^ TABLES[0][usize::from((crc >> 8) as u8 ^ b)];
    }
    crc
}

/// The same CRC a bit at a time, as the SD specification defines it.
pub fn crc16_bitwise(data: &[u8]) -> u16 {
    let mut crc = 0u16;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ POLY16 } else { crc << 1 };
        }
    }
    crc
}

/// CRC7 (x^7 + x^3 + 1) of a command's first five bytes, as the sixth byte sends it: shifted
/// left by one with the end bit set.
pub fn crc7_byte(command: &[u8; 5]) -> u8 {
    let mut crc = 0u8;
    for &b in command {
        for bit in (0..8).rev() {
            let feedback = ((crc >> 6) ^ (b >> bit)) & 1;
            crc = (crc << 1) & 0x7f;
            if feedback != 0 {
                crc ^= 0x09;
            }
        }
    }
    (crc << 1) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_specifications_examples() {
        // SD Physical Layer specification, 4.5: CMD0, CMD17 and the response of CMD17.
        assert_eq!(crc7_byte(&[0x40, 0, 0, 0, 0]), 0x95);
        assert_eq!(crc7_byte(&[0x51, 0, 0, 0, 0]), 0x55);
        assert_eq!(crc7_byte(&[0x11, 0, 0, 0x09, 0x00]), 0x67);
        // CMD8 with the usual 0x1AA check pattern.
        assert_eq!(crc7_byte(&[0x48, 0, 0, 0x01, 0xaa]), 0x87);
        // A block of 0xFF bytes: 0x7FA1 (the specification's example).
        assert_eq!(crc16(&[0xff; 512]), 0x7fa1);
        // CRC-16/XMODEM check value.
        assert_eq!(crc16(b"123456789"), 0x31c3);
    }

    #[test]
    fn the_table_driven_crc_matches_its_plain_twin() {
        let mut data = [0u8; 1031];
        let mut x = 0x1234_5678u32;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        for len in [0, 1, 2, 3, 4, 5, 7, 64, 511, 512, 1031] {
            assert_eq!(crc16(&data[..len]), crc16_bitwise(&data[..len]), "{len} bytes");
        }
    }
}
