//! Commands on the CMD line: the 48-bit frame with its CRC7, and the words the `command` PIO
//! program takes to send it.

use crate::crc::crc7;

/// What the card answers a command with (SD Physical Layer spec, 4.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    /// No answer (CMD0).
    None,
    /// 48 bits: index, card status, CRC7.
    R1,
    /// R1, then the card holds DAT0 low while busy.
    R1b,
    /// 136 bits: CID or CSD.
    R2,
    /// 48 bits: OCR, no CRC (ACMD41).
    R3,
    /// 48 bits: published RCA and status bits (CMD3).
    R6,
    /// 48 bits: voltage accepted and check pattern echoed (CMD8).
    R7,
}

impl ResponseKind {
    /// Bits in the response frame, start bit included (0 for none).
    pub const fn bits(self) -> u32 {
        match self {
            Self::None => 0,
            Self::R2 => 136,
            _ => 48,
        }
    }
}

/// A command: index (0..=63) and 32-bit argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command {
    /// CMDn (or ACMDn, sent after CMD55).
    pub index: u8,
    /// The argument, sent most significant byte first.
    pub arg: u32,
}

/// Ones the `command` program sends before every frame: the 8 clocks the card needs between
/// a response and the next command (N_RC) and after a command without response (N_CC).
pub const LEADING_ONES: u32 = 8;

/// Bits the `command` program sends per command: the leading ones and the 48-bit frame.
pub const COMMAND_BITS: u32 = LEADING_ONES + 48;

impl Command {
    /// CMDn with argument `arg`.
    pub const fn new(index: u8, arg: u32) -> Self {
        Self { index: index & 0x3f, arg }
    }

    /// The frame on the wire: start bit 0, transmission bit 1, index, argument, CRC7, end
    /// bit 1.
    pub fn frame(&self) -> [u8; 6] {
        let [a, b, c, d] = self.arg.to_be_bytes();
        let head = [0x40 | self.index, a, b, c, d];
        [head[0], a, b, c, d, (crc7(&head) << 1) | 1]
    }

    /// The words the `command` program takes for this command: bits to send minus one, then
    /// [`LEADING_ONES`] ones and the frame, most significant bit first.
    pub fn pio_words(&self) -> [u32; 3] {
        let f = self.frame().map(u32::from);
        [
            COMMAND_BITS - 1,
            0xff00_0000 | f[0] << 16 | f[1] << 8 | f[2],
            f[3] << 24 | f[4] << 16 | f[5] << 8,
        ]
    }
}

/// The words the `command` program takes to send `clocks` ones on CMD (1..=96), no frame: the
/// 74 or more clocks a card needs after power-up.
pub fn idle_clock_words(clocks: u32) -> [u32; 4] {
    [clocks.clamp(1, 96) - 1, u32::MAX, u32::MAX, u32::MAX]
}

/// Command indices this driver sends.
pub mod index {
    /// GO_IDLE_STATE.
    pub const GO_IDLE: u8 = 0;
    /// ALL_SEND_CID.
    pub const ALL_SEND_CID: u8 = 2;
    /// SEND_RELATIVE_ADDR.
    pub const SEND_RELATIVE_ADDR: u8 = 3;
    /// SWITCH_FUNC (and, after CMD55, SET_BUS_WIDTH).
    pub const SWITCH_FUNC: u8 = 6;
    /// SELECT_CARD.
    pub const SELECT_CARD: u8 = 7;
    /// SEND_IF_COND.
    pub const SEND_IF_COND: u8 = 8;
    /// SEND_CSD.
    pub const SEND_CSD: u8 = 9;
    /// STOP_TRANSMISSION.
    pub const STOP_TRANSMISSION: u8 = 12;
    /// SEND_STATUS.
    pub const SEND_STATUS: u8 = 13;
    /// SET_BLOCKLEN.
    pub const SET_BLOCKLEN: u8 = 16;
    /// READ_SINGLE_BLOCK.
    pub const READ_SINGLE_BLOCK: u8 = 17;
    /// READ_MULTIPLE_BLOCK.
    pub const READ_MULTIPLE_BLOCK: u8 = 18;
    /// WRITE_BLOCK.
    pub const WRITE_BLOCK: u8 = 24;
    /// SD_SEND_OP_COND (after CMD55).
    pub const SD_SEND_OP_COND: u8 = 41;
    /// APP_CMD: the next command is an application command.
    pub const APP_CMD: u8 = 55;
    /// SET_BUS_WIDTH (after CMD55).
    pub const SET_BUS_WIDTH: u8 = 6;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_the_spec_crc() {
        assert_eq!(Command::new(0, 0).frame(), [0x40, 0, 0, 0, 0, 0x95]);
        assert_eq!(Command::new(8, 0x1aa).frame(), [0x48, 0, 0, 0x01, 0xaa, 0x87]);
        assert_eq!(Command::new(17, 0).frame()[5], 0x55);
    }

    #[test]
    fn pio_words_hold_the_ones_and_the_frame_in_order() {
        let words = Command::new(8, 0x1aa).pio_words();
        assert_eq!(words, [55, 0xff48_0000, 0x01aa_8700]);
    }
}
