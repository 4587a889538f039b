//! An SD card in 4-bit SDIO mode on one RP2350 PIO state machine: the PIO programs
//! ([`programs`]), the protocol over them ([`card`]: identification, multi-block reads,
//! writes, retries, time limits), and the checksums ([`crc`]: CRC7, and the four DAT lines'
//! CRC16s a word at a time).
//!
//! The board supplies a [`sm::StateMachine`] (embassy-rp's PIO and DMA on the Pico 2); the
//! host tests supply a simulated card; CI runs the exact program words in the PyPI
//! `rp2040-pio-emulator` against a pin-level card (`emulation/`, `examples/`).
#![cfg_attr(not(test), no_std)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

#[cfg(feature = "board")]
pub mod block_device;
pub mod card;
pub mod command;
pub mod crc;
pub mod data;
pub mod programs;
pub mod response;
pub mod sm;

pub use card::{ATTEMPTS, BlockBuf, Card, CardInfo, Error, Timeouts};
pub use programs::{Mode, Speed};
pub use sm::{ReceiveStop, StateMachine};
