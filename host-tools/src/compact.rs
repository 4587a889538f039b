//! The `compact` preset: a scale-and-minimum format (q4m, q5m or q6m, blocks of 32 or 64) for
//! every matrix, chosen to read as few bytes per token as a budget allows while losing the
//! least.
//!
//! Each matrix is encoded in every shape ([`SHAPES`]) against its calibration importance
//! ([`crate::calibrate`]); its loss in a shape is the weighted squared error over the weighted
//! signal (`Σ imp·(w − ŵ)² / Σ imp·w²`, the noise-to-signal ratio it adds to its outputs).
//! Starting from every matrix in its smallest shape, the change to a larger shape that removes
//! the most loss per byte is taken, again and again, while the matrices stay within the
//! budget, a fraction of the bytes they take in int8 (blocks of 32).

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

/// The shapes the preset chooses from, `(bits, block)`, smallest first: 4.5, 5, 5.5, 6, 6.5 and
/// 7 bits per weight.
pub const SHAPES: [(u8, u16); 6] = [(4, 64), (4, 32), (5, 64), (5, 32), (6, 64), (6, 32)];

/// How much more a unit of the LM head's loss costs than a block matrix's: its errors reach
/// the logits directly, where a block's are diluted by the residual stream and renormalized,
/// and the outlier channels that dominate its weighted signal make its relative loss look
/// small. Measured on the synthetic 124M model: blocks refined to a third of their loss left
/// the KL divergence unchanged (0.458 → 0.455) while the LM head stayed at q4m; with this
/// weight the preset moves the LM head to q5m/64 and the KL falls to 0.384.
pub const LM_HEAD_WEIGHT: f64 = 1000.0;

/// One matrix's choice.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    /// The matrix.
    pub id: TensorId,
    /// Index of the chosen shape in [`SHAPES`].
    pub shape: usize,
    /// Bytes in each shape of [`SHAPES`].
    pub bytes: [u64; 6],
    /// Bytes in int8 (blocks of 32).
    pub int8_bytes: u64,
    /// Relative weighted error in each shape (infinite for a block that does not divide the
    /// rows), times [`LM_HEAD_WEIGHT`] for the LM head.
    pub loss: [f64; 6],
}

impl Choice {
    /// Bytes in the chosen shape.
    pub fn chosen_bytes(&self) -> u64 {
        self.bytes[self.shape]
    }

    /// The chosen format.
    pub fn format(&self) -> MatrixFormat {
        let (bits, block) = SHAPES[self.shape];
        MatrixFormat::Affine { bits, block }
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
    let mut bytes = [u64::MAX; 6];
    let mut loss = [f64::INFINITY; 6];
    for (k, &(bits, block)) in SHAPES.iter().enumerate() {
        let (bits, block) = (u32::from(bits), usize::from(block));
        if !d.is_multiple_of(block) {
            continue;
        }
        let row_bytes = cols / block * block_bytes(bits, block);
        let mut buf = vec![0u8; row_bytes];
        let err: f64 = rows
            .chunks_exact(cols)
            .map(|r| encode_affine(r, &importance, bits, block, &mut buf))
            .sum();
        bytes[k] = n_rows * row_bytes as u64;
        loss[k] = err / signal.max(f64::MIN_POSITIVE);
    }
    let int8_bytes = n_rows * int8_row_bytes(cols) as u64;
    if id.kind == TensorKind::Wte {
        loss.iter_mut().for_each(|l| *l *= LM_HEAD_WEIGHT);
    }
    let shape = (0..SHAPES.len()).find(|&k| loss[k].is_finite()).unwrap_or(1);
    Choice { id, shape, bytes, int8_bytes, loss }
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
        // Every larger shape that loses less, with its loss removed per extra byte.
        let upgrades = choices.iter().enumerate().flat_map(|(i, c)| {
            (c.shape + 1..SHAPES.len())
                .filter(move |&k| c.loss[k] < c.loss[c.shape] && c.bytes[k] > c.bytes[c.shape])
                .map(move |k| {
                    let extra = c.bytes[k] - c.bytes[c.shape];
                    (i, k, extra, (c.loss[c.shape] - c.loss[k]) / extra as f64)
                })
        });
        let best = upgrades
            .filter(|&(_, _, extra, _)| (total + extra) as f64 <= limit)
            .max_by(|a, b| a.3.total_cmp(&b.3));
        let Some((i, k, extra, _)) = best else { break };
        choices[i].shape = k;
        total += extra;
    }
    choices
}

/// `base` with the matrices and overrides `choices` make: the most common width as
/// `matrices`, the others as overrides of their one matrix.
pub fn options(choices: &[Choice], base: &PackOptions) -> PackOptions {
    let common = (0..SHAPES.len())
        .max_by_key(|&k| (choices.iter().filter(|c| c.shape == k).count(), std::cmp::Reverse(k)))
        .unwrap_or(0);
    let overrides = choices
        .iter()
        .filter(|c| c.shape != common)
        .map(|c| FormatOverride {
            kind: c.id.kind,
            layer: if c.id.kind == TensorKind::Wte { NO_LAYER } else { c.id.layer },
            format: c.format(),
        })
        .collect();
    let (bits, block) = SHAPES[common];
    PackOptions {
        matrices: MatrixFormat::Affine { bits, block },
        lm_head_outliers: false,
        overrides,
        compact: None,
        calibration_tokens: base.calibration_tokens.clone(),
    }
}
