//! What a board is asked to generate, the clock it times it with, and what it cost.

use picogpt_core::{Activations, KvFormat, Passes};

use crate::meter::Traffic;
use crate::prompt::Input;

/// Tokens generated when the user does not say (picoGPT's default).
pub const DEFAULT_TOKENS: usize = 40;

/// Most tokens one request may generate (their ids are kept for the `generated:` line).
pub const MAX_GENERATED: usize = 256;

/// A monotonic tick counter: cycles, instructions or microseconds, as the board decides.
pub trait Clock {
    /// Ticks since some fixed point.
    fn now(&mut self) -> u64;
}

/// What to generate, and how.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The prompt: ids, or text to encode; empty starts from `<|endoftext|>`, as GPT-2 does.
    pub prompt: &'a Input<'a>,
    /// Tokens to generate (fewer if `<|endoftext|>` comes first).
    pub n: usize,
    /// KV cache element format.
    pub kv: KvFormat,
    /// Bytes per storage read.
    pub chunk_bytes: usize,
    /// How activations meet int8 weights (`host-tools run --activations`).
    pub activations: Activations,
    /// Most prompt positions per pass over the weights (the RAM may allow fewer).
    pub max_batch: usize,
    /// Draft tokens per pass asked for ([`picogpt_core::speculate`]; 0: one token per pass).
    /// A pass verifying `k` of them holds `k + 1` positions: the RAM may allow fewer.
    pub speculate: usize,
    /// Check every tensor's CRC during the first pass, which reads them all.
    pub verify: bool,
    /// Print the f32 bits of the three best logits after each step.
    pub bits: bool,
}

/// What a generation cost, in the board's [`Clock`] ticks, storage bytes and bus traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Tokens generated.
    pub steps: usize,
    /// Prompt positions per pass over the weights.
    pub batch: usize,
    /// Ticks of the prompt's forward pass (which also yields the first token).
    pub prompt_ticks: u64,
    /// Bytes read by the prompt's forward pass.
    pub prompt_bytes: u64,
    /// What the storage's bus carried during the prompt's step (its forward pass, and its
    /// lines' token texts).
    pub prompt_traffic: Traffic,
    /// Ticks of the forward passes after the first, together (one pass may yield several
    /// tokens: the per-token figures divide by the tokens).
    pub token_ticks: u64,
    /// Bytes read by the forward passes after the first, together.
    pub token_bytes: u64,
    /// What the storage's bus carried during the steps after the first, together.
    pub token_traffic: Traffic,
    /// Passes over the weights, and the draft tokens they verified and accepted.
    pub passes: Passes,
}

impl Stats {
    /// Forward passes after the first.
    fn tokens(&self) -> u64 {
        self.steps.saturating_sub(1) as u64
    }

    /// Mean ticks per generated token after the first (`None` when only one was generated).
    pub fn ticks_per_token(&self) -> Option<u64> {
        self.token_ticks.checked_div(self.tokens())
    }

    /// Mean storage bytes per generated token after the first.
    pub fn bytes_per_token(&self) -> Option<u64> {
        self.token_bytes.checked_div(self.tokens())
    }

    /// Mean bus traffic per generated token after the first.
    pub fn traffic_per_token(&self) -> Option<Traffic> {
        self.token_traffic.per(self.tokens())
    }
}
