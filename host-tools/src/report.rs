//! The JSON document `reference` and `run` both write, so their outputs compare field by field.

use std::path::Path;

use picogpt_core::ModelConfig;
use serde::{Deserialize, Serialize};

/// One candidate next token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopEntry {
    /// Token id.
    pub id: u32,
    /// Raw logit.
    pub logit: f32,
    /// Softmax probability.
    pub prob: f64,
    /// The token's text, when the pack has a tokenizer (U+FFFD for part of a character).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// One generated token and the three best candidates it was chosen from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// The token chosen.
    pub token: u32,
    /// Its text, when the pack has a tokenizer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Its bytes, when the pack has a tokenizer (a character may span tokens).
    #[serde(skip)]
    pub bytes: Vec<u8>,
    /// Best three candidates, best first.
    pub top: Vec<TopEntry>,
    /// The draw was limited to fewer candidates than top-k/top-p asked for.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// A whole greedy run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// Model shape, with `config.json`'s field names.
    pub model: ModelConfig,
    /// `f32`, `f16`, `int8` (the pack's matrix format; the reference is `f32`).
    pub quant: String,
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// One entry per generated token.
    pub steps: Vec<StepReport>,
    /// The generated text, when the model has a tokenizer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Every logit of the first step (reference only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_logits: Option<Vec<f32>>,
    /// Every byte read from storage during the whole run.
    pub bytes_read: u64,
    /// Working memory of the forward pass, KV cache excluded.
    pub working_bytes: u64,
    /// Time for the prompt's pass (which also yields the first token).
    pub prefill_ms: f64,
    /// Mean time per generated token after the first.
    pub ms_per_token: f64,
    /// Where the KV cache lived (`run` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv: Option<crate::run::KvPlan>,
    /// Passes over the weights and accepted draft tokens (`run` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passes: Option<crate::run::Passes>,
    /// The kernels and threads core ran with (`run` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
}

/// How core computed a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Engine {
    /// The kernel table (`portable`, `avx2+f16c`, …).
    pub kernels: String,
    /// Workers each matrix's rows were split between.
    pub threads: usize,
    /// Whether core computed on the memory-mapped pack in place.
    pub mapped: bool,
}

impl RunReport {
    /// The generated tokens.
    pub fn tokens(&self) -> Vec<u32> {
        self.steps.iter().map(|s| s.token).collect()
    }

    /// Writes the report as pretty JSON (whole or not at all).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        crate::partial::write(path, (text + "\n").as_bytes())
    }

    /// Reads a report written by [`Self::write`].
    pub fn read(path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        serde_json::from_str(&text).map_err(std::io::Error::other)
    }
}
