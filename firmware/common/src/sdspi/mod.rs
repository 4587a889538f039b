//! An SD card in SPI mode, read the way a weight pass wants it: one CMD18 left open while the
//! reads stay sequential (the card waits, its clock stopped, while the CPU computes), each
//! window of blocks clocked in by one background run ([`SdBus::start_run`], DMA on the boards)
//! announced with [`BlockDevice::read_ahead`], every block's CRC16 checked, CMD12 only when a
//! read goes elsewhere or a write comes.
//!
//! Start-up follows the SD specification's SPI sequence: at least 74 clocks with CS high,
//! CMD0, CMD8, ACMD41 until ready (about a second at most), CMD58 for the addressing,
//! CMD59 to turn CRC checking on, CMD16 on byte-addressed cards, CMD9 for the size. A slot
//! with no card fails in a few milliseconds.

mod bus;
mod frame;

use core::fmt;

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;
use embedded_hal::spi::ErrorKind;

pub use bus::SdBus;
pub use frame::{Deframer, FRAME_BYTES, FrameError, START_TOKEN};

use crate::block::{BLOCK_BYTES, BlockDevice};
use crate::crc::{crc7_byte, crc16};
use crate::meter::{Metered, Traffic};

/// Clock while the card starts (the specification's identification limit, 400 kHz).
pub const INIT_HZ: u32 = 400_000;

/// Commands the card may take to answer (NCR is at most 8 bytes).
const RESPONSE_BYTES: usize = 16;
/// CMD0 attempts before the slot counts as empty.
const IDLE_ATTEMPTS: usize = 10;
/// ACMD41 attempts, [`READY_POLL_MS`] apart: about a second.
const READY_ATTEMPTS: u32 = 100;
/// Milliseconds between ACMD41 attempts.
const READY_POLL_MS: u32 = 10;

/// R1's idle bit.
const R1_IDLE: u8 = 0x01;
/// R1's illegal-command bit.
const R1_ILLEGAL: u8 = 0x04;

const CMD0: u8 = 0;
const CMD8: u8 = 8;
const CMD9: u8 = 9;
const CMD12: u8 = 12;
const CMD16: u8 = 16;
const CMD18: u8 = 18;
const CMD24: u8 = 24;
const CMD25: u8 = 25;
const CMD41: u8 = 41;
const CMD55: u8 = 55;
const CMD58: u8 = 58;
const CMD59: u8 = 59;

/// Token before each block of a multi-block write.
const WRITE_MULTI_TOKEN: u8 = 0xfc;
/// Token ending a multi-block write.
const STOP_TRAN_TOKEN: u8 = 0xfd;

/// Why the card did not do what was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CardError {
    /// The SPI bus (or its DMA) failed.
    Bus(ErrorKind),
    /// The chip-select pin could not be driven.
    ChipSelect,
    /// Nothing answers CMD0: no card in the slot, or no breakout on the bus.
    NoCard,
    /// The card never answered a command.
    NoResponse {
        /// The command.
        cmd: u8,
    },
    /// The card answered a command with an error.
    Rejected {
        /// The command.
        cmd: u8,
        /// Its R1 response.
        r1: u8,
    },
    /// CMD8's echo or voltage range is wrong: not an SD card that works at 3.3 V.
    Unusable,
    /// The card did not finish starting (ACMD41) within about a second.
    StartTimeout,
    /// The card was used before [`SdCard::init`] succeeded.
    NotStarted,
    /// A read's data could not be taken from the wire.
    Data(FrameError),
    /// The card refused a written block (its data response token).
    WriteRejected {
        /// The data response token.
        response: u8,
    },
    /// The card stayed busy after a write.
    BusyTimeout,
    /// Blocks beyond the end of the card.
    OutOfRange {
        /// First block asked for.
        first: u32,
        /// Blocks asked for.
        count: usize,
        /// Blocks on the card.
        blocks: u32,
    },
    /// A buffer that is not whole blocks.
    PartialBlock {
        /// Its length.
        len: usize,
    },
}

impl fmt::Display for CardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bus(kind) => write!(f, "SPI bus error ({kind})"),
            Self::ChipSelect => write!(f, "the chip-select pin failed"),
            Self::NoCard => write!(f, "no card answers"),
            Self::NoResponse { cmd } => write!(f, "the card did not answer CMD{cmd}"),
            Self::Rejected { cmd, r1 } => write!(f, "the card rejected CMD{cmd} (R1 {r1:#04x})"),
            Self::Unusable => write!(f, "the card does not take 3.3 V (CMD8)"),
            Self::StartTimeout => write!(f, "the card did not finish starting within a second"),
            Self::NotStarted => write!(f, "the card is not started"),
            Self::Data(FrameError::Token { block, token }) => {
                write!(f, "the card sent error token {token:#04x} for block {block} of a read")
            }
            Self::Data(FrameError::Garbage { block, byte }) => {
                write!(f, "unexpected byte {byte:#04x} before block {block} of a read")
            }
            Self::Data(FrameError::Timeout { block }) => {
                write!(f, "the card sent no data for block {block} of a read within 100 ms")
            }
            Self::Data(FrameError::Crc { block, sent, found }) => write!(
                f,
                "CRC16 mismatch in block {block} of a read (card sent {sent:#06x}, data gives \
                 {found:#06x})"
            ),
            Self::WriteRejected { response } => {
                write!(f, "the card refused a written block (response {response:#04x})")
            }
            Self::BusyTimeout => write!(f, "the card stayed busy after a write"),
            Self::OutOfRange { first, count, blocks } => write!(
                f,
                "blocks {first}..{} are beyond the card's {blocks} blocks",
                u64::from(*first) + *count as u64
            ),
            Self::PartialBlock { len } => write!(f, "{len} bytes are not whole 512-byte blocks"),
        }
    }
}

impl core::error::Error for CardError {}

impl From<FrameError> for CardError {
    fn from(e: FrameError) -> Self {
        Self::Data(e)
    }
}

/// What start-up learnt about the card.
#[derive(Clone, Copy, Debug)]
struct Card {
    /// Block (SDHC/SDXC) rather than byte addressing.
    high_capacity: bool,
    /// Blocks on the card.
    blocks: u32,
}

/// The card's multi-block read, as far as the driver knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    /// None is open.
    Closed,
    /// One is open and delivers this block next.
    Open(u32),
    /// A transfer failed midway: one may be open anywhere (the next command stops it first).
    Unknown,
}

/// A background run in flight: the next `blocks` blocks of the open read from `first`.
#[derive(Clone, Copy, Debug)]
struct Ahead {
    first: u32,
    blocks: usize,
}

/// An SD card on an SPI bus with its own chip select.
pub struct SdCard<B, P, D> {
    bus: B,
    cs: P,
    delay: D,
    fast_hz: u32,
    hz: u32,
    card: Option<Card>,
    /// The open multi-block read.
    stream: Stream,
    ahead: Option<Ahead>,
    counts: Traffic,
}

impl<B: SdBus, P: OutputPin, D: DelayNs> SdCard<B, P, D> {
    /// A card on `bus` selected by `cs`, read at up to `fast_hz` once started; nothing is
    /// sent until [`Self::init`].
    pub fn new(bus: B, cs: P, delay: D, fast_hz: u32) -> Self {
        let (hz, card, stream, ahead) = (INIT_HZ, None, Stream::Closed, None);
        Self { bus, cs, delay, fast_hz, hz, card, stream, ahead, counts: Traffic::default() }
    }

    /// The clock the bus runs at.
    pub fn clock_hz(&self) -> u32 {
        self.hz
    }

    /// Gives the bus, pin and delay back.
    pub fn release(self) -> (B, P, D) {
        (self.bus, self.cs, self.delay)
    }

    /// (Re)starts the card, which may have been swapped since: returns its size in bytes.
    pub fn init(&mut self) -> Result<u64, CardError> {
        if self.ahead.take().is_some() {
            let _ = self.bus.finish_run();
        }
        (self.card, self.stream) = (None, Stream::Closed);
        self.hz = self.bus.set_clock(INIT_HZ).map_err(bus)?;
        self.cs.set_high().map_err(|_| CardError::ChipSelect)?;
        // At least 74 clocks with CS high, so the card enters its native mode.
        self.clock_out(10)?;
        self.cs.set_low().map_err(|_| CardError::ChipSelect)?;
        self.go_idle()?;
        let v2 = self.check_voltage()?;
        self.wait_ready(v2)?;
        let high_capacity = v2 && self.ocr()? & (1 << 30) != 0;
        // CRC checking on (some emulated cards do not know CMD59; data CRCs are checked anyway).
        let r1 = self.command(CMD59, 1)?;
        if r1 & !(R1_ILLEGAL) != 0 {
            return Err(CardError::Rejected { cmd: CMD59, r1 });
        }
        if !high_capacity {
            self.expect_ready(CMD16, 512)?;
        }
        let blocks = self.csd_blocks()?;
        self.card = Some(Card { high_capacity, blocks });
        self.hz = self.bus.set_clock(self.fast_hz).map_err(bus)?;
        Ok(u64::from(blocks) * BLOCK_BYTES as u64)
    }

    /// CMD0 until the card answers idle.
    fn go_idle(&mut self) -> Result<(), CardError> {
        let mut answered = None;
        for _ in 0..IDLE_ATTEMPTS {
            match self.command(CMD0, 0) {
                Ok(R1_IDLE) => return Ok(()),
                Ok(r1) => answered = Some(r1),
                Err(CardError::NoResponse { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Err(answered.map_or(CardError::NoCard, |r1| CardError::Rejected { cmd: CMD0, r1 }))
    }

    /// CMD8: whether the card is version 2 (answers it with the check pattern).
    fn check_voltage(&mut self) -> Result<bool, CardError> {
        let r1 = self.command(CMD8, 0x1aa)?;
        if r1 & R1_ILLEGAL != 0 {
            return Ok(false);
        }
        let mut r7 = [0xff; 4];
        self.exchange(&mut r7)?;
        if r7[2] & 0x0f != 0x01 || r7[3] != 0xaa {
            return Err(CardError::Unusable);
        }
        Ok(true)
    }

    /// ACMD41 until the card leaves the idle state.
    fn wait_ready(&mut self, v2: bool) -> Result<(), CardError> {
        let hcs = if v2 { 1 << 30 } else { 0 };
        for _ in 0..READY_ATTEMPTS {
            self.command(CMD55, 0)?;
            match self.command(CMD41, hcs)? {
                0 => return Ok(()),
                R1_IDLE => self.delay.delay_ms(READY_POLL_MS),
                r1 => return Err(CardError::Rejected { cmd: CMD41, r1 }),
            }
        }
        Err(CardError::StartTimeout)
    }

    /// CMD58: the operating conditions register. (QEMU's card sets R1's idle bit here even
    /// once started; only error bits count.)
    fn ocr(&mut self) -> Result<u32, CardError> {
        let r1 = self.command(CMD58, 0)?;
        if r1 & !R1_IDLE != 0 {
            return Err(CardError::Rejected { cmd: CMD58, r1 });
        }
        let mut ocr = [0xff; 4];
        self.exchange(&mut ocr)?;
        Ok(u32::from_be_bytes(ocr))
    }

    /// CMD9: the card's size in blocks, from its CSD register.
    fn csd_blocks(&mut self) -> Result<u32, CardError> {
        self.expect_ready(CMD9, 0)?;
        let max_gap = self.max_gap();
        let mut gap = 0;
        loop {
            match self.byte()? {
                0xff if gap < max_gap => gap += 1,
                START_TOKEN => break,
                _ => return Err(CardError::NoResponse { cmd: CMD9 }),
            }
        }
        let mut csd = [0xff; 18];
        self.exchange(&mut csd)?;
        let (csd, sent) = csd.split_at(16);
        let found = crc16(csd);
        let sent = u16::from_be_bytes([sent[0], sent[1]]);
        if found != sent {
            return Err(CardError::Data(FrameError::Crc { block: 0, sent, found }));
        }
        let bits = |hi: usize, lo: usize| -> u32 {
            (lo..=hi)
                .rev()
                .fold(0, |v, bit| (v << 1) | u32::from(csd[15 - bit / 8] >> (bit % 8) & 1))
        };
        let blocks = match bits(127, 126) {
            0 => {
                let (size, mult, len) = (bits(73, 62), bits(49, 47), bits(83, 80));
                ((size + 1) << (mult + 2)) << len.saturating_sub(9)
            }
            _ => (bits(69, 48) + 1).saturating_mul(1024),
        };
        Ok(blocks)
    }

    /// Sends a command and returns its R1 (for CMD12 after the stuff byte).
    fn command(&mut self, cmd: u8, arg: u32) -> Result<u8, CardError> {
        // One idle byte first: the card finishes what it was doing.
        if cmd != CMD12 {
            self.clock_out(1)?;
        }
        let [a, b, c, d] = arg.to_be_bytes();
        let head = [0x40 | cmd, a, b, c, d];
        let mut frame = [head[0], a, b, c, d, crc7_byte(&head)];
        self.exchange(&mut frame)?;
        self.counts.commands += 1;
        if cmd == CMD12 {
            self.byte()?;
        }
        for _ in 0..RESPONSE_BYTES {
            let r1 = self.byte()?;
            if r1 & 0x80 == 0 {
                return Ok(r1);
            }
        }
        Err(CardError::NoResponse { cmd })
    }

    /// Sends a command whose R1 must be 0.
    fn expect_ready(&mut self, cmd: u8, arg: u32) -> Result<(), CardError> {
        match self.command(cmd, arg)? {
            0 => Ok(()),
            r1 => Err(CardError::Rejected { cmd, r1 }),
        }
    }

    /// One byte in, `0xFF` out.
    fn byte(&mut self) -> Result<u8, CardError> {
        let mut b = [0xff];
        self.exchange(&mut b)?;
        Ok(b[0])
    }

    /// `n` idle bytes.
    fn clock_out(&mut self, n: usize) -> Result<(), CardError> {
        for _ in 0..n {
            self.byte()?;
        }
        Ok(())
    }

    /// Sends `buf` and puts what came back in its place.
    fn exchange(&mut self, buf: &mut [u8]) -> Result<(), CardError> {
        self.bus.transfer_in_place(buf).map_err(bus)?;
        self.counts.bus_bytes += buf.len() as u64;
        Ok(())
    }

    /// Idle bytes the card may send before a block: 100 ms at the current clock.
    fn max_gap(&self) -> usize {
        (self.hz / 8 / 10) as usize
    }

    /// The started card, with `count` blocks from `first` checked against its size.
    fn check(&self, first: u32, len: usize) -> Result<Card, CardError> {
        let card = self.card.ok_or(CardError::NotStarted)?;
        if !len.is_multiple_of(BLOCK_BYTES) {
            return Err(CardError::PartialBlock { len });
        }
        let count = len / BLOCK_BYTES;
        if u64::from(first) + count as u64 > u64::from(card.blocks) {
            return Err(CardError::OutOfRange { first, count, blocks: card.blocks });
        }
        Ok(card)
    }

    /// The command argument that addresses `block`.
    fn address(card: &Card, block: u32) -> u32 {
        if card.high_capacity { block } else { block.saturating_mul(BLOCK_BYTES as u32) }
    }

    /// Makes the open read deliver `first` next: continues it, or stops it and starts one
    /// there.
    fn open_at(&mut self, card: &Card, first: u32) -> Result<(), CardError> {
        if self.stream == Stream::Open(first) {
            return Ok(());
        }
        self.stop()?;
        let r1 = self.command(CMD18, Self::address(card, first))?;
        self.counts.multi_reads += 1;
        if r1 != 0 {
            return Err(CardError::Rejected { cmd: CMD18, r1 });
        }
        self.stream = Stream::Open(first);
        Ok(())
    }

    /// Ends the open read, if any (CMD12, then waits while the card is busy).
    fn stop(&mut self) -> Result<(), CardError> {
        let stream = core::mem::replace(&mut self.stream, Stream::Closed);
        if stream != Stream::Closed {
            // Its R1 may carry the state of the block that was cut off: only its arrival counts.
            self.command(CMD12, 0)?;
            self.wait_not_busy()?;
        }
        Ok(())
    }

    /// After a failure: the next command first stops whatever the card may be sending.
    fn lose_track(&mut self) {
        (self.stream, self.ahead) = (Stream::Unknown, None);
    }

    /// Waits for the background run in flight, if any, and drops its bytes, finishing the
    /// block it stopped in: the open read is then at a block boundary (where it may go on, or
    /// be stopped cleanly; QEMU's card mishandles a CMD12 inside a block).
    fn abandon(&mut self) -> Result<(), CardError> {
        let Some(ahead) = self.ahead.take() else { return Ok(()) };
        let mut frame = Deframer::new(ahead.blocks, self.max_gap());
        let raw = self.bus.finish_run().map_err(bus)?;
        frame.feed(raw, None)?;
        let rest = frame.rest_of_block();
        if rest > 0 {
            self.bus.start_run(rest).map_err(bus)?;
            self.counts.bus_bytes += rest as u64;
            let raw = self.bus.finish_run().map_err(bus)?;
            frame.feed(raw, None)?;
        }
        self.stream = Stream::Open(ahead.first + frame.done() as u32);
        Ok(())
    }

    /// Clocks in the rest of `frame` run by run, its blocks into `out`.
    fn pump(&mut self, frame: &mut Deframer, mut out: Option<&mut [u8]>) -> Result<(), CardError> {
        while !frame.is_complete() {
            let n = frame.needed().min(self.bus.run_capacity().max(1));
            self.bus.start_run(n).map_err(bus)?;
            self.counts.bus_bytes += n as u64;
            let raw = self.bus.finish_run().map_err(bus)?;
            frame.feed(raw, out.as_deref_mut())?;
        }
        Ok(())
    }

    /// Reads `buf.len() / 512` blocks from `first`, claiming the background run if it is
    /// exactly these blocks.
    fn read(&mut self, first: u32, buf: &mut [u8]) -> Result<(), CardError> {
        let card = self.check(first, buf.len())?;
        let count = buf.len() / BLOCK_BYTES;
        let max_gap = self.max_gap();
        let mut frame = Deframer::new(count, max_gap);
        match self.ahead {
            Some(ahead) if ahead.first == first && ahead.blocks == count => {
                self.ahead = None;
                let raw = self.bus.finish_run().map_err(bus)?;
                frame.feed(raw, Some(buf))?;
            }
            _ => {
                self.abandon()?;
                self.open_at(&card, first)?;
            }
        }
        self.pump(&mut frame, Some(buf))?;
        // The read stays open at its end until a read elsewhere or a write stops it.
        self.stream = Stream::Open(first + count as u32);
        self.counts.blocks_read += count as u64;
        Ok(())
    }

    /// Starts clocking in `count` blocks from `first` in the background, if the card is
    /// started and no run is in flight.
    fn start_ahead(&mut self, first: u32, count: usize) -> Result<(), CardError> {
        let count = count.min(self.bus.run_capacity() / FRAME_BYTES);
        if self.ahead.is_some() || count == 0 {
            return Ok(());
        }
        let card = self.check(first, count * BLOCK_BYTES)?;
        self.open_at(&card, first)?;
        self.bus.start_run(count * FRAME_BYTES).map_err(bus)?;
        self.counts.bus_bytes += (count * FRAME_BYTES) as u64;
        self.ahead = Some(Ahead { first, blocks: count });
        Ok(())
    }

    /// Writes `data` from block `first`: CMD24 for one block, CMD25 for more.
    fn write(&mut self, first: u32, data: &[u8]) -> Result<(), CardError> {
        let card = self.check(first, data.len())?;
        self.abandon()?;
        self.stop()?;
        let count = data.len() / BLOCK_BYTES;
        if count == 0 {
            return Ok(());
        }
        let (cmd, token) =
            if count == 1 { (CMD24, START_TOKEN) } else { (CMD25, WRITE_MULTI_TOKEN) };
        let r1 = self.command(cmd, Self::address(&card, first))?;
        self.counts.writes += 1;
        if r1 != 0 {
            return Err(CardError::Rejected { cmd, r1 });
        }
        for block in data.chunks_exact(BLOCK_BYTES) {
            let crc = crc16(block).to_be_bytes();
            self.clock_out(1)?;
            let mut head = [token];
            self.exchange(&mut head)?;
            self.bus.write(block).map_err(bus)?;
            self.counts.bus_bytes += BLOCK_BYTES as u64;
            let mut tail = crc;
            self.exchange(&mut tail)?;
            let response = self.data_response()?;
            if response & 0x1f != 0x05 {
                return Err(CardError::WriteRejected { response });
            }
            self.wait_not_busy()?;
        }
        if count > 1 {
            let mut stop = [STOP_TRAN_TOKEN, 0xff];
            self.exchange(&mut stop)?;
            self.wait_not_busy()?;
        }
        self.counts.blocks_written += count as u64;
        Ok(())
    }

    /// The data response token after a written block.
    fn data_response(&mut self) -> Result<u8, CardError> {
        for _ in 0..RESPONSE_BYTES {
            let b = self.byte()?;
            if b != 0xff {
                return Ok(b);
            }
        }
        Err(CardError::NoResponse { cmd: CMD24 })
    }

    /// Waits while the card holds its data line low (busy), for up to half a second.
    fn wait_not_busy(&mut self) -> Result<(), CardError> {
        for _ in 0..5 * self.max_gap() {
            if self.byte()? != 0x00 {
                return Ok(());
            }
        }
        Err(CardError::BusyTimeout)
    }
}

/// An SPI error as the card reports it.
fn bus<E: embedded_hal::spi::Error>(e: E) -> CardError {
    CardError::Bus(e.kind())
}

impl<B: SdBus, P: OutputPin, D: DelayNs> BlockDevice for SdCard<B, P, D> {
    type Error = CardError;

    fn block_count(&mut self) -> Result<u32, CardError> {
        self.card.map(|c| c.blocks).ok_or(CardError::NotStarted)
    }

    fn read_blocks(&mut self, first: u32, buf: &mut [u8]) -> Result<(), CardError> {
        let result = self.read(first, buf);
        if result.is_err() {
            self.lose_track();
        }
        result
    }

    fn write_blocks(&mut self, first: u32, data: &[u8]) -> Result<(), CardError> {
        let result = self.write(first, data);
        if result.is_err() {
            self.lose_track();
        }
        result
    }

    fn read_ahead(&mut self, first: u32, count: usize) {
        if self.start_ahead(first, count).is_err() {
            // A hint: the read that follows meets the problem again and reports it.
            self.lose_track();
        }
    }
}

impl<B, P, D> Metered for SdCard<B, P, D> {
    fn traffic(&self) -> Traffic {
        self.counts
    }
}
