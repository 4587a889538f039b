//! The card: identification (CMD0, CMD8, ACMD41, CMD2, CMD3, CMD9, CMD7, ACMD6, CMD6 to high
//! speed where the card has it), then multi-block reads (CMD18 ... CMD12) and writes (CMD24),
//! over any [`StateMachine`] running the PIO programs.

use core::fmt;

use crate::command::{Command, ResponseKind, idle_clock_words, index};
use crate::data::{self, BLOCK_BYTES, WriteToken};
use crate::programs::{Mode, Speed};
use crate::response::{
    FrameError, MAX_RESPONSE_WORDS, Response, STATUS_ERRORS, csd_blocks, response_nibbles,
};
use crate::sm::{ReceiveStop, StateMachine};

/// Times a card gets, in microseconds. The defaults are the SD spec's limits with a margin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// For a command's response to start and finish (the spec's N_CR is 64 clocks).
    pub response_us: u32,
    /// For a data block to start after the read command or the previous block (spec: 100 ms
    /// for SDHC reads).
    pub data_us: u32,
    /// For the card to finish being busy (programming a block, stopping a transfer).
    pub busy_us: u32,
    /// For ACMD41 to report the card powered up (spec: 1 s).
    pub power_up_us: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self { response_us: 5_000, data_us: 150_000, busy_us: 500_000, power_up_us: 1_000_000 }
    }
}

/// Attempts for a read or write whose data or response failed its CRC.
pub const ATTEMPTS: usize = 3;

/// What a command or transfer ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// No response to CMD`cmd` in time: no card, or one that stopped answering.
    NoResponse {
        /// The command.
        cmd: u8,
    },
    /// The response to CMD`cmd` was garbled (CRC7, index or framing) every time.
    BadResponse {
        /// The command.
        cmd: u8,
        /// What was wrong the last time.
        problem: FrameError,
    },
    /// The card answered CMD`cmd` with error bits in its status.
    Status {
        /// The command.
        cmd: u8,
        /// The card status (R1).
        status: u32,
    },
    /// The card does not take 2.7-3.6 V (CMD8 or the OCR said so).
    Voltage,
    /// ACMD41 never reported the card ready.
    PowerUp,
    /// The card refused the 4-bit bus (ACMD6).
    NoWideBus,
    /// The card sent a CSD this driver cannot size.
    UnknownCsd,
    /// The state machine did not take a command's words (the PIO block is stuck).
    Stuck,
    /// Block `block` did not arrive in time.
    DataTimeout {
        /// The card's block address.
        block: u32,
    },
    /// Block `block` failed its CRC16 on every attempt.
    DataCrc {
        /// The card's block address.
        block: u32,
    },
    /// The card stayed busy too long.
    Busy,
    /// The card did not accept written block `block`.
    WriteRejected {
        /// The card's block address.
        block: u32,
        /// The CRC status token it sent.
        token: WriteToken,
    },
    /// Blocks `start..start + count` are not all on the card.
    OutOfRange {
        /// First block.
        start: u32,
        /// Blocks asked for.
        count: usize,
        /// Blocks the card has.
        blocks: u32,
    },
    /// Read or write before a successful [`Card::init`].
    NotInitialized,
    /// A transfer of `bytes` bytes, which is not a whole number of blocks.
    PartialBlock {
        /// Bytes asked for.
        bytes: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoResponse { cmd } => {
                write!(f, "no response to CMD{cmd} (is a card in the slot?)")
            }
            Self::BadResponse { cmd, problem } => {
                write!(f, "garbled response to CMD{cmd} ({problem:?}) after {ATTEMPTS} attempts")
            }
            Self::Status { cmd, status } => {
                write!(f, "the card refused CMD{cmd} (status {status:#010x})")
            }
            Self::Voltage => write!(f, "the card does not take 3.3 V"),
            Self::PowerUp => write!(f, "the card did not finish powering up (ACMD41)"),
            Self::NoWideBus => {
                write!(f, "the card refused the 4-bit bus (ACMD6): use the SPI firmware")
            }
            Self::UnknownCsd => write!(f, "the card's CSD has an unknown structure"),
            Self::Stuck => write!(f, "the SDIO state machine is stuck"),
            Self::DataTimeout { block } => write!(f, "block {block} did not arrive (card pulled?)"),
            Self::DataCrc { block } => {
                write!(f, "block {block} failed its CRC16 on {ATTEMPTS} attempts")
            }
            Self::Busy => write!(f, "the card stayed busy too long"),
            Self::WriteRejected { block, token } => {
                write!(f, "the card did not accept block {block} ({token:?})")
            }
            Self::OutOfRange { start, count, blocks } => {
                write!(f, "blocks {start}+{count} are beyond the card's {blocks}")
            }
            Self::NotInitialized => write!(f, "the card is not initialised"),
            Self::PartialBlock { bytes } => {
                write!(f, "a transfer of {bytes} bytes is not a whole number of 512-byte blocks")
            }
        }
    }
}

impl core::error::Error for Error {}

/// What identification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardInfo {
    /// Capacity in 512-byte blocks.
    pub blocks: u32,
    /// SDHC/SDXC (block addresses) rather than standard capacity (byte addresses).
    pub high_capacity: bool,
    /// The bus clock in use for data.
    pub speed: Speed,
    /// The card's relative address.
    pub rca: u16,
}

/// A block's bytes, whatever type holds them (a plain array, embedded-sdmmc's `Block`).
pub trait BlockBuf {
    /// The 512 bytes.
    fn bytes(&self) -> &[u8; BLOCK_BYTES];
    /// The 512 bytes, writable.
    fn bytes_mut(&mut self) -> &mut [u8; BLOCK_BYTES];
}

impl BlockBuf for [u8; BLOCK_BYTES] {
    fn bytes(&self) -> &[u8; BLOCK_BYTES] {
        self
    }
    fn bytes_mut(&mut self) -> &mut [u8; BLOCK_BYTES] {
        self
    }
}

/// CMD8's argument: 2.7-3.6 V and the check pattern 0xAA.
const IF_COND: u32 = 0x1aa;
/// ACMD41's voltage window (2.7-3.6 V); with HCS for cards that answered CMD8.
const OCR_VOLTAGES: u32 = 0x00ff_8000;
const OCR_HCS: u32 = 1 << 30;
const OCR_READY: u32 = 1 << 31;
/// CMD6 arguments: check, then switch, function group 1 to function 1 (high speed).
const SWITCH_CHECK_HIGH_SPEED: u32 = 0x00ff_fff1;
const SWITCH_TO_HIGH_SPEED: u32 = 0x80ff_fff1;
/// Bytes of CMD6's switch status.
const SWITCH_STATUS_BYTES: usize = 64;

/// An SD card on the PIO state machine `S`.
pub struct Card<S> {
    sm: S,
    timeouts: Timeouts,
    speed: Speed,
    rca: u16,
    info: Option<CardInfo>,
}

impl<S: StateMachine> Card<S> {
    /// A card not yet identified, with the default time limits.
    pub fn new(sm: S) -> Self {
        Self::with_timeouts(sm, Timeouts::default())
    }

    /// A card not yet identified, with the given time limits.
    pub fn with_timeouts(sm: S, timeouts: Timeouts) -> Self {
        Self { sm, timeouts, speed: Speed::Identification, rca: 0, info: None }
    }

    /// What the last successful [`Card::init`] found.
    pub fn info(&self) -> Option<CardInfo> {
        self.info
    }

    /// The state machine (for a board to take back, or a test to inspect).
    pub fn state_machine(&mut self) -> &mut S {
        &mut self.sm
    }

    /// Identifies the card from power-up (or from any state: CMD0 resets it) and brings it
    /// to 4-bit transfer at the fastest speed it takes.
    pub fn init(&mut self) -> Result<CardInfo, Error> {
        self.info = None;
        self.speed = Speed::Identification;
        self.rca = 0;
        self.idle_clocks(80)?;
        self.command(Command::new(index::GO_IDLE, 0), ResponseKind::None)?;
        let version2 =
            match self.command(Command::new(index::SEND_IF_COND, IF_COND), ResponseKind::R7) {
                Ok(r) if r.payload() & 0xfff == IF_COND => true,
                Ok(_) => return Err(Error::Voltage),
                // Version 1 cards do not know CMD8.
                Err(Error::NoResponse { .. }) => false,
                Err(e) => return Err(e),
            };
        let ocr = self.power_up(version2)?;
        let high_capacity = version2 && ocr & OCR_HCS != 0;
        self.command(Command::new(index::ALL_SEND_CID, 0), ResponseKind::R2)?;
        let r6 = self.command(Command::new(index::SEND_RELATIVE_ADDR, 0), ResponseKind::R6)?;
        // R6's low half: status bits 23, 22, 19 and 12..0 squeezed into 15..0.
        if r6.payload() & 0xe000 != 0 {
            return Err(Error::Status { cmd: index::SEND_RELATIVE_ADDR, status: r6.payload() });
        }
        self.rca = (r6.payload() >> 16) as u16;
        self.speed = Speed::Default;
        let csd = self.command(Command::new(index::SEND_CSD, self.rca_arg()), ResponseKind::R2)?;
        let blocks = csd_blocks(&csd.register()).ok_or(Error::UnknownCsd)?;
        self.r1(Command::new(index::SELECT_CARD, self.rca_arg()), ResponseKind::R1b)?;
        match self.app_command(Command::new(index::SET_BUS_WIDTH, 2)) {
            Ok(()) => {}
            Err(Error::Status { .. }) | Err(Error::NoResponse { .. }) => {
                return Err(Error::NoWideBus);
            }
            Err(e) => return Err(e),
        }
        if !high_capacity {
            self.r1(Command::new(index::SET_BLOCKLEN, BLOCK_BYTES as u32), ResponseKind::R1)?;
        }
        if self.high_speed()? {
            self.speed = Speed::High;
        }
        let info = CardInfo { blocks, high_capacity, speed: self.speed, rca: self.rca };
        self.info = Some(info);
        Ok(info)
    }

    /// Reads `blocks.len()` blocks from `start`: one CMD18 ... CMD12 (CMD17 for one block),
    /// each block's four CRC16s checked; a CRC failure is retried up to [`ATTEMPTS`] times.
    pub fn read<B: BlockBuf>(&mut self, start: u32, blocks: &mut [B]) -> Result<(), Error> {
        self.check_range(start, blocks.len())?;
        let mut last = Error::DataCrc { block: start };
        for _ in 0..ATTEMPTS {
            match self.read_once(start, blocks) {
                Ok(()) => return Ok(()),
                Err(e @ (Error::DataCrc { .. } | Error::BadResponse { .. })) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Writes `blocks` from `start`, one CMD24 per block; a block the card rejects for a CRC
    /// error is sent again, up to [`ATTEMPTS`] times.
    pub fn write<B: BlockBuf>(&mut self, start: u32, blocks: &[B]) -> Result<(), Error> {
        self.check_range(start, blocks.len())?;
        for (i, block) in blocks.iter().enumerate() {
            let at = start + i as u32;
            let mut attempt = 0;
            loop {
                attempt += 1;
                match self.write_once(at, block.bytes()) {
                    Ok(()) => break,
                    Err(Error::WriteRejected { token: WriteToken::CrcError, .. })
                        if attempt < ATTEMPTS => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    fn check_range(&self, start: u32, count: usize) -> Result<(), Error> {
        let info = self.info.ok_or(Error::NotInitialized)?;
        let end = u64::from(start) + count as u64;
        if end > u64::from(info.blocks) {
            return Err(Error::OutOfRange { start, count, blocks: info.blocks });
        }
        Ok(())
    }

    fn address(&self, block: u32) -> u32 {
        match self.info {
            Some(CardInfo { high_capacity: false, .. }) => block.wrapping_mul(BLOCK_BYTES as u32),
            _ => block,
        }
    }

    fn rca_arg(&self) -> u32 {
        u32::from(self.rca) << 16
    }

    fn read_once<B: BlockBuf>(&mut self, start: u32, blocks: &mut [B]) -> Result<(), Error> {
        let count = blocks.len();
        if count == 0 {
            return Ok(());
        }
        let multi = count > 1;
        let cmd = if multi { index::READ_MULTIPLE_BLOCK } else { index::READ_SINGLE_BLOCK };
        self.r1(Command::new(cmd, self.address(start)), ResponseKind::R1)?;
        self.sm.start(Mode::ReadData, self.speed);
        let received = self.sm.receive_blocks(
            data::receive_nibbles(BLOCK_BYTES),
            count,
            self.timeouts.data_us,
            &mut |n, words| {
                blocks.get_mut(n).is_some_and(|b| data::unpack(words, b.bytes_mut()).is_ok())
            },
        );
        let stopped = if multi || received.is_err() { self.stop() } else { Ok(()) };
        match received {
            Ok(()) => stopped,
            Err(ReceiveStop::Timeout(n)) => Err(Error::DataTimeout { block: start + n as u32 }),
            Err(ReceiveStop::Rejected(n)) => Err(Error::DataCrc { block: start + n as u32 }),
        }
    }

    /// CMD12, ending a multi-block read (or a read that went wrong).
    fn stop(&mut self) -> Result<(), Error> {
        let cmd = Command::new(index::STOP_TRANSMISSION, 0);
        let response = self.command(cmd, ResponseKind::R1b)?;
        // OUT_OF_RANGE is normal when a read ran to the card's last block.
        let status = response.payload() & STATUS_ERRORS & !(1 << 31);
        if status != 0 {
            return Err(Error::Status { cmd: cmd.index, status: response.payload() });
        }
        Ok(())
    }

    fn write_once(&mut self, at: u32, block: &[u8; BLOCK_BYTES]) -> Result<(), Error> {
        self.r1(Command::new(index::WRITE_BLOCK, self.address(at)), ResponseKind::R1)?;
        self.sm.start(Mode::WriteData, self.speed);
        let timeout = self.timeouts.data_us;
        if !self.sm.push(data::TRANSMIT_NIBBLES - 1, timeout) {
            return Err(Error::Stuck);
        }
        for word in data::transmit_words(block) {
            if !self.sm.push(word, timeout) {
                return Err(Error::Stuck);
            }
        }
        if !self.sm.wait_parked(timeout) {
            return Err(Error::Stuck);
        }
        // The CRC status token on DAT0: start bit, three status bits, end bit.
        self.sm.start(Mode::ReadData, self.speed);
        if !self.sm.push(7, timeout) {
            return Err(Error::Stuck);
        }
        let token = match self.sm.pop(timeout) {
            Some(word) => WriteToken::from_word(word),
            None => return Err(Error::DataTimeout { block: at }),
        };
        self.wait_busy()?;
        match token {
            WriteToken::Accepted => Ok(()),
            token => Err(Error::WriteRejected { block: at, token }),
        }
    }

    fn wait_busy(&mut self) -> Result<(), Error> {
        self.sm.start(Mode::Busy, self.speed);
        if !self.sm.push(0, self.timeouts.response_us) {
            return Err(Error::Stuck);
        }
        self.sm.pop(self.timeouts.busy_us).map(|_| ()).ok_or(Error::Busy)
    }

    fn idle_clocks(&mut self, clocks: u32) -> Result<(), Error> {
        self.sm.start(Mode::Command, self.speed);
        for word in idle_clock_words(clocks) {
            if !self.sm.push(word, self.timeouts.response_us) {
                return Err(Error::Stuck);
            }
        }
        if self.sm.wait_parked(self.timeouts.response_us) { Ok(()) } else { Err(Error::Stuck) }
    }

    /// ACMD41 until the card reports power-up done; returns its OCR.
    fn power_up(&mut self, version2: bool) -> Result<u32, Error> {
        let arg = OCR_VOLTAGES | if version2 { OCR_HCS } else { 0 };
        let deadline = self.sm.micros() + u64::from(self.timeouts.power_up_us);
        loop {
            // Not checked: a version 1 card reports CMD8 as illegal in this status.
            self.command(Command::new(index::APP_CMD, 0), ResponseKind::R1)?;
            let ocr = self.command(Command::new(index::SD_SEND_OP_COND, arg), ResponseKind::R3)?;
            let ocr = ocr.payload();
            if ocr & OCR_READY != 0 {
                if ocr & OCR_VOLTAGES == 0 {
                    return Err(Error::Voltage);
                }
                return Ok(ocr);
            }
            if self.sm.micros() > deadline {
                return Err(Error::PowerUp);
            }
        }
    }

    /// CMD6 to high speed where the card has it: true if it switched. Cards without CMD6
    /// (spec 1.0) or without high speed stay at default speed.
    fn high_speed(&mut self) -> Result<bool, Error> {
        let mut status = [0u8; SWITCH_STATUS_BYTES];
        match self.switch(SWITCH_CHECK_HIGH_SPEED, &mut status) {
            Ok(()) => {}
            Err(Error::NoResponse { .. } | Error::Status { .. } | Error::DataTimeout { .. }) => {
                // An illegal command leaves ILLEGAL_COMMAND set for the next status; read it
                // away.
                self.command(Command::new(index::SEND_STATUS, self.rca_arg()), ResponseKind::R1)?;
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        // Function group 1's support bits 415..400: high speed is bit 401.
        if status[13] & 0x02 == 0 {
            return Ok(false);
        }
        self.switch(SWITCH_TO_HIGH_SPEED, &mut status)?;
        // Function group 1's selection, bits 379..376: 1 when switched.
        Ok(status[16] & 0x0f == 1)
    }

    /// CMD6 and its 64-byte status block on DAT0-3.
    fn switch(&mut self, arg: u32, status: &mut [u8; SWITCH_STATUS_BYTES]) -> Result<(), Error> {
        let mut last = Error::DataCrc { block: 0 };
        for _ in 0..ATTEMPTS {
            self.r1(Command::new(index::SWITCH_FUNC, arg), ResponseKind::R1)?;
            self.sm.start(Mode::ReadData, self.speed);
            let received = self.sm.receive_blocks(
                data::receive_nibbles(SWITCH_STATUS_BYTES),
                1,
                self.timeouts.data_us,
                &mut |_, words| data::unpack(words, status).is_ok(),
            );
            match received {
                Ok(()) => return Ok(()),
                Err(ReceiveStop::Timeout(_)) => return Err(Error::DataTimeout { block: 0 }),
                Err(ReceiveStop::Rejected(_)) => last = Error::DataCrc { block: 0 },
            }
        }
        Err(last)
    }

    /// An application command: CMD55 with the card's address, then `cmd`, both R1.
    fn app_command(&mut self, cmd: Command) -> Result<(), Error> {
        self.r1(Command::new(index::APP_CMD, self.rca_arg()), ResponseKind::R1)?;
        self.r1(cmd, ResponseKind::R1)
    }

    /// A command answered by R1 (or R1b) whose status must show no error.
    fn r1(&mut self, cmd: Command, kind: ResponseKind) -> Result<(), Error> {
        let response = self.command(cmd, kind)?;
        let status = response.payload();
        if status & STATUS_ERRORS != 0 {
            return Err(Error::Status { cmd: cmd.index, status });
        }
        Ok(())
    }

    /// Sends `cmd` and takes its response (and, for R1b, waits out the busy signal); a
    /// garbled response is asked for again, up to [`ATTEMPTS`] times.
    fn command(&mut self, cmd: Command, kind: ResponseKind) -> Result<Response, Error> {
        let mut problem = FrameError::Crc;
        for _ in 0..ATTEMPTS {
            match self.exchange(cmd, kind)? {
                Ok(response) => {
                    if kind == ResponseKind::R1b {
                        self.wait_busy()?;
                    }
                    return Ok(response);
                }
                Err(p) => problem = p,
            }
        }
        Err(Error::BadResponse { cmd: cmd.index, problem })
    }

    /// One command on the wire: `Err` for the bus, `Ok(Err)` for a garbled frame.
    fn exchange(
        &mut self,
        cmd: Command,
        kind: ResponseKind,
    ) -> Result<Result<Response, FrameError>, Error> {
        let timeout = self.timeouts.response_us;
        self.sm.start(Mode::Command, self.speed);
        for word in cmd.pio_words() {
            if !self.sm.push(word, timeout) {
                return Err(Error::Stuck);
            }
        }
        if !self.sm.wait_parked(timeout) {
            return Err(Error::Stuck);
        }
        if kind == ResponseKind::None {
            return Ok(Ok(Response { bytes: [0; 17], len: 0 }));
        }
        self.sm.start(Mode::Response, self.speed);
        let nibbles = response_nibbles(kind.bits() - 1);
        if !self.sm.push(nibbles - 1, timeout) {
            return Err(Error::Stuck);
        }
        let mut words = [0u32; MAX_RESPONSE_WORDS];
        for word in words.iter_mut().take((nibbles / 8) as usize) {
            *word = self.sm.pop(timeout).ok_or(Error::NoResponse { cmd: cmd.index })?;
        }
        Ok(Response::decode(&words, kind, cmd.index))
    }
}
