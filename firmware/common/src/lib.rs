//! What every picogpt board does with a pack, whatever its storage and console: size the
//! forward pass to the board's RAM, spill KV positions beyond it to storage, encode text
//! prompts, generate greedily, and print the lines `host-tools run` prints, so a board's
//! transcript can be compared with the desktop's byte for byte.
//!
//! A board supplies the [`picogpt_core::Storage`] the weights come from, a
//! [`core::fmt::Write`] console, a [`session::Clock`], a [`kv::Spill`] (or [`kv::NoSpill`]),
//! and static buffers ([`session::Memory`]): the workspace (sized by
//! [`GPT2_124M_WORKSPACE_WORDS`]), the text prompt's tokens and BPE scratch, and whatever RAM
//! is left for the KV cache.
#![no_std]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod board;
pub mod failure;
pub mod kv;
pub mod line;
pub mod options;
pub mod print;
pub mod prompt;
#[cfg(feature = "sd")]
pub mod sd;
pub mod session;
pub mod text;

include!(concat!(env!("OUT_DIR"), "/sizes.rs"));

pub use failure::Failure;
pub use kv::{NoSpill, Spill, SpillError};
pub use options::{LineError, MAX_LINE, Options, OptionsError, parse_line, parse_options};
pub use print::write_timing;
pub use prompt::{
    BPE_SCRATCH_WORDS, DEFAULT_PROMPT, Input, MAX_PROMPT, Prompt, PromptError, Words, parse_tokens,
};
pub use session::{Clock, Memory, Request, Stats, generate};
