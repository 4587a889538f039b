//! picoGPT on an emulated Cortex-M33: QEMU's `mps2-an505` board (Arm's AN505 FPGA image,
//! an IoT Kit subsystem with a Cortex-M33 at 20 MHz, FPU and DSP extension).
//!
//! Wiring: none. The packed file stays on the host and is read through ARM semihosting
//! (SYS_OPEN/SYS_FLEN/SYS_SEEK/SYS_READ, 16 KiB per read, as from an SD card); KV positions
//! beyond the RAM go to a host file (`--kv-file`, SYS_OPEN read-write, SYS_SEEK, SYS_WRITE);
//! the arguments come from SYS_GET_CMDLINE, the output goes to QEMU's standard output
//! (SYS_WRITE to `:tt`) and the exit status through SYS_EXIT_EXTENDED. RAM is held to the
//! RP2350's 520 KiB.
//!
//! ```text
//! cd firmware/qemu-m33
//! cargo run --release -- FILE Alan Turing theorized -n 4 \
//!     [--tokens 1,2,3] [--kv f32|f16|int8] [--activations f32|int8] [--kv-file PATH] \
//!     [--speculate K] [--bits] [--icount] [--no-verify]
//! ```
//!
//! prints the same step, candidate, `generated:` and text lines as
//! `host-tools run FILE "Alan Turing theorized" -n 4`: the prompt is the words after `FILE`
//! that are not flags, joined by single spaces (QEMU's command line cannot carry a space
//! inside an argument), encoded on the emulated board; `--tokens` gives ids instead. Exit
//! status: 0 done, 1 bad input (one `error:` line), 2 bad arguments, 101 panic, 102 hard
//! fault (stack overflow included).
#![no_std]
#![no_main]

mod args;
mod clock;
mod console;
mod fault;
mod host_file;
mod ram;
mod semihost;
mod spill;

use core::fmt::Write;

use cortex_m_rt::entry;
use picogpt_board::print::traffic;
use picogpt_board::workers::InTurn;
use picogpt_board::{CHUNK_BYTES, Failure, MAX_PROMPT, Stats, generate, write_timing};
use picogpt_core::Model;

use crate::args::{Args, ArgsError, USAGE};
use crate::clock::{NS_PER_TICK, Ticks};
use crate::console::Console;
use crate::host_file::HostFile;
use crate::spill::HostSpill;

/// Longest command line read from QEMU.
const COMMAND_LINE: usize = 1024;

/// Exit code of a run that failed on its input.
const ERROR_EXIT: u8 = 1;
/// Exit code of a command line that cannot be followed.
const USAGE_EXIT: u8 = 2;

#[entry]
fn main() -> ! {
    let Ok(mut console) = Console::open() else { semihost::exit(ERROR_EXIT) };
    let code = run(&mut console);
    let _ = console.flush();
    semihost::exit(code)
}

/// Reads the command line and runs it; returns the exit code.
fn run(console: &mut Console) -> u8 {
    let mut line = [0u8; COMMAND_LINE];
    let line = match semihost::command_line(&mut line).map(core::str::from_utf8) {
        Ok(Ok(line)) => line,
        Ok(Err(_)) => return fail(console, format_args!("the command line is not UTF-8")),
        Err(e) => return fail(console, format_args!("{e}")),
    };
    if line.split(' ').filter(|w| !w.is_empty()).skip(1).eq(["--check-kernels"]) {
        return check_kernels(console);
    }
    let mut text = [0u8; COMMAND_LINE];
    match args::parse(line, &mut text) {
        Ok(args) => generate_from(console, &args),
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

/// `--check-kernels`: core's kernels for this CPU against their plain twins, here on the
/// emulated Cortex-M33 (the host tests only ever see the plain ones run here).
fn check_kernels(console: &mut Console) -> u8 {
    let kernels = picogpt_core::Kernels::native();
    match picogpt_core::kernels::check::check(&kernels) {
        Ok(n) => {
            let _ =
                writeln!(console, "kernels: {} match the plain ones in {n} checks", kernels.name);
            0
        }
        Err(m) => fail(
            console,
            format_args!(
                "kernel {} differs from its plain twin ({} inputs, from block {}): {:#010x}, expected {:#010x}",
                m.kernel, m.cols, m.block0, m.found, m.expected
            ),
        ),
    }
}

/// Opens the pack and generates as `args` asks; returns the exit code.
fn generate_from(console: &mut Console, args: &Args<'_>) -> u8 {
    let Some(ram) = ram::take() else { return fail(console, format_args!("RAM taken twice")) };
    let map = ram::map();
    let _ = writeln!(
        console,
        "ram: {} bytes: stack {}, statics {}, arena {} (workspace and KV cache, split per request)",
        map.total, map.stack, map.statics, map.arena
    );
    let file = match HostFile::open(args.file) {
        Ok(file) => file,
        Err(e) => return fail(console, format_args!("{}: {e}", args.file)),
    };
    let mut model = match Model::open(file) {
        Ok(model) => model,
        Err(e) => return fail(console, format_args!("{}: {e}", args.file)),
    };
    let Some(peripherals) = cortex_m::Peripherals::take() else {
        return fail(console, format_args!("core peripherals taken twice"));
    };
    let mut clock = Ticks::start(peripherals.SYST);
    let request = args.options.request(CHUNK_BYTES, MAX_PROMPT);
    let memory = ram;
    let mut spill = HostSpill::new(args.kv_file);
    // The Pico 2's two-way split of every matrix's rows, run in turn on the one emulated
    // core: what it prints is what the split computes.
    let mut workers = InTurn(2);
    match generate(&mut model, memory, &mut spill, &request, console, &mut clock, &mut workers) {
        Ok(stats) => {
            report(console, &stats, args.icount);
            0
        }
        Err(e @ Failure::Spill(_)) => fail(console, format_args!("{e}")),
        Err(e) => fail(console, format_args!("{}: {e}", args.file)),
    }
}

/// The timing lines: instructions under `-icount shift=0`, else emulated milliseconds.
fn report(console: &mut Console, stats: &Stats, icount: bool) {
    if icount {
        let prompt = stats.prompt_ticks * NS_PER_TICK;
        let _ = writeln!(console, "prompt pass: {prompt} instructions (batch {})", stats.batch);
        if let (Some(ticks), Some(bytes)) = (stats.ticks_per_token(), stats.bytes_per_token()) {
            let _ = writeln!(console, "instructions per token: {}", ticks * NS_PER_TICK);
            let _ = writeln!(console, "bytes read per token: {bytes}");
        }
        let _ = traffic(console, stats);
    } else {
        let _ = write_timing(console, stats, 1_000_000 / NS_PER_TICK, "emulated");
    }
    let _ = writeln!(console, "stack: {} of {} bytes used", ram::stack_used(), ram::map().stack);
}

/// Prints `error: …` and returns the error exit code.
fn fail(console: &mut Console, message: core::fmt::Arguments<'_>) -> u8 {
    let _ = writeln!(console, "error: {message}");
    ERROR_EXIT
}
