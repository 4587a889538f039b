//! picoGPT on a microcontroller: the GPT-2 forward pass, `no_std`, streaming its weights.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod config;

pub use config::{ConfigError, ModelConfig};
