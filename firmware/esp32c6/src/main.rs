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
//! The card is FAT32 with the pack in its root as `MODEL.PGP` (an 8.3 name), copied onto a
//! freshly formatted card so that it is in one piece; each 16 KiB window of it comes in by DMA
//! while the core computes on the one before. KV positions beyond the RAM go to `KV.BIN`
//! beside it, created (or grown) when a context first needs it. Without a card, a small pack
//! written to flash at 0x20_0000 (`flash.rs`) answers instead.
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
mod flash;
mod ram;
mod sd;

use core::fmt::Write;

use esp_backtrace as _;
use esp_hal::clock::CpuClock;
use esp_hal::time::Instant;
use esp_hal::usb::usb_serial_jtag::UsbSerialJtag;
use esp_storage::FlashStorage;
use picogpt_board::board::Board;
use picogpt_board::sd::{Windows, answer_line};
use picogpt_board::{Clock, Options};
use picogpt_core::{Activations, KvFormat, OneWorker};

use crate::console::Console;
use crate::flash::FlashPack;

esp_bootloader_esp_idf::esp_app_desc!();

/// Tokens generated when the line does not say: with picoGPT's 10-token prompt, one prompt
/// pass and seven more (the positions the RAM cannot hold spill to `KV.BIN`).
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
    let pins = (p.GPIO6, p.GPIO7, p.GPIO2, p.GPIO18);
    let (Some(mut card), Some((ram, buffers))) = (sd::card(p.SPI2, p.DMA_CH0, pins), ram::take())
    else {
        let _ = writeln!(console, "error: the SD card's SPI bus or the RAM is unavailable");
        loop {
            core::hint::spin_loop();
        }
    };
    let mut flash = FlashPack::new(FlashStorage::new(p.FLASH));
    let mut board = Board {
        memory: ram,
        out: console,
        clock: Micros,
        ticks_per_ms: 1000,
        defaults: Options::new(DEFAULT_TOKENS, KvFormat::Int8, Activations::Int16),
        workers: &mut OneWorker,
    };
    let _ = write!(
        board.out,
        "picogpt on ESP32-C6: type a prompt (text, or token ids such as 36235,39141) and flags \
         (-n 8 --bits), or Enter for the default prompt\n> "
    );
    let (pack, kv) = (buffers.pack, buffers.kv);
    loop {
        let line = board.out.read_line();
        let windows = Windows { pack: &mut *pack, kv: &mut *kv };
        answer_line(&line, &mut card, sd::restart, windows, Some(&mut flash), &mut board);
        let _ = write!(board.out, "> ");
    }
}
