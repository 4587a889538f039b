//! The `compact` preset: a scale-and-minimum format (q4m, q5m or q6m) for every matrix, chosen
//! to read as few bytes per token as a budget allows while losing the least.
//!
//! Each matrix is encoded in all three widths against its calibration importance
//! ([`crate::calibrate`]); its loss at a width is the weighted squared error over the weighted
//! signal (`Σ imp·(w − ŵ)² / Σ imp·w²`, the noise-to-signal ratio it adds to its outputs).
//! Starting from q4m everywhere, the upgrade (4 → 5 or 5 → 6 bits) that removes the most loss
//! per byte is taken, again and again, while the matrices stay within the budget, a fraction
//! of the bytes they take in int8 (blocks of 32).

use picogpt_core::format::{FormatOverride, NO_LAYER};
use picogpt_core::kernels::affine::block_bytes;
use picogpt_core::kernels::int8::int8_row_bytes;
use picogpt_core::quant::encode_affine;
use picogpt_core::{MatrixFormat, TensorId, TensorKind};

use crate::calibrate::Calibration;
use crate::pack::{PackOptions, rows_of};
use crate::weights::Gpt2Weights;

/// The preset's default budget: matrices at most this fraction of their int8 bytes, which
/// keeps GPT-2 124M's whole pass (vectors and `wpe` included) under 0.70 × int8's.
pub const COMPACT_BUDGET: f64 = 0.68;

/// Widths the preset chooses from.
const WIDTHS: [u8; 3] = [4, 5, 6];

/// One matrix's choice.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    /// The matrix.
    pub id: TensorId,
    /// Bits per weight chosen.
    pub bits: u8,
    /// Bytes at each width of [`WIDTHS`].
    pub bytes: [u64; 3],
    /// Bytes in int8 (blocks of 32).
    pub int8_bytes: u64,
    /// Relative weighted error at each width.
    pub loss: [f64; 3],
}

impl Choice {
    /// Bytes at the chosen width.
    pub fn chosen_bytes(&self) -> u64 {
        self.bytes[usize::from(self.bits - WIDTHS[0])]
    }
}

/// The matrices of `weights` in file order.
fn matrices(weights: &Gpt2Weights) -> Vec<TensorId> {
    let kinds = [
        TensorKind::CAttnWeight,
        TensorKind::AttnCProjWeight,
        TensorKind::CFcWeight,
        TensorKind::MlpCProjWeight,
    ];
    let layers = 0..weights.config.n_layer as u16;
    let mut ids: Vec<TensorId> =
        layers.flat_map(|l| kinds.map(|k| TensorId::layer(l, k))).collect();
    ids.push(TensorId::global(TensorKind::Wte));
    ids
}

/// Sizes and losses of one matrix at every width.
fn measure(weights: &Gpt2Weights, calibration: Option<&Calibration>, id: TensorId) -> Choice {
    let rows = rows_of(weights, id);
    let d = weights.config.embd();
    let cols = if id.kind == TensorKind::MlpCProjWeight { 4 * d } else { d };
    let importance = calibration.and_then(|c| c.importance(id)).unwrap_or_else(|| vec![1.0; cols]);
    let n_rows = (rows.len() / cols) as u64;
    let signal: f64 = rows
        .chunks_exact(cols)
        .flat_map(|r| r.iter().zip(&importance).map(|(&w, &i)| f64::from(i) * f64::from(w).powi(2)))
        .sum();
    let mut bytes = [0u64; 3];
    let mut loss = [0f64; 3];
    for (k, &bits) in WIDTHS.iter().enumerate() {
        let row_bytes = cols / 32 * block_bytes(u32::from(bits));
        let mut buf = vec![0u8; row_bytes];
        let err: f64 = rows
            .chunks_exact(cols)
            .map(|r| encode_affine(r, &importance, u32::from(bits), &mut buf))
            .sum();
        bytes[k] = n_rows * row_bytes as u64;
        loss[k] = err / signal.max(f64::MIN_POSITIVE);
    }
    let int8_bytes = n_rows * int8_row_bytes(cols) as u64;
    Choice { id, bits: WIDTHS[0], bytes, int8_bytes, loss }
}

/// Chooses every matrix's width so the matrices take at most `budget` × their int8 bytes
/// (see the module documentation); measured on up to two threads.
pub fn choose(
    weights: &Gpt2Weights,
    calibration: Option<&Calibration>,
    budget: f64,
) -> Vec<Choice> {
    let ids = matrices(weights);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(2);
    let per = ids.len().div_ceil(threads);
    let mut choices: Vec<Choice> = std::thread::scope(|s| {
        let handles: Vec<_> = ids
            .chunks(per)
            .map(|part| {
                s.spawn(move || part.iter().map(|&id| measure(weights, calibration, id)).collect())
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|_| Vec::new())).collect()
    });
    let limit = budget * choices.iter().map(|c| c.int8_bytes as f64).sum::<f64>();
    let mut total: u64 = choices.iter().map(Choice::chosen_bytes).sum();
    loop {
        let upgrade = |c: &Choice| {
            let k = usize::from(c.bits - WIDTHS[0]);
            (k + 1 < WIDTHS.len()).then(|| {
                let extra = c.bytes[k + 1] - c.bytes[k];
                (extra, (c.loss[k] - c.loss[k + 1]) / extra as f64)
            })
        };
        let best = choices
            .iter()
            .enumerate()
            .filter_map(|(i, c)| upgrade(c).map(|(extra, gain)| (i, extra, gain)))
            .filter(|&(_, extra, _)| (total + extra) as f64 <= limit)
            .max_by(|a, b| a.2.total_cmp(&b.2));
        let Some((i, extra, _)) = best else { break };
        choices[i].bits += 1;
        total += extra;
    }
    choices
}

/// `base` with the matrices and overrides `choices` make: the most common width as
/// `matrices`, the others as overrides of their one matrix.
pub fn options(choices: &[Choice], base: &PackOptions) -> PackOptions {
    let common = WIDTHS
        .iter()
        .copied()
        .max_by_key(|&b| (choices.iter().filter(|c| c.bits == b).count(), std::cmp::Reverse(b)))
        .unwrap_or(4);
    let overrides = choices
        .iter()
        .filter(|c| c.bits != common)
        .map(|c| FormatOverride {
            kind: c.id.kind,
            layer: if c.id.kind == TensorKind::Wte { NO_LAYER } else { c.id.layer },
            format: MatrixFormat::Affine { bits: c.bits },
        })
        .collect();
    PackOptions {
        matrices: MatrixFormat::Affine { bits: common },
        lm_head_outliers: false,
        overrides,
        compact: None,
        calibration_tokens: base.calibration_tokens.clone(),
    }
}
