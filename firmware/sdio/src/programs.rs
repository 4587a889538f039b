//! The PIO programs, where they sit in instruction memory, and how the one state machine that
//! runs them is set up for each step of a transaction.
//!
//! One state machine owns CLK (side-set on every instruction) and runs one program at a time,
//! so the clock only ticks while a program moves bits; between programs it stops low, which
//! the SD spec allows (4.4, clock control): the card waits. Every program starts by pulling a
//! word (a bit or nibble count) and ends back at that `pull`, so the CPU starts each step by
//! pushing its words and a finished step parks with the clock stopped. Every SD clock is
//! [`PIO_CYCLES_PER_CLOCK`] PIO cycles (four in `busy`, which is never in a hurry), so the
//! divider alone sets the bus speed.
//!
//! | program | pins | does |
//! |---|---|---|
//! | `command` | out/set CMD | sends N bits on CMD (leading ones, then a frame) |
//! | `receive` | in CMD.. or DAT0..3, jmp pin CMD or DAT0 | waits for a start bit, then shifts in N nibbles (a response: CMD is each nibble's bit 0; a data block: DAT3..0) |
//! | `transmit` | out/set DAT0..3 | drives DAT0-3 for N nibbles (start, data, CRC, end), then releases them |
//! | `busy` | jmp pin DAT0 | clocks until DAT0 goes high (R1b, programming), then pushes one word |
//!
//! Data is sampled just before CLK falls and driven while CLK is low, so the card (which
//! drives on the falling edge in default speed and on the rising edge in high speed) sees its
//! inputs settled at the rising edge. Only instructions the PyPI `rp2040-pio-emulator` runs
//! are used (no `irq`, no `mov ... status`, no `exec`), so CI runs these exact words.

use pio::{Program, pio_asm};

/// PIO cycles per SD clock in every program.
pub const PIO_CYCLES_PER_CLOCK: u32 = 3;

/// The RP2350's default system clock, which the dividers below assume.
pub const SYS_CLOCK_HZ: u32 = 150_000_000;

/// Instruction memory slots of one PIO block.
pub const MEMORY_SLOTS: usize = 32;

/// Sends `x + 1` bits on CMD, most significant first, from the words after the count.
pub fn command() -> Program<32> {
    pio_asm!(
        ".side_set 1",
        ".wrap_target",
        "    pull block          side 0", // bits to send - 1
        "    out x, 32           side 0",
        "    set pindirs, 1      side 0", // drive CMD
        "send:",
        "    pull ifempty block  side 0",
        "    out pins, 1         side 0", // change CMD while CLK is low
        "    jmp x-- send        side 1", // the card samples on this rising edge
        "    set pindirs, 0      side 0", // release CMD to the card (pulled up)
        ".wrap",
    )
    .program
}

/// Waits for a start bit on the jmp pin, then shifts in `x + 1` nibbles from the in pins
/// (autopush every 32 bits), clocking the card as it goes; one count word per block.
pub fn receive() -> Program<32> {
    pio_asm!(
        ".side_set 1",
        ".wrap_target",
        "    pull block          side 0", // nibbles to receive - 1
        "    out x, 32           side 0",
        "wait_start:",
        "    nop                 side 1 [1]",
        "    jmp pin wait_start  side 0", // still high: no start bit yet
        "    nop                 side 1 [1]",
        "data:",
        "    in pins, 4          side 0", // sample at the end of the high phase
        "    jmp x-- data        side 1 [1]",
        ".wrap",
    )
    .program
}

/// Drives DAT0-3 for `x + 1` nibbles from the words after the count, then releases them.
pub fn transmit() -> Program<32> {
    pio_asm!(
        ".side_set 1",
        ".wrap_target",
        "    pull block          side 0", // nibbles to send - 1
        "    out x, 32           side 0",
        "    set pindirs, 15     side 0", // drive DAT0-3
        "send:",
        "    pull ifempty block  side 0",
        "    out pins, 4         side 0",
        "    jmp x-- send        side 1",
        "    set pindirs, 0      side 0", // release DAT0-3 to the card
        ".wrap",
    )
    .program
}

/// After a start word, clocks until DAT0 is high (the card no longer busy), then pushes one
/// word and parks.
pub fn busy() -> Program<32> {
    pio_asm!(
        ".side_set 1",
        ".wrap_target",
        "    pull block          side 0",
        "busy:",
        "    nop                 side 1 [1]",
        "    jmp pin done        side 0",
        "    jmp busy            side 0",
        "done:",
        "    push block          side 0",
        ".wrap",
    )
    .program
}

/// One of the four programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramId {
    /// [`command`].
    Command,
    /// [`receive`].
    Receive,
    /// [`transmit`].
    Transmit,
    /// [`busy`].
    Busy,
}

impl ProgramId {
    /// All programs, in instruction memory order.
    pub const ALL: [ProgramId; 4] = [Self::Command, Self::Receive, Self::Transmit, Self::Busy];

    /// The program's name (as the emulation tests know it).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Command => "command",
            Self::Receive => "receive",
            Self::Transmit => "transmit",
            Self::Busy => "busy",
        }
    }

    /// The assembled program.
    pub fn program(self) -> Program<32> {
        match self {
            Self::Command => command(),
            Self::Receive => receive(),
            Self::Transmit => transmit(),
            Self::Busy => busy(),
        }
    }

    /// Where the program is loaded: the programs sit back to back from slot 0.
    pub fn origin(self) -> u8 {
        let mut at = 0;
        for id in Self::ALL {
            if id == self {
                break;
            }
            at += id.program().code.len();
        }
        at as u8
    }

    /// The program placed at its origin, as the firmware hands it to embassy-rp.
    pub fn placed(self) -> Program<32> {
        self.program().set_origin(Some(self.origin()))
    }
}

/// The program's code as it lands in instruction memory at `origin`: jump targets moved by
/// `origin`, as embassy-rp's loader (`relocate.rs`) and pico-sdk's do.
pub fn relocate(code: &[u16], origin: u8) -> impl Iterator<Item = u16> + '_ {
    code.iter().map(move |&instr| {
        if instr & 0xe000 == 0 {
            (instr & !0x1f) | (((instr & 0x1f) as u8).wrapping_add(origin) % 32) as u16
        } else {
            instr
        }
    })
}

/// The PIO block's instruction memory with all four programs loaded (unused slots 0).
pub fn memory_image() -> [u16; MEMORY_SLOTS] {
    let mut image = [0u16; MEMORY_SLOTS];
    for id in ProgramId::ALL {
        let program = id.program();
        for (i, word) in relocate(&program.code, id.origin()).enumerate() {
            if let Some(slot) = image.get_mut(usize::from(id.origin()) + i) {
                *slot = word;
            }
        }
    }
    image
}

/// The bus lines, as offsets from the first of six consecutive GPIOs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// The clock, driven by side-set.
    Clk = 0,
    /// Commands out, responses in.
    Cmd = 1,
    /// DAT0 (DAT1-3 follow).
    Dat0 = 2,
}

/// Lines in the wiring order, and how many GPIOs the bus takes.
pub const LINES: u8 = 6;

/// What the state machine is set up to do: a program and its pin mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `command` with out/set on CMD.
    Command,
    /// `receive` from CMD (in base and jmp pin CMD): a response.
    Response,
    /// `receive` from DAT0-3 (in base and jmp pin DAT0): data blocks, the CRC status token.
    ReadData,
    /// `transmit` on DAT0-3.
    WriteData,
    /// `busy` on DAT0.
    Busy,
}

/// A mode's state machine settings, in bus line offsets (the board adds its first GPIO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeConfig {
    /// The program it runs.
    pub program: ProgramId,
    /// First IN pin.
    pub in_base: Line,
    /// The JMP PIN.
    pub jmp_pin: Line,
    /// First OUT and SET pin.
    pub out_base: Line,
    /// OUT and SET pin count.
    pub out_count: u8,
}

/// Shift settings shared by every mode: both registers shift left (most significant bit
/// first on the wire), autopush at 32 bits, no autopull (the programs pull explicitly), one
/// side-set pin (CLK, not optional).
pub mod shift {
    /// ISR shifts left.
    pub const IN_LEFT: bool = true;
    /// Autopush on.
    pub const AUTOPUSH: bool = true;
    /// Push and pull thresholds.
    pub const THRESHOLD: u8 = 32;
    /// OSR shifts left.
    pub const OUT_LEFT: bool = true;
    /// Autopull off.
    pub const AUTOPULL: bool = false;
}

impl Mode {
    /// Every mode.
    pub const ALL: [Mode; 5] =
        [Self::Command, Self::Response, Self::ReadData, Self::WriteData, Self::Busy];

    /// The mode's name (as the emulation tests know it).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Command => "command",
            Self::Response => "response",
            Self::ReadData => "read_data",
            Self::WriteData => "write_data",
            Self::Busy => "busy",
        }
    }

    /// Program and pins.
    pub const fn config(self) -> ModeConfig {
        let (program, line, out_count) = match self {
            Self::Command => (ProgramId::Command, Line::Cmd, 1),
            Self::Response => (ProgramId::Receive, Line::Cmd, 1),
            Self::ReadData => (ProgramId::Receive, Line::Dat0, 4),
            Self::WriteData => (ProgramId::Transmit, Line::Dat0, 4),
            Self::Busy => (ProgramId::Busy, Line::Dat0, 4),
        };
        ModeConfig { program, in_base: line, jmp_pin: line, out_base: line, out_count }
    }
}

/// The SD clock rates the driver uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speed {
    /// 400 kHz, card identification.
    Identification,
    /// 25 MHz, default speed.
    Default,
    /// 50 MHz, high speed (after CMD6).
    High,
}

impl Speed {
    /// PIO clock divider at [`SYS_CLOCK_HZ`].
    pub const fn divider(self) -> u32 {
        match self {
            Self::Identification => 125,
            Self::Default => 2,
            Self::High => 1,
        }
    }

    /// The SD clock in Hz at [`SYS_CLOCK_HZ`].
    pub const fn clock_hz(self) -> u32 {
        SYS_CLOCK_HZ / (self.divider() * PIO_CYCLES_PER_CLOCK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_programs_fit_one_pio_block() {
        let total: usize = ProgramId::ALL.iter().map(|id| id.program().code.len()).sum();
        assert!(total <= MEMORY_SLOTS, "{total} instructions");
        assert_eq!(ProgramId::Busy.origin() as usize + busy().code.len(), total);
    }

    #[test]
    fn speeds_are_the_spec_limits() {
        assert_eq!(Speed::Identification.clock_hz(), 400_000);
        assert_eq!(Speed::Default.clock_hz(), 25_000_000);
        assert_eq!(Speed::High.clock_hz(), 50_000_000);
    }

    #[test]
    fn relocation_moves_only_jump_targets() {
        let program = receive();
        let origin = ProgramId::Receive.origin();
        let image = memory_image();
        for (i, &word) in program.code.iter().enumerate() {
            let placed = image[usize::from(origin) + i];
            if word & 0xe000 == 0 {
                assert_eq!(placed & 0x1f, (word & 0x1f) + u16::from(origin));
                assert_eq!(placed & !0x1f, word & !0x1f);
            } else {
                assert_eq!(placed, word);
            }
        }
    }

    #[test]
    fn every_program_ends_where_it_started() {
        for id in ProgramId::ALL {
            let program = id.program();
            assert_eq!(program.wrap.target, 0, "{}", id.name());
            assert_eq!(usize::from(program.wrap.source), program.code.len() - 1, "{}", id.name());
            // The first instruction is `pull block` (0x80a0 plus side-set/delay bits).
            assert_eq!(program.code[0] & 0xe0ff, 0x80a0, "{}", id.name());
        }
    }
}
