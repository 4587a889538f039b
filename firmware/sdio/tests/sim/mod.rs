//! A simulated SD card behind the `StateMachine` interface: it reads the words the driver
//! pushes as the PIO programs would (command frames, block counts, transmitted blocks) and
//! answers with the words they would deliver (response nibbles, data blocks with their
//! CRC16s, CRC status tokens), with faults on demand. The pin-level twin of this card, under
//! the real PIO programs, is `emulation/sdcard.py`.

use std::collections::VecDeque;

use picogpt_sdio::crc::{crc7, crc16_lines};
use picogpt_sdio::programs::{Mode, Speed};
use picogpt_sdio::sm::StateMachine;

/// What kind of card, and what goes wrong with it.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// SDHC (answers CMD8, sets CCS) or a version 1 standard-capacity card.
    pub high_capacity: bool,
    /// ACMD41 answers "busy" this many times first (`u32::MAX`: forever).
    pub power_up_polls: u32,
    /// CMD6 answered at all (cards before spec 1.10 treat it as illegal: no response).
    pub has_cmd6: bool,
    /// CMD6 reports high speed as supported and switches.
    pub high_speed: bool,
    /// ACMD6 (4-bit bus) refused with ILLEGAL_COMMAND.
    pub refuses_wide_bus: bool,
    /// Blocks (card addresses) whose CRC is sent wrong, and how many times each.
    pub corrupt_blocks: Vec<(u32, u32)>,
    /// Responses to this command index get a wrong CRC7, this many times.
    pub corrupt_response: Option<(u8, u32)>,
    /// The card stops answering anything after this many commands.
    pub dies_after_commands: Option<usize>,
    /// The card stops sending data after this many blocks of a read.
    pub dies_after_blocks: Option<usize>,
    /// Written blocks at these addresses are answered with a write error token.
    pub write_errors: Vec<u32>,
    /// Written blocks are answered with a CRC error token this many times first.
    pub write_crc_errors: u32,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            high_capacity: true,
            power_up_polls: 2,
            has_cmd6: true,
            high_speed: true,
            refuses_wide_bus: false,
            corrupt_blocks: Vec::new(),
            corrupt_response: None,
            dies_after_commands: None,
            dies_after_blocks: None,
            write_errors: Vec::new(),
            write_crc_errors: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Ready,
    Ident,
    Standby,
    Transfer,
}

/// What the card sends on DAT next.
#[derive(Debug, Clone)]
enum Dat {
    Nothing,
    /// Blocks from `next`, `left` of them (`None`: until CMD12).
    Read {
        next: u32,
        left: Option<u32>,
    },
    /// A 64-byte switch status block.
    Status([u8; 64]),
    /// A write's CRC status token.
    Token(u32),
}

/// The card and the state machine's view of it.
pub struct SimCard {
    pub behaviour: Behaviour,
    pub image: Vec<u8>,
    /// Every command index received, in order (ACMDs as 100 + n).
    pub log: Vec<u32>,
    /// Every (mode, speed) the driver started.
    pub starts: Vec<(Mode, Speed)>,
    state: State,
    rca: u16,
    app: bool,
    polls: u32,
    blocks_sent: usize,
    mode: Mode,
    pushed: Vec<u32>,
    rx: VecDeque<u32>,
    response: Option<Vec<u32>>,
    dat: Dat,
    illegal: bool,
    micros: u64,
    dead: bool,
    write_at: Option<u32>,
}

impl SimCard {
    pub fn new(behaviour: Behaviour, image: Vec<u8>) -> Self {
        Self {
            behaviour,
            image,
            log: Vec::new(),
            starts: Vec::new(),
            state: State::Idle,
            rca: 0x1234,
            app: false,
            polls: 0,
            blocks_sent: 0,
            mode: Mode::Command,
            pushed: Vec::new(),
            rx: VecDeque::new(),
            response: None,
            dat: Dat::Nothing,
            illegal: false,
            micros: 0,
            dead: false,
            write_at: None,
        }
    }

    /// Commands logged with this index (ACMDs as 100 + n).
    pub fn count(&self, index: u32) -> usize {
        self.log.iter().filter(|&&i| i == index).count()
    }

    fn blocks(&self) -> u32 {
        (self.image.len() / 512) as u32
    }

    fn block_of(&self, arg: u32) -> u32 {
        if self.behaviour.high_capacity { arg } else { arg / 512 }
    }

    /// `receive`'s words for a response frame (CMD in each nibble's bit 0).
    fn nibble_words(frame: &[u8]) -> Vec<u32> {
        let bits = frame.len() * 8;
        let nibbles: Vec<u32> = (1..bits)
            .map(|i| u32::from((frame[i / 8] >> (7 - i % 8)) & 1))
            .chain(std::iter::repeat(1))
            .take(bits.div_ceil(8) * 8)
            .collect();
        nibbles.chunks(8).map(|c| c.iter().fold(0, |w, &b| (w << 4) | 0xe | b)).collect()
    }

    fn r48(&mut self, index: u8, payload: u32, crc: bool) -> Vec<u32> {
        let [a, b, c, d] = payload.to_be_bytes();
        let mut frame = [index & 0x3f, a, b, c, d, 0];
        let mut crc7v = if crc { crc7(&frame[..5]) } else { 0x7f };
        if let Some((i, n)) = self.behaviour.corrupt_response
            && i == index
            && n > 0
        {
            self.behaviour.corrupt_response = Some((i, n - 1));
            crc7v ^= 0x11;
        }
        frame[5] = (crc7v << 1) | 1;
        Self::nibble_words(&frame)
    }

    fn r2(register: [u8; 16]) -> Vec<u32> {
        let mut frame = [0u8; 17];
        frame[0] = 0x3f;
        frame[1..17].copy_from_slice(&register);
        frame[16] = (crc7(&frame[1..16]) << 1) | 1;
        Self::nibble_words(&frame)
    }

    fn status(&mut self) -> u32 {
        let state = match self.state {
            State::Idle => 0,
            State::Ready => 1,
            State::Ident => 2,
            State::Standby => 3,
            State::Transfer => 4,
        };
        let illegal = if std::mem::take(&mut self.illegal) { 1 << 22 } else { 0 };
        (state << 9) | illegal | if self.app { 1 << 5 } else { 0 }
    }

    fn csd(&self) -> [u8; 16] {
        let mut csd = [0u8; 16];
        if self.behaviour.high_capacity {
            let c_size = self.blocks() / 1024 - 1;
            csd[0] = 0x40;
            csd[7] = ((c_size >> 16) & 0x3f) as u8;
            csd[8] = (c_size >> 8) as u8;
            csd[9] = c_size as u8;
        } else {
            // READ_BL_LEN 9, C_SIZE_MULT 7: 512 * 512 bytes per C_SIZE step.
            let c_size = self.blocks() / 512 - 1;
            csd[5] = 0x09;
            csd[6] = ((c_size >> 10) & 0x03) as u8;
            csd[7] = (c_size >> 2) as u8;
            csd[8] = ((c_size & 0x03) << 6) as u8;
            csd[9] = 0x03;
            csd[10] = 0x80;
        }
        csd
    }

    /// A command frame arrived: change state, queue the response.
    fn command(&mut self, frame: [u8; 6]) {
        if frame[5] != (crc7(&frame[..5]) << 1) | 1 {
            // A card ignores a command with a bad CRC.
            return;
        }
        let index = frame[0] & 0x3f;
        let arg = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]);
        let app = std::mem::take(&mut self.app);
        self.log.push(u32::from(index) + if app { 100 } else { 0 });
        if let Some(n) = self.behaviour.dies_after_commands
            && self.log.len() > n
        {
            self.dead = true;
        }
        if self.dead {
            return;
        }
        let b = self.behaviour.clone();
        let response = match (app, index) {
            (_, 0) => {
                self.state = State::Idle;
                self.dat = Dat::Nothing;
                None
            }
            (false, 8) if b.high_capacity => Some(self.r48(8, arg & 0xfff, true)),
            (false, 8) => {
                // A version 1 card does not know CMD8.
                self.illegal = true;
                None
            }
            (_, 55) => {
                let status = self.status();
                self.app = true;
                Some(self.r48(55, status | 1 << 5, true))
            }
            (true, 41) => {
                self.polls += 1;
                let ready = self.polls > b.power_up_polls;
                let ccs = if b.high_capacity && arg & (1 << 30) != 0 { 1 << 30 } else { 0 };
                if ready {
                    self.state = State::Ready;
                }
                let ocr = 0x00ff_8000 | ccs | if ready { 1 << 31 } else { 0 };
                Some(self.r48(0x3f, ocr, false))
            }
            (false, 2) if self.state == State::Ready => {
                self.state = State::Ident;
                Some(Self::r2([0x5a; 16]))
            }
            (false, 3) => {
                self.state = State::Standby;
                Some(self.r48(3, u32::from(self.rca) << 16 | 0x0500, true))
            }
            (false, 9) if arg >> 16 == u32::from(self.rca) => Some(Self::r2(self.csd())),
            (false, 7) if arg >> 16 == u32::from(self.rca) => {
                let status = self.status();
                self.state = State::Transfer;
                Some(self.r48(7, status, true))
            }
            (true, 6) if b.refuses_wide_bus => {
                let status = self.status() | 1 << 22;
                Some(self.r48(6, status, true))
            }
            (true, 6) => {
                let status = self.status();
                Some(self.r48(6, status, true))
            }
            (false, 6) if !b.has_cmd6 => {
                self.illegal = true;
                None
            }
            (false, 6) => {
                let mut block = [0u8; 64];
                block[13] = if b.high_speed { 0x03 } else { 0x01 };
                block[16] = if b.high_speed { 1 } else { 0xf };
                self.dat = Dat::Status(block);
                let status = self.status();
                Some(self.r48(6, status, true))
            }
            (false, 13) => {
                let status = self.status();
                Some(self.r48(13, status, true))
            }
            (false, 16) => {
                let status = self.status();
                Some(self.r48(16, status, true))
            }
            (false, 17 | 18) => {
                let block = self.block_of(arg);
                let status = self.status();
                let out_of_range = if block >= self.blocks() { 1 << 31 } else { 0 };
                if out_of_range == 0 {
                    let left = if index == 17 { Some(1) } else { None };
                    self.dat = Dat::Read { next: block, left };
                    self.blocks_sent = 0;
                }
                Some(self.r48(index, status | out_of_range, true))
            }
            (false, 12) => {
                self.dat = Dat::Nothing;
                let status = self.status();
                Some(self.r48(12, status, true))
            }
            (false, 24) => {
                self.dat = Dat::Nothing;
                self.write_at = Some(self.block_of(arg));
                let status = self.status();
                Some(self.r48(24, status, true))
            }
            _ => {
                self.illegal = true;
                None
            }
        };
        self.response = response;
    }

    /// The next block of a read, as `receive` would deliver it.
    fn next_block(&mut self) -> Option<Vec<u32>> {
        match self.dat.clone() {
            Dat::Read { next, left } => {
                if let Some(n) = self.behaviour.dies_after_blocks
                    && self.blocks_sent >= n
                {
                    return None;
                }
                if left == Some(0) || next >= self.blocks() {
                    return None;
                }
                let start = next as usize * 512;
                let mut words: Vec<u32> = self.image[start..start + 512]
                    .chunks(4)
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                let mut crc = crc16_lines(words.iter().copied());
                for (block, times) in &mut self.behaviour.corrupt_blocks {
                    if *block == next && *times > 0 {
                        *times -= 1;
                        crc ^= 1 << 17;
                    }
                }
                words.push((crc >> 32) as u32);
                words.push(crc as u32);
                self.dat = Dat::Read { next: next + 1, left: left.map(|l| l - 1) };
                self.blocks_sent += 1;
                Some(words)
            }
            Dat::Status(block) => {
                let mut words: Vec<u32> =
                    block.chunks(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect();
                let crc = crc16_lines(words.iter().copied());
                words.push((crc >> 32) as u32);
                words.push(crc as u32);
                self.dat = Dat::Nothing;
                Some(words)
            }
            Dat::Token(word) => {
                self.dat = Dat::Nothing;
                Some(vec![word])
            }
            Dat::Nothing => None,
        }
    }

    /// A written block arrived (the words after `transmit`'s count).
    fn written(&mut self, words: &[u32]) {
        let Some(at) = self.write_at.take() else { return };
        let data = &words[1..129];
        let crc = (u64::from(words[129]) << 32) | u64::from(words[130]);
        let ok = words[0] == 0xffff_fff0 && crc16_lines(data.iter().copied()) == crc;
        // Token bits on DAT0 (bit 0 of each nibble), other lines high.
        let token =
            |bits: [u32; 4]| bits.iter().fold(0u32, |w, &b| (w << 4) | 0xe | b) << 16 | 0xeeee;
        let word = if !ok || self.behaviour.write_crc_errors > 0 {
            self.behaviour.write_crc_errors = self.behaviour.write_crc_errors.saturating_sub(1);
            token([1, 0, 1, 1])
        } else if self.behaviour.write_errors.contains(&at) {
            token([1, 1, 0, 1])
        } else {
            let start = at as usize * 512;
            for (chunk, w) in self.image[start..start + 512].chunks_mut(4).zip(data) {
                chunk.copy_from_slice(&w.to_be_bytes());
            }
            token([0, 1, 0, 1])
        };
        self.dat = Dat::Token(word);
    }
}

impl StateMachine for SimCard {
    fn start(&mut self, mode: Mode, speed: Speed) {
        self.starts.push((mode, speed));
        self.mode = mode;
        self.pushed.clear();
        self.rx.clear();
    }

    fn push(&mut self, word: u32, _timeout_us: u32) -> bool {
        self.micros += 50;
        self.pushed.push(word);
        match self.mode {
            Mode::Command => {
                let bits = self.pushed[0] + 1;
                if self.pushed.len() == 1 + bits.div_ceil(32) as usize {
                    if bits == 56 {
                        let w1 = self.pushed[1].to_be_bytes();
                        let w2 = self.pushed[2].to_be_bytes();
                        self.command([w1[1], w1[2], w1[3], w2[0], w2[1], w2[2]]);
                    }
                    self.pushed.clear();
                }
            }
            Mode::Response => {
                if let Some(words) = self.response.take() {
                    self.rx.extend(words);
                }
                self.pushed.clear();
            }
            Mode::ReadData => {
                if !self.dead
                    && let Some(words) = self.next_block()
                {
                    self.rx.extend(words);
                }
                self.pushed.clear();
            }
            Mode::WriteData => {
                if self.pushed.len() == 1 + 132 {
                    let words = self.pushed[1..].to_vec();
                    self.written(&words);
                    self.pushed.clear();
                }
            }
            Mode::Busy => {
                if !self.dead {
                    self.rx.push_back(0);
                }
                self.pushed.clear();
            }
        }
        true
    }

    fn pop(&mut self, timeout_us: u32) -> Option<u32> {
        let word = self.rx.pop_front();
        if word.is_none() {
            self.micros += u64::from(timeout_us);
        }
        word
    }

    fn wait_parked(&mut self, _timeout_us: u32) -> bool {
        true
    }

    fn micros(&mut self) -> u64 {
        self.micros
    }
}
