//! picoGPT on a Raspberry Pi Pico 2 (RP2350A: two Cortex-M33 at 150 MHz, 520 KiB SRAM),
//! its weights streamed from an SD card.
//!
//! Wiring: a 3.3 V micro-SD breakout on SPI0 (the default), or, built with `--features
//! sdio`, a card wired for 4-bit SDIO on GP10-GP15 (`sdio.rs`: CLK, CMD, DAT0-DAT3).
//!
//! ```text
//! Pico 2  GP16 (SPI0 RX)  <- card DO / MISO
//!         GP17 (GPIO)     -> card CS
//!         GP18 (SPI0 SCK) -> card CLK
//!         GP19 (SPI0 TX)  -> card DI / MOSI
//!         3V3, GND        -- card VCC, GND
//! ```
//!
//! The card is FAT32 with the pack in its root as `MODEL.PGP` (an 8.3 name: embedded-sdmmc
//! reads no long names): `cp model-int8.pgpt /media/sd/MODEL.PGP`. KV positions beyond the
//! RAM go to `KV.BIN` beside it, created (or grown) when a context first needs it. Without a
//! card, a small pack written to flash at 0x1010_0000 (`flash.rs`) answers instead.
//!
//! Console: USB CDC-ACM on the Pico's own USB port (`picocom /dev/ttyACM0`). Type a prompt,
//! text (`Alan Turing theorized -n 8`, encoded on the board) or comma-separated token ids
//! (`36235,39141 -n 8 --bits`), with the flags of `host-tools run`, or just Enter for
//! picoGPT's prompt; the answer is the host's step and candidate lines, then the prompt pass
//! and ms per token. Any failure (no card, no file, a bad pack, a model too large for the
//! RAM, a read error) is one `error:` line, and the next line is awaited.
//! Diagnostics: defmt over RTT (`cargo run --release` flashes with probe-rs and shows them).
//!
//! Core 0 runs USB; core 1 runs the model, blocking on the card, so the console stays alive.
#![no_std]
#![no_main]

mod flash;
mod infer;
mod link;
mod ram;
#[cfg(not(feature = "sdio"))]
mod sd;
#[cfg(feature = "sdio")]
mod sdio;
mod usb;

/// The card, on the bus this build chose.
#[cfg(not(feature = "sdio"))]
use sd as bus;
#[cfg(feature = "sdio")]
use sdio as bus;

use core::ptr::addr_of_mut;

use defmt_rtt as _;
use embassy_executor::Spawner;
use embassy_rp::multicore::{Stack, spawn_core1};
use panic_probe as _;

/// Core 1's stack (the model's; core 0's is in SRAM8-9).
const CORE1_STACK_BYTES: usize = 16 * 1024;

static mut CORE1_STACK: Stack<CORE1_STACK_BYTES> = Stack::new();

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let p = embassy_rp::init(Default::default());
    #[cfg(not(feature = "sdio"))]
    let card = bus::card(p.SPI0, p.PIN_18, p.PIN_19, p.PIN_16, p.PIN_17);
    #[cfg(feature = "sdio")]
    let card = Some(bus::card(
        p.PIO0,
        p.DMA_CH0,
        bus::Pins {
            clk: p.PIN_10,
            cmd: p.PIN_11,
            dat0: p.PIN_12,
            dat1: p.PIN_13,
            dat2: p.PIN_14,
            dat3: p.PIN_15,
        },
    ));
    match (card, ram::take()) {
        (Some(card), Some(ram)) => {
            defmt::info!("kv cache RAM: {} bytes", ram::kv_bytes());
            // SAFETY: the only reference to CORE1_STACK, handed to core 1 once.
            let stack = unsafe { &mut *addr_of_mut!(CORE1_STACK) };
            spawn_core1(p.CORE1, stack, move || infer::serve(card, ram));
        }
        _ => defmt::error!("SD card pins or RAM unavailable"),
    }
    usb::start(spawner, p.USB);
}
