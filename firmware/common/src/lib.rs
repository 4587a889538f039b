//! What every picogpt board does with a pack, whatever its storage and console: size the
//! forward pass to the board's RAM, generate greedily, and print the lines `host-tools run`
//! prints, so a board's transcript can be compared with the desktop's byte for byte.
//!
//! A board supplies the [`picogpt_core::Storage`] the weights come from, a
//! [`core::fmt::Write`] console, a [`session::Clock`], and two static buffers: the workspace
//! (sized by [`GPT2_124M_WORKSPACE_WORDS`]) and whatever RAM is left for the KV cache.
#![no_std]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod options;
pub mod prompt;
#[cfg(feature = "sd")]
pub mod sd;
pub mod session;
pub mod text;

include!(concat!(env!("OUT_DIR"), "/sizes.rs"));

pub use options::{LineError, Options, OptionsError, parse_line, parse_options};
pub use prompt::{DEFAULT_PROMPT, MAX_PROMPT, Prompt, PromptError, parse_tokens};
pub use session::{Clock, Failure, Memory, Request, Stats, generate, write_timing};
