//! picoGPT on an emulated RISC-V board: QEMU's `sifive_u` machine run as a 32-bit RV32IMAC
//! hart (the ESP32-C6's instruction set, no FPU), with 512 KiB of RAM like the C6, reading the
//! pack from an emulated SD card over SPI exactly as the SD boards do.
//!
//! Wiring (QEMU's): the card image given with `--sd IMG` is an SD card in SPI mode (`ssi-sd`)
//! on the SoC's QSPI2 controller, chip select 0; UART0 is the console (QEMU's standard
//! output); the arguments come from semihosting's SYS_GET_CMDLINE and the exit status goes
//! back through SYS_EXIT_EXTENDED.
//!
//! ```text
//! cd firmware/qemu-rv32
//! cargo run --release -- --sd card.img Alan Turing theorized -n 4 \
//!     [--tokens 1,2,3] [--kv f32|f16|int8] [--activations f32|int8] [--bits] [--icount] \
//!     [--speculate K] [--no-verify]
//! ```
//!
//! The card is FAT32 (or FAT16) with the pack in its root as `MODEL.PGP`; KV positions beyond
//! the RAM go to `KV.BIN` beside it. The lines from `model:` on are the ones `qemu-m33` prints
//! for the same pack and prompt, logit bits included, plus `sd per token:` (the card's
//! commands and bytes). Exit status: 0 done, 1 bad input or a card problem (one `error:`
//! line), 2 bad arguments, 101 panic, 102 trap.
#![no_std]
#![no_main]

mod args;
mod clock;
mod fault;
mod ram;
mod semihost;
mod spi;
mod uart;

use core::cell::Cell;
use core::convert::Infallible;
use core::fmt::Write;

use picogpt_board::board::Board;
use picogpt_board::card::Card;
use picogpt_board::print::traffic;
use picogpt_board::sd::answer_from_card;
use picogpt_board::sdspi::SdCard;
use picogpt_board::{DEFAULT_TOKENS, Options, Stats, write_timing};
use picogpt_core::{Activations, KvFormat, OneWorker};

use crate::args::{ArgsError, USAGE};
use crate::clock::{Delay, TICKS_PER_MS, Ticks};
use crate::spi::{ChipSelect, SifiveSpi};
use crate::uart::Uart;

/// Longest command line read from QEMU.
const COMMAND_LINE: usize = 1024;

/// The card's clock once started: the most SD cards take in SPI mode (QEMU's card takes any).
const SD_HZ: u32 = 25_000_000;

/// Exit code of a run that failed on its input.
const ERROR_EXIT: u8 = 1;
/// Exit code of a command line that cannot be followed.
const USAGE_EXIT: u8 = 2;

/// Paints the stack, runs the command line and exits with its status.
#[riscv_rt::entry]
fn main() -> ! {
    ram::paint_stack();
    let mut console = Uart::new();
    let code = run(&mut console);
    semihost::exit(code)
}

/// Reads the command line and runs it; returns the exit code.
fn run(console: &mut Uart) -> u8 {
    let mut line = [0u8; COMMAND_LINE];
    let line = match semihost::command_line(&mut line).map(core::str::from_utf8) {
        Some(Ok(line)) => line,
        Some(Err(_)) => return fail(console, format_args!("the command line is not UTF-8")),
        None => return fail(console, format_args!("the command line is too long")),
    };
    let mut text = [0u8; COMMAND_LINE];
    match args::parse(line, &mut text) {
        Ok(args) => generate(console, &args),
        Err(ArgsError::Help) => {
            let _ = writeln!(console, "{USAGE}");
            0
        }
        Err(e) => {
            let _ = writeln!(console, "error: {e}\n{USAGE}");
            USAGE_EXIT
        }
    }
}

/// Starts the card, opens the pack and generates as `args` asks; returns the exit code.
fn generate(console: &mut Uart, args: &args::Args<'_>) -> u8 {
    let Some((memory, buffers)) = ram::take() else {
        return fail(console, format_args!("RAM taken twice"));
    };
    let map = ram::map();
    let _ = writeln!(
        console,
        "ram: {} bytes: stack {}, statics {}, arena {} (workspace and KV cache, split per request)",
        map.total, map.stack, map.statics, map.arena
    );
    let wire = Cell::new(0);
    let mut sd = SdCard::new(SifiveSpi::new(buffers.run, &wire), ChipSelect, Delay, SD_HZ);
    if let Err(e) = sd.init() {
        return fail(console, format_args!("SD card: {e} (is a card image given with --sd?)"));
    }
    let card = Card::new(&mut sd, buffers.pack, buffers.kv);
    let mut board = Board {
        memory,
        out: &mut *console,
        clock: Ticks::new(args.icount, &wire),
        ticks_per_ms: TICKS_PER_MS,
        // Unused: the command line's options are given whole.
        defaults: Options::new(DEFAULT_TOKENS, KvFormat::F32, Activations::F32),
        workers: &mut OneWorker,
    };
    // No flash fallback here: the flash's error type is never made.
    match answer_from_card::<_, _, _, Infallible>(&args.options, &card, &mut board) {
        Ok(stats) => {
            report(console, &stats, args.icount);
            0
        }
        Err(e) => fail(console, format_args!("{e}")),
    }
}

/// The timing lines: instructions under `-icount shift=0`, else emulated milliseconds.
fn report(console: &mut Uart, stats: &Stats, icount: bool) {
    if icount {
        let _ = writeln!(
            console,
            "prompt pass: {} instructions (batch {})",
            stats.prompt_ticks, stats.batch
        );
        if let (Some(ticks), Some(bytes)) = (stats.ticks_per_token(), stats.bytes_per_token()) {
            let _ = writeln!(console, "instructions per token: {ticks}");
            let _ = writeln!(console, "bytes read per token: {bytes}");
        }
        let _ = traffic(console, stats);
    } else {
        let _ = write_timing(console, stats, TICKS_PER_MS, "emulated");
    }
    let _ = writeln!(console, "stack: {} of {} bytes used", ram::stack_used(), ram::map().stack);
}

/// Prints `error: …` and returns the error exit code.
fn fail(console: &mut Uart, message: core::fmt::Arguments<'_>) -> u8 {
    let _ = writeln!(console, "error: {message}");
    ERROR_EXIT
}
