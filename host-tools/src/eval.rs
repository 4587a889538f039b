//! `eval`: how much each pack's predictions differ from the f32 reference, as llama.cpp's
//! perplexity/KL-divergence tool measures a quantization.
//!
//! The reference ([`crate::reference`], no code shared with core) and core over the pack both
//! read the same tokens teacher-forced: at every position each gives its full next-token
//! distribution, and they are compared position by position. Perplexity is over the tokens
//! that follow (positions `0..n-1` predict tokens `1..n`); KL divergence, agreement and logit
//! error are over all `n` positions.

use std::io;
use std::path::Path;

use picogpt_core::format::NO_LAYER;
use picogpt_core::{
    Activations, KvFormat, LogitSink, Model, ModelConfig, RamKv, Storage, WorkspaceSpec,
};
use serde::{Deserialize, Serialize};

use crate::file_storage::FileStorage;
use crate::reference::{ReferenceError, Session};
use crate::weights::Gpt2Weights;

/// Lincoln's Gettysburg Address (public domain): a text for `eval --text`.
pub const GETTYSBURG: &str = include_str!("../../data/gettysburg.txt");

/// Why an evaluation failed.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Fewer than two tokens: nothing to predict.
    #[error("{found} tokens given: evaluation needs at least 2")]
    TooFewTokens {
        /// Tokens given.
        found: usize,
    },
    /// More tokens than the model has positions.
    #[error("{found} tokens exceed the model's context of {n_ctx}")]
    TooLong {
        /// Tokens given.
        found: usize,
        /// `n_ctx`.
        n_ctx: u32,
    },
    /// The reference could not run.
    #[error("reference: {0}")]
    Reference(#[from] ReferenceError),
    /// The pack could not be opened.
    #[error("{path}: {source}")]
    Open {
        /// The pack.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// core rejected the pack or failed while running it.
    #[error("{path}: {message}")]
    Core {
        /// The pack.
        path: String,
        /// core's error, as text.
        message: String,
    },
    /// The pack holds a different model than the checkpoint.
    #[error(
        "{path} holds another model ({pack}) than the checkpoint ({checkpoint}): give the \
         packs made from this checkpoint"
    )]
    ConfigMismatch {
        /// The pack.
        path: String,
        /// The pack's config.
        pack: ModelConfig,
        /// The checkpoint's config.
        checkpoint: ModelConfig,
    },
}

/// The reference's logits at every position of the text.
#[derive(Clone, Debug)]
pub struct Reference {
    config: ModelConfig,
    tokens: Vec<u32>,
    /// `[n, vocab]`.
    logits: Vec<f32>,
    perplexity: f64,
}

impl Reference {
    /// Runs the f32 reference over `tokens` (at least 2, at most `n_ctx`).
    pub fn new(weights: &Gpt2Weights, tokens: &[u32]) -> Result<Self, EvalError> {
        let config = weights.config;
        if tokens.len() < 2 {
            return Err(EvalError::TooFewTokens { found: tokens.len() });
        }
        if tokens.len() > config.n_ctx as usize {
            return Err(EvalError::TooLong { found: tokens.len(), n_ctx: config.n_ctx });
        }
        let logits = Session::new(weights)?.logits(tokens)?;
        let vocab = config.vocab_size as usize;
        let nll: f64 = logits
            .chunks_exact(vocab)
            .zip(&tokens[1..])
            .map(|(row, &next)| log_sum_exp(row) - f64::from(row[next as usize]))
            .sum();
        let perplexity = (nll / (tokens.len() - 1) as f64).exp();
        Ok(Self { config, tokens: tokens.to_vec(), logits, perplexity })
    }

    /// The tokens read.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// The reference's own perplexity on the text.
    pub fn perplexity(&self) -> f64 {
        self.perplexity
    }

    /// The model shape.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn row(&self, pos: usize) -> &[f32] {
        let vocab = self.config.vocab_size as usize;
        &self.logits[pos * vocab..(pos + 1) * vocab]
    }
}

/// How core reads the packs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalOptions {
    /// Bytes per storage read.
    pub chunk_bytes: usize,
    /// How activations meet int8 and int4 weights.
    pub activations: Activations,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self { chunk_bytes: 64 * 1024, activations: Activations::F32 }
    }
}

/// One pack against the reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PackQuality {
    /// The pack file.
    pub path: String,
    /// Its weight format (`f32`, `f16`, `int8 (blocks of 32)`, …), with the matrices stored in
    /// another format after it (`, wte int8 (blocks of 32)`).
    pub format: String,
    /// The kernel path the pack was run with (`f32`, `int16` or `int8` activations).
    #[serde(default = "f32_activations")]
    pub activations: String,
    /// File size in bytes.
    pub file_bytes: u64,
    /// Positions compared.
    pub positions: usize,
    /// Perplexity of core over the pack.
    pub perplexity: f64,
    /// That perplexity over the reference's.
    pub perplexity_ratio: f64,
    /// Mean over positions of KL(reference ‖ pack), in nats.
    pub mean_kl: f64,
    /// Largest KL(reference ‖ pack) of any position.
    pub max_kl: f64,
    /// Fraction of positions whose most likely token is the reference's.
    pub top1_agreement: f64,
    /// Fraction of positions whose three most likely tokens are the reference's (as a set).
    pub top3_agreement: f64,
    /// Largest |logit − reference logit| anywhere.
    pub max_abs_logit_error: f32,
}

/// Reports written before the field existed ran the exact path.
fn f32_activations() -> String {
    "f32".to_owned()
}

/// Every pack of one evaluation: what `eval --json` writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// The model shape.
    pub model: ModelConfig,
    /// Tokens read.
    pub tokens: usize,
    /// The f32 reference's perplexity.
    pub reference_perplexity: f64,
    /// One entry per pack, in the order given.
    pub packs: Vec<PackQuality>,
}

impl EvalReport {
    /// Writes the report as pretty JSON.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(io::Error::other)?;
        crate::partial::write(path, (text + "\n").as_bytes())
    }

    /// Reads a report written by [`Self::write`].
    pub fn read(path: &Path) -> io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        serde_json::from_str(&text).map_err(io::Error::other)
    }
}

/// Runs core over the pack at `path`, one position per call (one pass over the weights each),
/// and compares every position with `reference`; `progress(done, total)` follows the
/// positions. Tensor CRCs are checked on the first pass.
pub fn eval_pack(
    path: &Path,
    reference: &Reference,
    opts: &EvalOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<PackQuality, EvalError> {
    let name = path.display().to_string();
    let core =
        |e: &dyn std::fmt::Display| EvalError::Core { path: name.clone(), message: e.to_string() };
    let (mut model, file_bytes) = open_pack(path, &reference.config)?;
    let config = reference.config;
    let tokens = reference.tokens();
    let spec = WorkspaceSpec::new(1, opts.chunk_bytes).with_activations(opts.activations);
    let mut ws_mem = vec![0.0f32; model.workspace_bytes(&spec).div_ceil(4)];
    let mut ws = model.workspace(&spec, &mut ws_mem).map_err(|e| core(&e))?;
    let mut kv_mem = vec![0u8; RamKv::bytes_per_position(&config, KvFormat::F32) * tokens.len()];
    let mut kv = RamKv::new(&config, KvFormat::F32, &mut kv_mem);
    let mut sink = Logits(Vec::with_capacity(config.vocab_size as usize));
    let mut totals = Totals::default();
    for (pos, &token) in tokens.iter().enumerate() {
        model.set_verify(pos == 0);
        sink.0.clear();
        model.forward(&mut ws, &mut kv, &[token], pos, &mut sink).map_err(|e| core(&e))?;
        totals.add(&compare(reference.row(pos), &sink.0, tokens.get(pos + 1).copied()));
        progress(pos + 1, tokens.len());
    }
    let quant = model.layout().quant();
    let mut format = quant.matrices.to_string();
    for o in &quant.overrides {
        let name = o.kind.hf_name().trim_end_matches(".weight");
        let block = if o.layer == NO_LAYER { String::new() } else { format!("h.{}.", o.layer) };
        format.push_str(&format!(", {block}{name} {}", o.format));
    }
    let mut quality = totals.finish(name, format, file_bytes, reference.perplexity);
    quality.activations = opts.activations.name().to_owned();
    Ok(quality)
}

/// Opens the pack at `path`, checks that it holds the model `config` describes and returns it
/// with its length: what [`eval_pack`] does first, and what `eval` does for every pack before
/// the reference's long pass.
pub fn open_pack(
    path: &Path,
    config: &ModelConfig,
) -> Result<(Model<FileStorage>, u64), EvalError> {
    let name = path.display().to_string();
    let open_error = |source| EvalError::Open { path: name.clone(), source };
    let mut storage = FileStorage::open(path).map_err(open_error)?;
    let file_bytes = storage.size().map_err(open_error)?;
    let model = Model::open(storage)
        .map_err(|e| EvalError::Core { path: name.clone(), message: e.to_string() })?;
    if model.config() != config {
        let (pack, checkpoint) = (*model.config(), *config);
        return Err(EvalError::ConfigMismatch { path: name, pack, checkpoint });
    }
    Ok((model, file_bytes))
}

/// Collects one position's logits.
struct Logits(Vec<f32>);

impl LogitSink for Logits {
    fn accept(&mut self, _token: u32, logit: f32) {
        self.0.push(logit);
    }
}

/// One position of a pack against the reference.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Position {
    /// KL(reference ‖ pack) in nats.
    pub kl: f64,
    /// The most likely tokens agree.
    pub top1: bool,
    /// The three most likely tokens agree as a set.
    pub top3: bool,
    /// Largest |logit − reference logit|.
    pub max_abs_error: f32,
    /// −log p(next token) under the pack, when there is a next token.
    pub nll: Option<f64>,
}

/// Compares the pack's logits with the reference's at one position; `next` is the token
/// that follows in the text.
pub fn compare(reference: &[f32], pack: &[f32], next: Option<u32>) -> Position {
    let (lse_r, lse_p) = (log_sum_exp(reference), log_sum_exp(pack));
    let kl = reference
        .iter()
        .zip(pack)
        .map(|(&r, &p)| {
            let log_r = f64::from(r) - lse_r;
            log_r.exp() * (log_r - (f64::from(p) - lse_p))
        })
        .sum::<f64>()
        .max(0.0);
    let (mut best_r, mut best_p) = (top3(reference), top3(pack));
    let top1 = best_r[0] == best_p[0];
    best_r.sort_unstable();
    best_p.sort_unstable();
    let max_abs_error = reference.iter().zip(pack).map(|(r, p)| (r - p).abs()).fold(0.0, f32::max);
    let nll = next.map(|t| lse_p - f64::from(pack[t as usize]));
    Position { kl, top1, top3: best_r == best_p, max_abs_error, nll }
}

/// ln Σ exp(x), in f64.
fn log_sum_exp(x: &[f32]) -> f64 {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = x.iter().map(|&v| (f64::from(v) - f64::from(max)).exp()).sum();
    f64::from(max) + sum.ln()
}

/// Indices of the three largest values, best first (lowest index on ties; `usize::MAX`
/// fills the places of a vocabulary smaller than 3).
fn top3(x: &[f32]) -> [usize; 3] {
    let mut best = [usize::MAX; 3];
    for (i, &v) in x.iter().enumerate() {
        let beats = |b: usize| b == usize::MAX || v > x[b];
        if let Some(at) = best.iter().position(|&b| beats(b)) {
            best.copy_within(at..2, at + 1);
            best[at] = i;
        }
    }
    best
}

/// Running sums over positions.
#[derive(Default)]
struct Totals {
    positions: usize,
    kl_sum: f64,
    kl_max: f64,
    top1: usize,
    top3: usize,
    max_abs_error: f32,
    nll_sum: f64,
    predicted: usize,
}

impl Totals {
    fn add(&mut self, p: &Position) {
        self.positions += 1;
        self.kl_sum += p.kl;
        self.kl_max = self.kl_max.max(p.kl);
        self.top1 += usize::from(p.top1);
        self.top3 += usize::from(p.top3);
        self.max_abs_error = self.max_abs_error.max(p.max_abs_error);
        if let Some(nll) = p.nll {
            self.nll_sum += nll;
            self.predicted += 1;
        }
    }

    fn finish(self, path: String, format: String, file_bytes: u64, ref_ppl: f64) -> PackQuality {
        let n = self.positions as f64;
        let perplexity = (self.nll_sum / self.predicted as f64).exp();
        PackQuality {
            path,
            format,
            activations: f32_activations(),
            file_bytes,
            positions: self.positions,
            perplexity,
            perplexity_ratio: perplexity / ref_ppl,
            mean_kl: self.kl_sum / n,
            max_kl: self.kl_max,
            top1_agreement: self.top1 as f64 / n,
            top3_agreement: self.top3 as f64 / n,
            max_abs_logit_error: self.max_abs_error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_logits_agree_exactly() {
        let r = [1.0f32, 3.0, -2.0, 0.5, 2.5];
        let p = compare(&r, &r, Some(1));
        assert!(p.kl.abs() < 1e-12, "{}", p.kl);
        assert!(p.top1 && p.top3);
        assert_eq!(p.max_abs_error, 0.0);
        let z: f64 = r.iter().map(|&v| f64::from(v).exp()).sum();
        assert!((p.nll.unwrap() - (z.ln() - 3.0)).abs() < 1e-12);
    }

    #[test]
    fn kl_matches_the_definition() {
        let r = [0.0f32, 1.0, 2.0];
        let q = [2.0f32, 1.0, 0.0];
        let softmax = |x: &[f32]| {
            let z: f64 = x.iter().map(|&v| f64::from(v).exp()).sum();
            x.iter().map(|&v| f64::from(v).exp() / z).collect::<Vec<_>>()
        };
        let (pr, pq) = (softmax(&r), softmax(&q));
        let expected: f64 = pr.iter().zip(&pq).map(|(a, b)| a * (a / b).ln()).sum();
        let p = compare(&r, &q, None);
        assert!((p.kl - expected).abs() < 1e-12, "{} vs {expected}", p.kl);
        assert!(!p.top1);
        assert!(p.top3, "the same three tokens in another order");
        assert_eq!(p.max_abs_error, 2.0);
        assert_eq!(p.nll, None);
    }

    #[test]
    fn top3_keeps_the_lowest_index_on_ties() {
        assert_eq!(top3(&[1.0, 5.0, 5.0, 0.0, 7.0]), [4, 1, 2]);
        assert_eq!(top3(&[1.0, 2.0]), [1, 0, usize::MAX]);
    }
}
