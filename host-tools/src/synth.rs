//! Deterministic synthetic GPT-2 checkpoints with the statistics of the real ones.
//!
//! The released GPT-2 weights cannot be fetched here, and a randomly initialised GPT-2 is a
//! poor stand-in: its next-token distribution is nearly uniform (top-1 ≈ 1/50257) and its
//! residual stream has none of the huge channels that make real GPT-2 hard to quantize.
//! [`synthesize`] builds weights that reproduce what matters for an int8 inference engine:
//!
//! a) peaked, input-dependent next-token distributions: logit std across the vocabulary ≈ 5,
//!    greedy top-1 probabilities mostly between 10 % and 75 %, greedy decodes that move on;
//! b) 2–4 residual channels (picked from the seed) growing through the layers to ≈ 2,600
//!    after the last block of a 12-layer model, nearly constant across positions;
//! c) after `ln_f` those channels stay ≈ 250× the median |value| of the others; their `wte`
//!    columns share one mean each with a small spread, so together they shift every logit
//!    by ≈ −100 (GPT-2's logits sit there: picoGPT's top candidate prints as `-90.74231`)
//!    and add a per-token bias of std ≈ 1 — the combination that makes naive per-row int8
//!    of the tied LM head flip greedy picks;
//! d) `ln_1`/`ln_2` give outlier channels tiny gains, so attention and MLP inputs stay sane.
//!
//! # Recipe
//!
//! 1. Every tensor is filled with standard normals. Each 65,536-value chunk of tensor `t`
//!    (canonical order) draws from its own ChaCha8 stream `(t << 32) | chunk` of the seed, so
//!    the result does not depend on the number of threads filling it. The outlier channels,
//!    their signs and amplitudes (1 for the first, 0.45–0.85 for the others) and the
//!    calibration tokens (8 random sequences of 16) come from stream `u64::MAX`.
//! 2. `wte` rows are rescaled to the norm of a std-0.1 vector on the ordinary channels (GPT-2's
//!    std is ≈ 0.14; equal norms stop a few long rows from winning every arg-max), while the
//!    outlier columns get a std of ≈ 0.003 for 124M (`outlier_wte_std`) around a mean
//!    (`outlier_wte_mean`, ≈ ±0.1 for 124M) whose sign follows the channel's, so each adds
//!    `LOGIT_OFFSET / n_outliers` to every logit; `wpe` gets std 0.02.
//! 3. Blocks are built in order, pushing the calibration sequences through the partial model
//!    with [`crate::reference`]. "RMS" below is over the ordinary (non-outlier) channels.
//!    - `ln_1`/`ln_2`: the ordinary gain gives the output RMS 1 (times a log-normal jitter of
//!      σ 0.1); the bias cancels the offset the outliers put into the layer-norm mean (plus
//!      N(0, 0.02²)); an outlier channel gets the gain that maps it to ±0.1, capped at the
//!      ordinary gain, which is ~1e-4 of it once the outliers have grown.
//!    - `c_attn`: query/key columns with std `sqrt(2 / n_embd)` (attention scores of std 2),
//!      value columns `1/sqrt(n_embd)`, bias N(0, 0.02²); `c_fc`: std `1/sqrt(n_embd)`, bias
//!      N(0, 0.1²).
//!    - Each `c_proj` is rescaled so its sub-layer adds `ρ` (MLP) or `0.35·ρ` (attention)
//!      times the RMS of the residual it reads, with `ρ` set so that the ordinary residual
//!      grows by `2·sqrt(n_embd)` over the model (×55 for 124M). That keeps the input token's
//!      own embedding small in the final state, so the tied head barely favours repeating it;
//!      a small attention share keeps the next token driven by the current one rather than
//!      by a context average that changes little from step to step.
//!    - Each `c_proj` bias cancels its sub-layer's mean output over the calibration rows (a
//!      shared direction would push every context towards the same token), plus
//!      N(0, (0.02·r)²) with `r` the output RMS; on outlier channel `j` the MLP's bias instead
//!      moves the channel's mean to `amplitude_j · sign_j · 2600 · ((layer + 1) / 12)^1.3`.
//! 4. `ln_f`: ordinary gains (same jitter, centring bias) are scaled so the logits of the
//!    calibration rows have std 5 across the vocabulary; outlier gains so those channels come
//!    out at 250× the median |ordinary output|.
//!
//! # Measured
//!
//! Release build, 2 cores; [`stats`] over two 10-token prompts with 20 greedy steps each (the
//! tests below).
//!
//! | shape, seed | synthesize | top-1 p10 / median / p90 | max outlier by layer | ln_f ratio |
//! |---|---|---|---|---|
//! | tiny (2 layers, 64 wide, 4 heads, n_ctx 64, vocab 50257), 1 | 0.07 s | 0.14 / 0.34 / 0.87 | 104, 258 | 226 |
//! | tiny, 2 | 0.07 s | 0.09 / 0.23 / 0.46 | 104, 257 | 276 |
//! | tiny, 3 | 0.07 s | 0.09 / 0.24 / 0.69 | 104, 258 | 264 |
//! | 124M, 1 | 1.9 s | 0.18 / 0.34 / 0.73 | 103, 254, 430, 624, 834, 1057, 1293, 1537, 1792, 2059, 2329, 2613 | 244 |
//!
//! Outlier channels vary by under 1.2 % across positions; the logit std across the
//! vocabulary averages 4.7–5.7 over the decoding steps. Greedy decodes wander through many
//! tokens, sometimes settling into a repeated token after about ten steps, as GPT-2 does.

use std::num::NonZeroUsize;

use picogpt_core::{ConfigError, ModelConfig};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use thiserror::Error;

use crate::reference::{self, LayerCache, ReferenceError};
use crate::weights::Gpt2Weights;

/// Std of the ordinary `wte` columns.
const WTE_STD: f32 = 0.1;
/// Std of `wpe`.
const WPE_STD: f32 = 0.02;
/// RMS of the ordinary channels of every `ln_1`/`ln_2` output.
const LN_OUT_RMS: f32 = 1.0;
/// Std of the log of the layer-norm gains around their calibrated value.
const LN_GAIN_JITTER: f32 = 0.1;
/// Std of the random part of the `ln_1`/`ln_2` biases, relative to [`LN_OUT_RMS`].
const LN_BIAS_STD: f32 = 0.02;
/// |Output| of an outlier channel through `ln_1`/`ln_2`, relative to [`LN_OUT_RMS`].
const OUTLIER_LN_OUT: f32 = 0.1;
/// Attention output RMS relative to the MLP's: small, so the next token depends mostly on
/// the current one (as the position-wise MLP sees it) and less on a slowly changing average
/// over the context, which would make greedy decoding repeat itself.
const ATTN_SHARE: f32 = 0.35;
/// Growth of the ordinary residual RMS over the whole model, in units of `sqrt(n_embd)`.
///
/// The token's own embedding then makes up about `1/(2·sqrt(n_embd))` of the final state
/// (norm ratio), so through the tied head it lifts its own logit by only about half a
/// standard deviation and greedy decoding does not just repeat its input.
const RESIDUAL_GROWTH: f32 = 2.0;
/// Std of the attention scores `q·k / sqrt(head)`.
const ATTN_SCORE_STD: f32 = 2.0;
/// Std of `attn.c_attn.bias`.
const C_ATTN_BIAS_STD: f32 = 0.02;
/// Std of `mlp.c_fc.bias`.
const C_FC_BIAS_STD: f32 = 0.1;
/// Std of the ordinary `c_proj` biases relative to the sub-layer's output RMS.
const C_PROJ_BIAS_REL: f32 = 0.02;
/// Magnitude of the largest outlier channel after the last block of a model
/// [`OUTLIER_REF_LAYERS`] deep.
const OUTLIER_TOP: f32 = 2600.0;
/// Depth at which the largest outlier reaches [`OUTLIER_TOP`] (GPT-2 124M's).
const OUTLIER_REF_LAYERS: f32 = 12.0;
/// Exponent of the outlier growth with depth.
const OUTLIER_GROWTH: f32 = 1.3;
/// Target logit standard deviation across the vocabulary.
const LOGIT_STD: f32 = 5.0;
/// Outlier |ln_f output| over the median ordinary |ln_f output|.
const LN_F_OUTLIER_RATIO: f32 = 250.0;
/// Std, in logits, of the per-token bias each outlier channel adds through the tied head.
const OUTLIER_LOGIT_STD: f32 = 1.0;
/// Shift of every logit through the outlier channels (GPT-2's logits sit near −100).
const LOGIT_OFFSET: f32 = -100.0;
/// Number of independent calibration sequences. Several short ones rather than one long one:
/// attention gives every position of a sequence a share of the same context average, and
/// calibrating on one sequence would fit (and cancel) that sequence's average only.
const CALIBRATION_SEQUENCES: usize = 8;
/// Length of each calibration sequence (less if `n_ctx` is smaller).
const CALIBRATION_LEN: usize = 16;
/// Values per independently seeded chunk of a tensor.
const CHUNK: usize = 1 << 16;
/// ChaCha8 stream for everything that is not a tensor value.
const PLAN_STREAM: u64 = u64::MAX;
/// Median of |N(0, 1)|.
const HALF_NORMAL_MEDIAN: f32 = 0.674_489_75;

/// Why weights cannot be synthesized.
#[derive(Debug, Error, PartialEq)]
pub enum SynthError {
    /// The requested shape is unusable.
    #[error("invalid model config: {0}")]
    Config(ConfigError),
    /// The calibration forward pass failed.
    #[error("calibration: {0}")]
    Reference(#[from] ReferenceError),
}

/// Builds the weights of a GPT-2 of shape `config`, bit-identical for the same `seed`; see the
/// module documentation for the recipe.
pub fn synthesize(config: ModelConfig, seed: u64) -> Result<Gpt2Weights, SynthError> {
    config.validate().map_err(SynthError::Config)?;
    let mut weights = Gpt2Weights::zeros(config);
    fill_standard_normal(&mut weights, seed);
    let plan = Plan::new(&config, seed);
    scale_embeddings(&mut weights, &plan);
    let mut x = Vec::new(); // [n_sequences * n_len, n_embd]
    for tokens in &plan.calibration {
        x.extend(reference::embed(&weights, tokens, 0)?);
    }
    for layer in 0..weights.layers.len() {
        build_block(&mut weights, layer, &plan, &mut x);
    }
    build_ln_f(&mut weights, &plan, &x);
    Ok(weights)
}

/// Fills every tensor with N(0, 1), chunk by chunk from independent streams, on all cores.
fn fill_standard_normal(weights: &mut Gpt2Weights, seed: u64) {
    let threads = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let mut buckets: Vec<Vec<(u64, &mut [f32])>> = (0..threads).map(|_| Vec::new()).collect();
    let chunks = weights.tensors_mut().into_iter().enumerate().flat_map(|(t, (_, data))| {
        data.chunks_mut(CHUNK).zip(0u64..).map(move |(chunk, c)| (((t as u64) << 32) | c, chunk))
    });
    for (i, job) in chunks.enumerate() {
        buckets[i % threads].push(job);
    }
    std::thread::scope(|scope| {
        for bucket in buckets {
            scope.spawn(move || {
                for (stream, chunk) in bucket {
                    let mut rng = ChaCha8Rng::seed_from_u64(seed);
                    rng.set_stream(stream);
                    for v in chunk {
                        *v = rng.sample(StandardNormal);
                    }
                }
            });
        }
    });
}

/// The seed-dependent choices that are not tensor values.
struct Plan {
    /// `(channel, signed amplitude)` of each outlier channel.
    outliers: Vec<(usize, f32)>,
    /// `is_outlier[c]` for every channel.
    is_outlier: Vec<bool>,
    /// Tokens pushed through the partial model to calibrate it.
    calibration: Vec<Vec<u32>>,
    /// Output RMS of attention relative to the residual RMS at its input.
    rho_attn: f32,
    /// Output RMS of the MLP relative to the residual RMS at its input.
    rho_mlp: f32,
}

impl Plan {
    fn new(config: &ModelConfig, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(PLAN_STREAM);
        let n_embd = config.embd();
        let count = (2 + rng.random_range(0..3usize)).min(n_embd / 16);
        let mut is_outlier = vec![false; n_embd];
        let mut outliers = Vec::with_capacity(count);
        while outliers.len() < count {
            let channel = rng.random_range(0..n_embd);
            if !is_outlier[channel] {
                is_outlier[channel] = true;
                let amplitude =
                    if outliers.is_empty() { 1.0 } else { rng.random_range(0.45..0.85) };
                let sign = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
                outliers.push((channel, sign * amplitude));
            }
        }
        let len = CALIBRATION_LEN.min(config.n_ctx as usize);
        let calibration = (0..CALIBRATION_SEQUENCES)
            .map(|_| (0..len).map(|_| rng.random_range(0..config.vocab_size)).collect())
            .collect();
        // The ordinary RMS grows by G = RESIDUAL_GROWTH · sqrt(n_embd) over the model when
        // every block multiplies its square by k = G^(2/n_layer) = (1 + a²ρ²)(1 + ρ²), with
        // a = ATTN_SHARE; solve for ρ².
        let growth = RESIDUAL_GROWTH * RESIDUAL_GROWTH * n_embd as f32;
        let k = growth.powf(1.0 / config.n_layer as f32);
        let a2 = ATTN_SHARE * ATTN_SHARE;
        let rho2 =
            (((1.0 + a2) * (1.0 + a2) + 4.0 * a2 * (k - 1.0)).sqrt() - (1.0 + a2)) / (2.0 * a2);
        let rho_mlp = rho2.sqrt();
        Self { outliers, is_outlier, calibration, rho_attn: ATTN_SHARE * rho_mlp, rho_mlp }
    }

    fn ordinary_count(&self) -> usize {
        self.is_outlier.len() - self.outliers.len()
    }

    /// RMS of `x` `[n_seq, n_embd]` over the ordinary channels.
    fn ordinary_rms(&self, x: &[f32]) -> f32 {
        let n_embd = self.is_outlier.len();
        let sum: f32 = x
            .chunks_exact(n_embd)
            .flat_map(|row| row.iter().zip(&self.is_outlier).filter(|(_, o)| !**o))
            .map(|(v, _)| v * v)
            .sum();
        (sum / (self.ordinary_count() * (x.len() / n_embd)) as f32).sqrt()
    }
}

/// Std of the `wte` columns of outlier channels: the ln_f output on an outlier channel is
/// planned at `LN_F_OUTLIER_RATIO` × the median ordinary output, whose size follows from the
/// logit std (`logit std = |h_ordinary| · WTE_STD`), and this std turns it into a per-token
/// bias of std `OUTLIER_LOGIT_STD`.
fn outlier_wte_std(n_embd: usize) -> f32 {
    OUTLIER_LOGIT_STD / planned_outlier_output(n_embd)
}

/// Planned |ln_f output| of an outlier channel (see [`outlier_wte_std`]).
fn planned_outlier_output(n_embd: usize) -> f32 {
    let ordinary_rms = LOGIT_STD / (WTE_STD * (n_embd as f32).sqrt());
    LN_F_OUTLIER_RATIO * HALF_NORMAL_MEDIAN * ordinary_rms
}

/// Mean of the `wte` column of an outlier channel with sign `sign`: its product with the
/// channel's planned ln_f output (of the same sign) is that channel's share of
/// [`LOGIT_OFFSET`].
fn outlier_wte_mean(n_embd: usize, n_outliers: usize, sign: f32) -> f32 {
    sign * LOGIT_OFFSET / (n_outliers as f32 * planned_outlier_output(n_embd))
}

fn scale_embeddings(weights: &mut Gpt2Weights, plan: &Plan) {
    let n_embd = plan.is_outlier.len();
    let outlier_std = outlier_wte_std(n_embd);
    let mut column_mean = vec![0.0f32; n_embd];
    for &(c, amplitude) in &plan.outliers {
        column_mean[c] = outlier_wte_mean(n_embd, plan.outliers.len(), amplitude.signum());
    }
    let ordinary_norm = WTE_STD * (plan.ordinary_count() as f32).sqrt();
    for row in weights.wte.chunks_exact_mut(n_embd) {
        let norm = row
            .iter()
            .zip(&plan.is_outlier)
            .filter(|(_, o)| !**o)
            .map(|(v, _)| v * v)
            .sum::<f32>()
            .sqrt();
        for ((v, &o), &mean) in row.iter_mut().zip(&plan.is_outlier).zip(&column_mean) {
            *v = if o { mean + outlier_std * *v } else { *v * ordinary_norm / norm };
        }
    }
    for v in &mut weights.wpe {
        *v *= WPE_STD;
    }
}

/// Layer norm of `x` with unit gain and zero bias, plus the mean and RMS (around that mean) of
/// its ordinary channels.
struct Normalized {
    xhat: Vec<f32>,
    center: f32,
    rms: f32,
}

impl Normalized {
    fn new(x: &[f32], plan: &Plan, eps: f32) -> Self {
        let n_embd = plan.is_outlier.len();
        let xhat = reference::layer_norm(x, &vec![1.0; n_embd], &vec![0.0; n_embd], eps);
        let ordinary: Vec<f32> = xhat
            .chunks_exact(n_embd)
            .flat_map(|row| row.iter().zip(&plan.is_outlier).filter(|(_, o)| !**o).map(|(v, _)| *v))
            .collect();
        let center = ordinary.iter().sum::<f32>() / ordinary.len() as f32;
        let var = ordinary.iter().map(|v| (v - center) * (v - center)).sum::<f32>()
            / ordinary.len() as f32;
        Self { xhat, center, rms: var.sqrt() }
    }

    /// RMS over rows of channel `c`.
    fn channel_rms(&self, c: usize, n_embd: usize) -> f32 {
        let rows = self.xhat.len() / n_embd;
        let sum: f32 = self.xhat.chunks_exact(n_embd).map(|row| row[c] * row[c]).sum();
        (sum / rows as f32).sqrt()
    }
}

/// Turns the raw normals in `gain`/`bias` into an `ln_1`/`ln_2` calibrated on its input `x`.
fn calibrate_ln(x: &[f32], gain: &mut [f32], bias: &mut [f32], plan: &Plan, eps: f32) {
    let n_embd = gain.len();
    let norm = Normalized::new(x, plan, eps);
    let g = LN_OUT_RMS / norm.rms;
    for c in 0..n_embd {
        if plan.is_outlier[c] {
            gain[c] = g.min(OUTLIER_LN_OUT * LN_OUT_RMS / norm.channel_rms(c, n_embd));
            bias[c] = 0.0;
        } else {
            gain[c] = g * (LN_GAIN_JITTER * gain[c]).exp();
            bias[c] = -gain[c] * norm.center + LN_BIAS_STD * LN_OUT_RMS * bias[c];
        }
    }
}

/// Scales a `c_proj` so its sub-layer output `out` varies with RMS `rho` × that of `x`, sets
/// its bias to cancel the output's mean over the calibration rows (a shared direction would
/// push every context towards the same next token) plus N(0, (0.02·r)²) from the raw normals
/// in `raw_bias`, and adds `out + bias` to `x`. Outlier channels get no bias here; the bias is
/// returned for the caller to adjust them before it is stored.
fn scale_and_add(
    x: &mut [f32],
    mut out: Vec<f32>,
    rho: f32,
    weight: &mut [f32],
    raw_bias: &[f32],
    plan: &Plan,
) -> Vec<f32> {
    let n_embd = raw_bias.len();
    let mean = column_means(&out, n_embd);
    for row in out.chunks_exact_mut(n_embd) {
        row.iter_mut().zip(&mean).for_each(|(o, m)| *o -= m);
    }
    let target = rho * plan.ordinary_rms(x);
    let scale = target / plan.ordinary_rms(&out);
    weight.iter_mut().for_each(|w| *w *= scale);
    let bias: Vec<f32> = raw_bias
        .iter()
        .zip(&mean)
        .zip(&plan.is_outlier)
        .map(|((b, m), &o)| if o { 0.0 } else { C_PROJ_BIAS_REL * target * b - scale * m })
        .collect();
    for (row, out_row) in x.chunks_exact_mut(n_embd).zip(out.chunks_exact(n_embd)) {
        for (((v, o), b), m) in row.iter_mut().zip(out_row).zip(&bias).zip(&mean) {
            // The output with its new weight and bias: scale * (o + m) + b.
            *v += scale * (o + m) + b;
        }
    }
    bias
}

/// Mean over rows of every column of `x` `[n_rows, n_cols]`.
fn column_means(x: &[f32], n_cols: usize) -> Vec<f32> {
    let mut mean = vec![0.0; n_cols];
    for row in x.chunks_exact(n_cols) {
        mean.iter_mut().zip(row).for_each(|(m, v)| *m += v);
    }
    let rows = (x.len() / n_cols) as f32;
    mean.iter_mut().for_each(|m| *m /= rows);
    mean
}

/// Calibrates block `index` on its input `x` (the calibration tokens' residual stream) and
/// advances `x` through it.
fn build_block(weights: &mut Gpt2Weights, index: usize, plan: &Plan, x: &mut [f32]) {
    let config = weights.config;
    let (n_embd, eps) = (config.embd(), config.layer_norm_epsilon);
    let layer = &mut weights.layers[index];

    calibrate_ln(x, &mut layer.ln_1_weight, &mut layer.ln_1_bias, plan, eps);
    // A score is (1/sqrt(head)) Σ over `head` products of q and k components, each of std
    // LN_OUT_RMS · sqrt(n_embd) · qk_std, so its std is LN_OUT_RMS² · n_embd · qk_std².
    let qk_std = (ATTN_SCORE_STD / (LN_OUT_RMS * LN_OUT_RMS * n_embd as f32)).sqrt();
    let v_std = 1.0 / (n_embd as f32).sqrt();
    for row in layer.c_attn_weight.chunks_exact_mut(3 * n_embd) {
        let (qk, v) = row.split_at_mut(2 * n_embd);
        qk.iter_mut().for_each(|w| *w *= qk_std);
        v.iter_mut().for_each(|w| *w *= v_std);
    }
    layer.c_attn_bias.iter_mut().for_each(|b| *b *= C_ATTN_BIAS_STD);
    layer.attn_c_proj_weight.iter_mut().for_each(|w| *w *= v_std);
    let raw_bias = std::mem::replace(&mut layer.attn_c_proj_bias, vec![0.0; n_embd]);
    let h = reference::layer_norm(x, &layer.ln_1_weight, &layer.ln_1_bias, eps);
    let rows_per_sequence = plan.calibration[0].len() * n_embd;
    let attn: Vec<f32> = h
        .chunks(rows_per_sequence)
        .flat_map(|seq| {
            reference::mha(seq, layer, config.n_head as usize, &mut LayerCache::default())
        })
        .collect();
    layer.attn_c_proj_bias =
        scale_and_add(x, attn, plan.rho_attn, &mut layer.attn_c_proj_weight, &raw_bias, plan);

    calibrate_ln(x, &mut layer.ln_2_weight, &mut layer.ln_2_bias, plan, eps);
    layer.c_fc_weight.iter_mut().for_each(|w| *w *= v_std);
    layer.c_fc_bias.iter_mut().for_each(|b| *b *= C_FC_BIAS_STD);
    layer.mlp_c_proj_weight.iter_mut().for_each(|w| *w *= 0.5 * v_std);
    let raw_bias = std::mem::replace(&mut layer.mlp_c_proj_bias, vec![0.0; n_embd]);
    let h = reference::layer_norm(x, &layer.ln_2_weight, &layer.ln_2_bias, eps);
    let mlp = reference::ffn(&h, layer);
    let mut bias =
        scale_and_add(x, mlp, plan.rho_mlp, &mut layer.mlp_c_proj_weight, &raw_bias, plan);
    let rows = x.len() / n_embd;
    let depth = ((index + 1) as f32 / OUTLIER_REF_LAYERS).powf(OUTLIER_GROWTH);
    for &(c, amplitude) in &plan.outliers {
        let mean = x.chunks_exact(n_embd).map(|row| row[c]).sum::<f32>() / rows as f32;
        let shift = amplitude * OUTLIER_TOP * depth - mean;
        bias[c] = shift;
        x.chunks_exact_mut(n_embd).for_each(|row| row[c] += shift);
    }
    layer.mlp_c_proj_bias = bias;
}

/// Calibrates `ln_f` on the final residual stream `x` of the calibration sequences: ordinary
/// gains (with the jitter) scaled so the logits have std `LOGIT_STD` across the vocabulary,
/// biases cancelling the common offset, and outlier gains giving those channels
/// `LN_F_OUTLIER_RATIO` times the median |ordinary output|.
fn build_ln_f(weights: &mut Gpt2Weights, plan: &Plan, x: &[f32]) {
    let n_embd = plan.is_outlier.len();
    let eps = weights.config.layer_norm_epsilon;
    let norm = Normalized::new(x, plan, eps);
    // First pass: ordinary channels at unit RMS, outliers off; measure the logit std.
    for (c, &outlier) in plan.is_outlier.iter().enumerate() {
        let g =
            if outlier { 0.0 } else { (LN_GAIN_JITTER * weights.ln_f_weight[c]).exp() / norm.rms };
        weights.ln_f_weight[c] = g;
        weights.ln_f_bias[c] = -g * norm.center;
    }
    let vocab = weights.config.vocab_size as usize;
    let logits = reference::lm_head(weights, x);
    let rows = logits.chunks_exact(vocab);
    let mean_var = rows.clone().map(variance).sum::<f32>() / rows.len() as f32;
    let scale = LOGIT_STD / mean_var.sqrt();
    weights.ln_f_weight.iter_mut().for_each(|g| *g *= scale);
    weights.ln_f_bias.iter_mut().for_each(|b| *b *= scale);
    // Second pass: outlier gains relative to the median ordinary output.
    let h = reference::layer_norm(x, &weights.ln_f_weight, &weights.ln_f_bias, eps);
    let mut ordinary: Vec<f32> = h
        .chunks_exact(n_embd)
        .flat_map(|row| {
            row.iter().zip(&plan.is_outlier).filter(|(_, o)| !**o).map(|(v, _)| v.abs())
        })
        .collect();
    let median = median(&mut ordinary);
    for &(c, _) in &plan.outliers {
        weights.ln_f_weight[c] = LN_F_OUTLIER_RATIO * median / norm.channel_rms(c, n_embd);
    }
}

/// Population variance of a row.
fn variance(row: &[f32]) -> f32 {
    let mean = row.iter().sum::<f32>() / row.len() as f32;
    row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / row.len() as f32
}

/// Median of a slice (upper median for even lengths, NaN when empty); reorders it.
fn median(values: &mut [f32]) -> f32 {
    if values.is_empty() {
        return f32::NAN;
    }
    let mid = values.len() / 2;
    *values.select_nth_unstable_by(mid, f32::total_cmp).1
}

/// What [`stats`] measured on a model.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthStats {
    /// Top-1 probability of every greedy step, prompt after prompt.
    pub top1_probs: Vec<f64>,
    /// Standard deviation of the logits across the vocabulary at every greedy step.
    pub logit_stds: Vec<f32>,
    /// Mean logit across the vocabulary at every greedy step.
    pub logit_means: Vec<f32>,
    /// The tokens each prompt's greedy decode produced.
    pub generated: Vec<Vec<u32>>,
    /// Channels whose mean |value| in the final residual stream exceeds 20× the median
    /// channel's.
    pub outlier_channels: Vec<usize>,
    /// Largest |value| on the outlier channels after each block.
    pub outlier_max_by_layer: Vec<f32>,
    /// Largest (std / |mean|) across positions of an outlier channel in the final residual
    /// stream: how far from constant the outliers are.
    pub outlier_spread: f32,
    /// Median over positions of (smallest outlier |ln_f output|) / (median ordinary
    /// |ln_f output|).
    pub ln_f_outlier_ratio: f32,
}

impl SynthStats {
    /// The `q`-quantile (0 ≤ q ≤ 1, nearest rank) of the top-1 probabilities.
    pub fn top1_quantile(&self, q: f64) -> f64 {
        let mut p = self.top1_probs.clone();
        p.sort_by(f64::total_cmp);
        let rank = (q.clamp(0.0, 1.0) * p.len().saturating_sub(1) as f64).round() as usize;
        p.get(rank).copied().unwrap_or(f64::NAN)
    }

    /// Fewest distinct tokens any prompt's greedy decode produced.
    pub fn min_distinct_tokens(&self) -> usize {
        let distinct = |tokens: &Vec<u32>| {
            let mut t = tokens.clone();
            t.sort_unstable();
            t.dedup();
            t.len()
        };
        self.generated.iter().map(distinct).min().unwrap_or(0)
    }
}

/// Measures the statistics the synthesis targets: greedily decodes `steps` tokens after each
/// prompt, then runs prompt + generation again layer by layer to look at the residual stream
/// and the `ln_f` output.
pub fn stats(
    weights: &Gpt2Weights,
    prompts: &[&[u32]],
    steps: usize,
) -> Result<SynthStats, ReferenceError> {
    weights.validate()?;
    let n_embd = weights.config.embd();
    let mut top1_probs = Vec::new();
    let mut logit_stds = Vec::new();
    let mut logit_means = Vec::new();
    let mut generated = Vec::new();
    let mut residuals: Vec<Vec<f32>> = vec![Vec::new(); weights.layers.len()]; // [n_layer][n_rows, n_embd]
    for prompt in prompts {
        let generation = reference::greedy(weights, prompt, steps)?;
        top1_probs.extend(generation.steps.iter().filter_map(|s| s.top3.first()).map(|c| c.prob));
        logit_stds.extend(generation.all_logits.iter().map(|l| variance(l).sqrt()));
        logit_means
            .extend(generation.all_logits.iter().map(|l| l.iter().sum::<f32>() / l.len() as f32));
        let tokens = generation.tokens();
        let sequence: Vec<u32> =
            prompt.iter().chain(&tokens[..tokens.len().saturating_sub(1)]).copied().collect();
        let mut x = reference::embed(weights, &sequence, 0)?;
        for (layer, out) in weights.layers.iter().zip(&mut residuals) {
            let (n_head, eps) = (weights.config.n_head as usize, weights.config.layer_norm_epsilon);
            reference::transformer_block(&mut x, layer, n_head, eps, &mut LayerCache::default());
            out.extend_from_slice(&x);
        }
        generated.push(tokens);
    }
    let last = residuals.last().cloned().unwrap_or_default();
    let rows = last.len() / n_embd;
    let mean_abs: Vec<f32> = (0..n_embd)
        .map(|c| last.chunks_exact(n_embd).map(|r| r[c].abs()).sum::<f32>() / rows as f32)
        .collect();
    let typical = median(&mut mean_abs.clone());
    let outlier_channels: Vec<usize> =
        (0..n_embd).filter(|&c| mean_abs[c] > 20.0 * typical).collect();
    let outlier_max_by_layer = residuals
        .iter()
        .map(|x| {
            x.chunks_exact(n_embd)
                .flat_map(|r| outlier_channels.iter().map(|&c| r[c].abs()))
                .fold(0.0, f32::max)
        })
        .collect();
    let outlier_spread = outlier_channels
        .iter()
        .map(|&c| {
            let values: Vec<f32> = last.chunks_exact(n_embd).map(|r| r[c]).collect();
            let mean = values.iter().sum::<f32>() / values.len() as f32;
            variance(&values).sqrt() / mean.abs()
        })
        .fold(0.0, f32::max);
    let h = reference::layer_norm(
        &last,
        &weights.ln_f_weight,
        &weights.ln_f_bias,
        weights.config.layer_norm_epsilon,
    );
    let mut ratios: Vec<f32> = h
        .chunks_exact(n_embd)
        .map(|row| {
            let weakest =
                outlier_channels.iter().map(|&c| row[c].abs()).fold(f32::INFINITY, f32::min);
            let mut ordinary: Vec<f32> = (0..n_embd)
                .filter(|c| !outlier_channels.contains(c))
                .map(|c| row[c].abs())
                .collect();
            weakest / median(&mut ordinary)
        })
        .collect();
    let ln_f_outlier_ratio = if ratios.is_empty() { 0.0 } else { median(&mut ratios) };
    Ok(SynthStats {
        top1_probs,
        logit_stds,
        logit_means,
        generated,
        outlier_channels,
        outlier_max_by_layer,
        outlier_spread,
        ln_f_outlier_ratio,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// Two 10-token prompts used by every statistics test.
    fn prompts(vocab: u32) -> [Vec<u32>; 2] {
        [
            (0..10).map(|i| (i * 4099 + 17) % vocab).collect(),
            (0..10).map(|i| (i * 7919 + 1000) % vocab).collect(),
        ]
    }

    fn tiny() -> ModelConfig {
        ModelConfig {
            n_layer: 2,
            n_embd: 64,
            n_head: 4,
            n_ctx: 64,
            vocab_size: 50257,
            layer_norm_epsilon: 1e-5,
        }
    }

    /// Synthesizes `config`, measures it and checks every targeted statistic;
    /// `outlier_final` bounds the largest outlier after the last block.
    fn check_statistics(config: ModelConfig, seed: u64, outlier_final: (f32, f32)) {
        let start = Instant::now();
        let w = synthesize(config, seed).unwrap();
        let synth_time = start.elapsed();
        let [p1, p2] = prompts(config.vocab_size);
        let start = Instant::now();
        let s = stats(&w, &[&p1, &p2], 20).unwrap();
        eprintln!(
            "seed {seed}: synthesize {synth_time:.2?}, stats {:.2?}\n  top-1 p10 {:.3} median {:.3} p90 {:.3}\n  \
             logit std mean {:.2}, logit mean {:.1}..{:.1}\n  outliers {:?}, max after each layer {:?}, spread {:.4}\n  \
             ln_f ratio {:.1}\n  generated {:?}",
            start.elapsed(),
            s.top1_quantile(0.1),
            s.top1_quantile(0.5),
            s.top1_quantile(0.9),
            s.logit_stds.iter().sum::<f32>() / s.logit_stds.len() as f32,
            s.logit_means.iter().copied().fold(f32::INFINITY, f32::min),
            s.logit_means.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            s.outlier_channels,
            s.outlier_max_by_layer,
            s.outlier_spread,
            s.ln_f_outlier_ratio,
            s.generated,
        );
        let median = s.top1_quantile(0.5);
        assert!((0.05..=0.6).contains(&median), "median top-1 probability {median}");
        assert!(
            (2..=4).contains(&s.outlier_channels.len()),
            "outlier channels {:?}",
            s.outlier_channels
        );
        let last = *s.outlier_max_by_layer.last().unwrap();
        assert!((outlier_final.0..=outlier_final.1).contains(&last), "final outlier max {last}");
        assert!(
            s.outlier_max_by_layer.windows(2).all(|w| w[0] < w[1]),
            "outliers must grow with depth"
        );
        assert!(s.outlier_spread < 0.05, "outliers vary across positions: {}", s.outlier_spread);
        assert!(s.ln_f_outlier_ratio >= 100.0, "ln_f outlier ratio {}", s.ln_f_outlier_ratio);
        for &mean in &s.logit_means {
            assert!((-130.0..=-70.0).contains(&mean), "mean logit {mean}, GPT-2's sit near -100");
        }
        assert!(s.min_distinct_tokens() > 1, "greedy decode stuck: {:?}", s.generated);
        assert_ne!(s.generated[0][0], s.generated[1][0], "different prompts, same next token");
    }

    #[test]
    fn tiny_model_has_the_targeted_statistics() {
        for seed in [1, 2, 3] {
            check_statistics(tiny(), seed, (100.0, 1000.0));
        }
    }

    /// The full GPT-2 124M shape: about 2 s to synthesize and 3 s to measure in release mode.
    /// Ignored by default for its memory (≈ 0.5 GB) and time; run with
    /// `cargo test -p host-tools --release -- --ignored synth`.
    #[test]
    #[ignore]
    fn gpt2_124m_shape_has_the_targeted_statistics() {
        check_statistics(ModelConfig::GPT2_124M, 1, (2000.0, 3200.0));
    }

    #[test]
    fn same_seed_gives_identical_weights() {
        let a = synthesize(tiny(), 7).unwrap();
        let b = synthesize(tiny(), 7).unwrap();
        let c = synthesize(tiny(), 8).unwrap();
        let bits = |w: &Gpt2Weights| -> Vec<u32> {
            w.tensors().iter().flat_map(|t| t.data.iter().map(|v| v.to_bits())).collect()
        };
        assert_eq!(bits(&a), bits(&b));
        assert_ne!(bits(&a), bits(&c));
        assert_eq!(a.validate(), Ok(()));
        assert!(a.tensors().iter().all(|t| t.data.iter().all(|v| v.is_finite())));
    }

    #[test]
    fn outlier_channels_have_narrow_embeddings_and_small_early_gains() {
        let config = tiny();
        let w = synthesize(config, 1).unwrap();
        let plan = Plan::new(&config, 1);
        let n_embd = config.embd();
        let column_std = |c: usize| {
            let n = config.vocab_size as f32;
            let mean = w.wte.chunks_exact(n_embd).map(|r| r[c]).sum::<f32>() / n;
            let var =
                w.wte.chunks_exact(n_embd).map(|r| (r[c] - mean) * (r[c] - mean)).sum::<f32>();
            (var / n).sqrt()
        };
        for &(c, _) in &plan.outliers {
            let ordinary = (c + 1..).map(|o| o % n_embd).find(|&o| !plan.is_outlier[o]).unwrap();
            assert!(column_std(c) < 0.1 * column_std(ordinary), "wte column {c}");
            let layer = &w.layers[1];
            for gain in [&layer.ln_1_weight, &layer.ln_2_weight] {
                assert!(
                    gain[c].abs() < 0.01 * gain[ordinary].abs(),
                    "ln gain on outlier channel {c}"
                );
            }
        }
    }

    #[test]
    fn works_for_small_contexts_and_vocabularies() {
        let config = ModelConfig {
            n_layer: 3,
            n_embd: 32,
            n_head: 2,
            n_ctx: 4,
            vocab_size: 5,
            layer_norm_epsilon: 1e-5,
        };
        let w = synthesize(config, 3).unwrap();
        assert!(w.tensors().iter().all(|t| t.data.iter().all(|v| v.is_finite())));
        let bad = ModelConfig { n_head: 5, ..config };
        assert!(matches!(
            synthesize(bad, 3),
            Err(SynthError::Config(ConfigError::HeadsDontDivide { .. }))
        ));
    }
}
