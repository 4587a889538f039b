//! picoGPT on an ESP32-C6 (one RISC-V core at 160 MHz, 512 KiB SRAM, no FPU), its weights
//! streamed from an SD card.
//!
//! Wiring: a 3.3 V micro-SD breakout on SPI2 (any GPIOs would do; these avoid the strapping,
//! USB and UART pins of the ESP32-C6-DevKitC-1).
//!
//! ```text
//! ESP32-C6  GPIO2  <- card DO / MISO
//!           GPIO6  -> card CLK
//!           GPIO7  -> card DI / MOSI
//!           GPIO18 -> card CS
//!           3V3, GND -- card VCC, GND
//! ```
//!
//! The card is FAT32 with the pack in its root as `MODEL.PGP` (an 8.3 name). KV positions
//! beyond the RAM go to `KV.BIN` beside it, created (or grown) when a context first needs it.
//!
//! Console: the C6's USB-Serial-JTAG port (the "USB" connector of the DevKitC), which
//! `cargo run --release` (espflash) flashes through and then monitors. Type a prompt, text
//! (`Alan Turing theorized -n 8`, encoded on the board) or comma-separated token ids
//! (`36235,39141 -n 8 --bits`), with the flags of `host-tools run`, or just Enter for
//! picoGPT's prompt; the answer is the host's step and candidate lines, then the prompt pass
//! and ms per token. Any failure (no card, no file, a bad pack, a model too large
//! for the RAM, a read error) is one `error:` line, and the next line is awaited.
//!
//! No FPU: every f32 operation of the forward pass is a call into the soft-float routines
//! (tens of cycles for an add or a multiply instead of one), and `libm`'s exp/tanh/sqrt are
//! soft-float too. The int8-activation path (`--activations int8`, the default here) keeps the
//! dot products in integers and is the one to use. Soft-float is correctly rounded IEEE
//! arithmetic, so the lines should match the host's bit for bit (not checked on hardware).
#![no_std]
#![no_main]

mod console;
mod ram;
mod sd;

use core::fmt::Write;

use esp_backtrace as _;
use esp_hal::clock::CpuClock;
use esp_hal::time::Instant;
use esp_hal::usb::usb_serial_jtag::UsbSerialJtag;
use picogpt_board::board::Board;
use picogpt_board::sd::answer_line;
use picogpt_board::{Clock, Options};
use picogpt_core::{Activations, KvFormat};

use crate::console::Console;

esp_bootloader_esp_idf::esp_app_desc!();

/// Tokens generated when the line does not say: with the 10-token default prompt, within
/// the 19 positions of the KV cache in RAM.
const DEFAULT_TOKENS: usize = 8;

/// Microseconds since boot.
struct Micros;

impl Clock for Micros {
    fn now(&mut self) -> u64 {
        Instant::now().duration_since_epoch().as_micros()
    }
}

#[esp_hal::main]
fn main() -> ! {
    let p = esp_hal::init(esp_hal::Config::default().with_cpu_clock(CpuClock::max()));
    let mut console = Console::new(UsbSerialJtag::new(p.USB_DEVICE));
    let (Some(mut card), Some(ram)) =
        (sd::card(p.SPI2, p.GPIO6, p.GPIO7, p.GPIO2, p.GPIO18), ram::take())
    else {
        let _ = writeln!(console, "error: the SD card's SPI bus or the RAM is unavailable");
        loop {
            core::hint::spin_loop();
        }
    };
    let mut board = Board {
        memory: ram,
        out: console,
        clock: Micros,
        ticks_per_ms: 1000,
        defaults: Options::new(DEFAULT_TOKENS, KvFormat::Int8, Activations::Int8),
    };
    let _ = write!(
        board.out,
        "picogpt on ESP32-C6: type a prompt (text, or token ids such as 36235,39141) and flags \
         (-n 8 --bits), or Enter for the default prompt\n> "
    );
    loop {
        let line = board.out.read_line();
        card = answer_line(&line, card, sd::restart, None, &mut board);
        let _ = write!(board.out, "> ");
    }
}
