//! Calibration statistics for the scale-and-minimum formats: how large each matrix's inputs
//! are, channel by channel, when the f32 reference reads a calibration text.
//!
//! The mean square of input channel `c` over the calibration positions is the weight the
//! packer gives to the error of every weight in column `c` (the error a weight adds to an
//! output is its error times its input), as llama.cpp's importance matrix does.

use picogpt_core::{TensorId, TensorKind};

use crate::reference::{self, LayerCache, ReferenceError};
use crate::weights::Gpt2Weights;

/// The calibration text shipped in `data/` (Genesis 1, KJV, from Debian's bible-kjv-text): the learned models were trained
/// on the KJV without Ruth, and `eval` reads Ruth 1 and the Gettysburg Address, so the
/// calibration text is neither evaluation text.
pub const CALIBRATION_TEXT: &str = include_str!("../../data/calibration-kjv-genesis.txt");

/// Where [`CALIBRATION_TEXT`] comes from, for reports.
pub const CALIBRATION_NAME: &str = "data/calibration-kjv-genesis.txt (Genesis 1, KJV)";

/// Most calibration positions read (one pass of the reference; the 124M model takes seconds).
pub const MAX_CALIBRATION_TOKENS: usize = 256;

/// Per-input-channel mean squares of each matrix's input.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    /// `[layer][0..4]`: inputs of `attn.c_attn`, `attn.c_proj`, `mlp.c_fc`, `mlp.c_proj`.
    layers: Vec<[Vec<f32>; 4]>,
    /// Input of the LM head (the final layer norm's output).
    lm_head: Vec<f32>,
    /// Positions read.
    pub positions: usize,
}

impl Calibration {
    /// Runs the reference over `tokens` (at most `n_ctx` and [`MAX_CALIBRATION_TOKENS`] of
    /// them) and records the mean square of every matrix input channel.
    pub fn measure(weights: &Gpt2Weights, tokens: &[u32]) -> Result<Self, ReferenceError> {
        weights.validate()?;
        let cfg = &weights.config;
        let n = tokens.len().min(cfg.n_ctx as usize).min(MAX_CALIBRATION_TOKENS);
        let tokens = &tokens[..n];
        let (n_head, eps) = (cfg.n_head as usize, cfg.layer_norm_epsilon);
        let mut x = reference::embed(weights, tokens, 0)?;
        let mut layers = Vec::with_capacity(weights.layers.len());
        for layer in &weights.layers {
            let mut cache = LayerCache::default();
            let h1 = reference::layer_norm(&x, &layer.ln_1_weight, &layer.ln_1_bias, eps);
            let heads = reference::attend(&h1, layer, n_head, &mut cache);
            let attn =
                reference::linear(&heads, &layer.attn_c_proj_weight, &layer.attn_c_proj_bias);
            for (v, a) in x.iter_mut().zip(&attn) {
                *v += a;
            }
            let h2 = reference::layer_norm(&x, &layer.ln_2_weight, &layer.ln_2_bias, eps);
            let mut fc = reference::linear(&h2, &layer.c_fc_weight, &layer.c_fc_bias);
            for v in &mut fc {
                *v = reference::gelu(*v);
            }
            let mlp = reference::linear(&fc, &layer.mlp_c_proj_weight, &layer.mlp_c_proj_bias);
            for (v, m) in x.iter_mut().zip(&mlp) {
                *v += m;
            }
            layers.push([mean_squares(&h1, n), mean_squares(&heads, n), mean_squares(&h2, n), {
                mean_squares(&fc, n)
            }]);
        }
        let h = reference::layer_norm(&x, &weights.ln_f_weight, &weights.ln_f_bias, eps);
        Ok(Self { layers, lm_head: mean_squares(&h, n), positions: n })
    }

    /// The importance of each input column of matrix `id` (its inputs' mean squares, floored
    /// at a hundredth of their average so no column is ignored), or `None` for a vector.
    pub fn importance(&self, id: TensorId) -> Option<Vec<f32>> {
        let ms = match id.kind {
            TensorKind::Wte => &self.lm_head,
            kind => {
                let slot = match kind {
                    TensorKind::CAttnWeight => 0,
                    TensorKind::AttnCProjWeight => 1,
                    TensorKind::CFcWeight => 2,
                    TensorKind::MlpCProjWeight => 3,
                    _ => return None,
                };
                &self.layers.get(usize::from(id.layer))?[slot]
            }
        };
        let mean = ms.iter().map(|&v| f64::from(v)).sum::<f64>() / ms.len().max(1) as f64;
        let floor = (0.01 * mean) as f32;
        Some(ms.iter().map(|&v| v.max(floor).max(f32::MIN_POSITIVE)).collect())
    }
}

/// Mean square of each channel of `n` rows.
fn mean_squares(x: &[f32], n: usize) -> Vec<f32> {
    let width = x.len() / n.max(1);
    let mut acc = vec![0.0f64; width];
    for row in x.chunks_exact(width.max(1)) {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += f64::from(v) * f64::from(v);
        }
    }
    acc.iter().map(|&a| (a / n.max(1) as f64) as f32).collect()
}
