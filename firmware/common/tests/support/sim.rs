//! An SD card in SPI mode over a disk image, byte by byte: commands with their R1/R3/R7
//! responses after one byte of NCR, CMD9's CSD as a data block, CMD18's blocks (CMD17 is refused: nothing here sends it) each after
//! idle bytes and a start token with a true CRC16, CMD12 at any byte of a read (stuff byte,
//! R1, busy), CMD24/CMD25 writes with a data response and busy bytes. It counts what it was
//! sent, can corrupt one block on the wire, and can be absent (MISO pulled high).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::rc::Rc;

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{ErrorType as PinErrorType, OutputPin};
use embedded_hal::spi::{ErrorType, SpiBus};
use picogpt_board::crc::{crc7_byte, crc16};
use picogpt_board::sdspi::SdBus;

use super::disk::Image;

/// How the card behaves.
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// Idle bytes between CMD18's R1 and its first block.
    pub lead_gap: usize,
    /// Idle bytes before each later block.
    pub block_gap: usize,
    /// Block (SDHC) addressing; else byte addressing (SDSC).
    pub high_capacity: bool,
    /// ACMD41 answers "idle" this many times first.
    pub start_polls: usize,
    /// Nothing answers.
    pub absent: bool,
    /// Flip a bit in the n-th data block sent (counting from 0), once.
    pub corrupt_block: Option<u64>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            lead_gap: 3,
            block_gap: 1,
            high_capacity: true,
            start_polls: 2,
            absent: false,
            corrupt_block: None,
        }
    }
}

/// What the card was sent.
#[derive(Clone, Debug, Default)]
pub struct Log {
    /// Every command, by number (ACMD41 as 41).
    pub commands: Vec<u8>,
    /// Every command's argument.
    pub args: Vec<u32>,
    /// Bytes clocked with CS high before the first command.
    pub clocks_before_cmd0: usize,
    /// Data blocks sent.
    pub blocks_sent: u64,
    /// Blocks written.
    pub blocks_written: u64,
    /// Bytes clocked with CS low.
    pub bytes: u64,
}

impl Log {
    /// How many times command `cmd` was sent.
    pub fn count(&self, cmd: u8) -> usize {
        self.commands.iter().filter(|&&c| c == cmd).count()
    }
}

#[derive(Debug)]
enum Mode {
    Command,
    /// Collecting a command's six bytes.
    Arg {
        frame: [u8; 6],
        got: usize,
    },
    /// Sending a read's blocks; the next block is `next`.
    Read {
        next: u32,
    },
    /// Waiting for a write's start token.
    WriteToken {
        next: u32,
        multi: bool,
    },
    /// Receiving a written block.
    WriteData {
        next: u32,
        multi: bool,
        data: Vec<u8>,
    },
}

struct State {
    image: Image,
    b: Behaviour,
    selected: bool,
    out: VecDeque<u8>,
    mode: Mode,
    idle: bool,
    app: bool,
    polls: usize,
    log: Log,
}

/// The card, shared between its bus and its chip select.
#[derive(Clone)]
pub struct SimCard(Rc<RefCell<State>>);

impl SimCard {
    /// A card serving `image` as `b` says.
    pub fn new(image: Image, b: Behaviour) -> Self {
        let polls = b.start_polls;
        Self(Rc::new(RefCell::new(State {
            image,
            b,
            selected: false,
            out: VecDeque::new(),
            mode: Mode::Command,
            idle: true,
            app: false,
            polls,
            log: Log::default(),
        })))
    }

    /// The bus (with `run` bytes per background run) and chip select to drive it with.
    pub fn parts(&self, run: usize) -> (SimBus, SimCs) {
        (SimBus { card: self.clone(), buf: Vec::new(), run, pending: 0 }, SimCs(self.clone()))
    }

    /// What it was sent so far.
    pub fn log(&self) -> Log {
        self.0.borrow().log.clone()
    }

    /// Pulls the card out (or puts it back).
    pub fn set_absent(&self, absent: bool) {
        let mut s = self.0.borrow_mut();
        s.b.absent = absent;
        if !absent {
            s.mode = Mode::Command;
            s.out.clear();
            (s.idle, s.polls) = (true, s.b.start_polls);
        }
    }

    /// Corrupts the `n`-th data block sent from now on.
    pub fn corrupt(&self, n: u64) {
        let mut s = self.0.borrow_mut();
        let sent = s.log.blocks_sent;
        s.b.corrupt_block = Some(sent + n);
    }

    fn exchange(&self, mosi: u8) -> u8 {
        self.0.borrow_mut().exchange(mosi)
    }
}

impl State {
    fn exchange(&mut self, mosi: u8) -> u8 {
        if !self.selected {
            if self.log.commands.is_empty() {
                self.log.clocks_before_cmd0 += 1;
            }
            return 0xff;
        }
        if self.b.absent {
            return 0xff;
        }
        self.log.bytes += 1;
        // CMD12 may come at any byte of a read.
        if matches!(self.mode, Mode::Read { .. }) && mosi == 0x4c {
            self.out.clear();
            self.mode = Mode::Command;
        }
        let miso = self.next_out();
        match &mut self.mode {
            Mode::Command => {
                if mosi & 0xc0 == 0x40 {
                    let mut frame = [0u8; 6];
                    frame[0] = mosi;
                    self.mode = Mode::Arg { frame, got: 1 };
                }
            }
            Mode::Arg { frame, got } => {
                frame[*got] = mosi;
                *got += 1;
                if *got == 6 {
                    let frame = *frame;
                    self.mode = Mode::Command;
                    self.execute(frame);
                }
            }
            Mode::Read { .. } => {}
            Mode::WriteToken { next, multi } => {
                let (next, multi) = (*next, *multi);
                match mosi {
                    0xfe | 0xfc => self.mode = Mode::WriteData { next, multi, data: Vec::new() },
                    0xfd if multi => {
                        self.out.extend([0xff, 0x00, 0x00]);
                        self.mode = Mode::Command;
                    }
                    _ => {}
                }
            }
            Mode::WriteData { next, multi, data } => {
                data.push(mosi);
                if data.len() == 514 {
                    let (next, multi) = (*next, *multi);
                    let block = data[..512].to_vec();
                    let at = next as usize * 512;
                    self.image.borrow_mut()[at..at + 512].copy_from_slice(&block);
                    self.log.blocks_written += 1;
                    // Accepted, then busy for three bytes.
                    self.out.extend([0x05, 0x00, 0x00, 0x00]);
                    self.mode = if multi {
                        Mode::WriteToken { next: next + 1, multi }
                    } else {
                        Mode::Command
                    };
                }
            }
        }
        miso
    }

    /// The next byte the card sends: queued bytes, or the next block of a read.
    fn next_out(&mut self) -> u8 {
        if self.out.is_empty()
            && let Mode::Read { next } = self.mode
        {
            self.queue_block(next, self.b.block_gap);
            self.mode = Mode::Read { next: next + 1 };
        }
        self.out.pop_front().unwrap_or(0xff)
    }

    fn queue_block(&mut self, block: u32, gap: usize) {
        let at = block as usize * 512;
        let mut data = self.image.borrow()[at..at + 512].to_vec();
        let crc = crc16(&data);
        if self.b.corrupt_block == Some(self.log.blocks_sent) {
            data[100] ^= 0x10;
            self.b.corrupt_block = None;
        }
        self.log.blocks_sent += 1;
        self.out.extend(std::iter::repeat_n(0xff, gap));
        self.out.push_back(0xfe);
        self.out.extend(data);
        self.out.extend(crc.to_be_bytes());
    }

    fn execute(&mut self, frame: [u8; 6]) {
        let cmd = frame[0] & 0x3f;
        let arg = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]);
        self.log.commands.push(cmd);
        self.log.args.push(arg);
        let crc_ok = frame[5] == crc7_byte(&[frame[0], frame[1], frame[2], frame[3], frame[4]]);
        let idle = u8::from(self.idle);
        let block = |s: &Self| if s.b.high_capacity { arg } else { arg / 512 };
        let app = std::mem::take(&mut self.app);
        // One byte of NCR, then the response.
        self.out.push_back(0xff);
        if !crc_ok {
            self.out.push_back(idle | 0x08);
            return;
        }
        match cmd {
            0 => {
                (self.idle, self.polls) = (true, self.b.start_polls);
                self.out.push_back(0x01);
            }
            8 => self.out.extend([idle, 0x00, 0x00, 0x01, (arg & 0xff) as u8]),
            55 => {
                self.app = true;
                self.out.push_back(idle);
            }
            41 if app => {
                if self.polls == 0 {
                    self.idle = false;
                } else {
                    self.polls -= 1;
                }
                self.out.push_back(u8::from(self.idle));
            }
            58 => {
                let ccs = if self.b.high_capacity { 0x40 } else { 0x00 };
                self.out.extend([idle, 0x80 | ccs, 0xff, 0x80, 0x00]);
            }
            59 | 16 => self.out.push_back(idle),
            9 => {
                self.out.push_back(idle);
                let csd = self.csd();
                self.out.extend([0xff, 0xfe]);
                self.out.extend(csd);
                self.out.extend(crc16(&csd).to_be_bytes());
            }
            12 => {
                // The stuff byte came first (the NCR byte above); then R1 and busy.
                self.out.extend([0x00, 0x00, 0x00]);
            }
            18 => {
                self.out.push_back(idle);
                let first = block(self);
                self.out.extend(std::iter::repeat_n(0xff, self.b.lead_gap));
                self.queue_block(first, 0);
                self.mode = Mode::Read { next: first + 1 };
            }
            24 | 25 => {
                self.out.push_back(idle);
                self.mode = Mode::WriteToken { next: block(self), multi: cmd == 25 };
            }
            _ => self.out.push_back(idle | 0x04),
        }
    }

    /// A version 2 CSD for the image's size.
    fn csd(&self) -> [u8; 16] {
        let blocks = (self.image.borrow().len() / 512) as u32;
        let c_size = blocks.div_ceil(1024) - 1;
        let mut csd = [0u8; 16];
        csd[0] = 0x40;
        // C_SIZE is bits 69..48: bytes 7 (low 6 bits), 8 and 9.
        csd[7] = ((c_size >> 16) & 0x3f) as u8;
        csd[8] = (c_size >> 8) as u8;
        csd[9] = c_size as u8;
        csd
    }
}

/// The card's SPI bus: every byte goes to the card; runs are clocked when they finish.
pub struct SimBus {
    card: SimCard,
    buf: Vec<u8>,
    run: usize,
    pending: usize,
}

impl ErrorType for SimBus {
    type Error = Infallible;
}

impl SpiBus<u8> for SimBus {
    fn read(&mut self, words: &mut [u8]) -> Result<(), Infallible> {
        for w in words {
            *w = self.card.exchange(0xff);
        }
        Ok(())
    }

    fn write(&mut self, words: &[u8]) -> Result<(), Infallible> {
        for &w in words {
            self.card.exchange(w);
        }
        Ok(())
    }

    fn transfer(&mut self, read: &mut [u8], write: &[u8]) -> Result<(), Infallible> {
        for i in 0..read.len().max(write.len()) {
            let b = self.card.exchange(write.get(i).copied().unwrap_or(0xff));
            if let Some(r) = read.get_mut(i) {
                *r = b;
            }
        }
        Ok(())
    }

    fn transfer_in_place(&mut self, words: &mut [u8]) -> Result<(), Infallible> {
        for w in words {
            *w = self.card.exchange(*w);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

impl SdBus for SimBus {
    fn set_clock(&mut self, hz: u32) -> Result<u32, Infallible> {
        Ok(hz.min(25_000_000))
    }

    fn run_capacity(&self) -> usize {
        self.run
    }

    fn start_run(&mut self, len: usize) -> Result<(), Infallible> {
        assert!(len <= self.run, "a run of {len} bytes, more than {}", self.run);
        self.pending = len;
        Ok(())
    }

    fn finish_run(&mut self) -> Result<&[u8], Infallible> {
        let len = std::mem::take(&mut self.pending);
        self.buf.clear();
        for _ in 0..len {
            let b = self.card.exchange(0xff);
            self.buf.push(b);
        }
        Ok(&self.buf)
    }
}

/// The card's chip select.
pub struct SimCs(SimCard);

impl PinErrorType for SimCs {
    type Error = Infallible;
}

impl OutputPin for SimCs {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.0.0.borrow_mut().selected = true;
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Infallible> {
        self.0.0.borrow_mut().selected = false;
        Ok(())
    }
}

/// A delay that takes no time and counts what it was asked.
#[derive(Default)]
pub struct SimDelay {
    pub ns: u64,
}

impl DelayNs for SimDelay {
    fn delay_ns(&mut self, ns: u32) {
        self.ns += u64::from(ns);
    }
}
