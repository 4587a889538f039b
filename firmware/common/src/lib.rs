//! What every picogpt board does with a pack, whatever its storage and console: split the
//! RAM between the forward pass and the KV cache per request, spill KV positions beyond it to
//! storage, encode text prompts, generate greedily, and print the lines `host-tools run`
//! prints, so a board's transcript can be compared with the desktop's byte for byte.
//!
//! A board supplies the [`picogpt_core::Storage`] the weights come from, a
//! [`core::fmt::Write`] console, a [`request::Clock`], a [`kv::Spill`] (or [`kv::NoSpill`]),
//! and static buffers ([`budget::Memory`]): the RAM arena, the text prompt's tokens and BPE
//! scratch, and the [`picogpt_core::Workers`] each matrix's rows are split between
//! ([`workers`]: the Pico 2's two cores, or the same split in turn on one).
//!
//! With the `sd` feature, the SD card's read path: the block-device seam ([`block`]), an SD
//! card over SPI ([`sdspi`]), the FAT volume's files mapped into extents ([`fat`]) and read
//! straight from the card in windows ([`card`]), and a console line answered from the card
//! ([`sd`]).
#![no_std]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

#[cfg(feature = "sd")]
pub mod block;
pub mod board;
pub mod budget;
#[cfg(feature = "sd")]
pub mod card;
#[cfg(feature = "sd")]
pub mod crc;
pub mod failure;
#[cfg(feature = "sd")]
pub mod fat;
pub mod kv;
pub mod line;
pub mod meter;
pub mod options;
pub mod print;
pub mod prompt;
pub mod request;
#[cfg(feature = "sd")]
pub mod sd;
#[cfg(feature = "sd")]
pub mod sdspi;
pub mod session;
pub mod text;
pub mod workers;

include!(concat!(env!("OUT_DIR"), "/sizes.rs"));

pub use budget::Memory;
pub use failure::Failure;
pub use kv::{NoSpill, Spill, SpillError};
pub use meter::{Metered, Traffic};
pub use options::{LineError, MAX_LINE, Options, OptionsError, parse_line, parse_options};
pub use print::write_timing;
pub use prompt::{
    BPE_SCRATCH_WORDS, DEFAULT_PROMPT, Input, MAX_PROMPT, Prompt, PromptError, Words, parse_tokens,
};
pub use request::{Clock, DEFAULT_TOKENS, Request, Stats};
pub use session::generate;
