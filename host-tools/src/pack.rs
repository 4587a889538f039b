//! `pack`: quantize a checkpoint and write one self-describing file in core's format.
//!
//! The file is written as a [`PartialFile`] next to the output and renamed only when it is
//! complete, so a failed or interrupted pack leaves nothing behind.

use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use picogpt_core::format::DType;
use picogpt_core::format::{
    ALIGNMENT, EMPTY_SLOT, FORMAT_VERSION, FormatOverride, Header, MAX_OUTLIERS, MAX_OVERRIDES,
    ManifestHead, NO_LAYER, TensorEntry, TokenizerHead, token_hash,
};
use picogpt_core::kernels::{affine, decode_f16, decode_f32, decode_int4, decode_int8};
use picogpt_core::layout::{Layout, align_up};
use picogpt_core::quant::{encode_affine, encode_f16, encode_f32, encode_int4, encode_int8};
use picogpt_core::{MatrixFormat, QuantScheme, TensorId, TensorKind};

use crate::calibrate::Calibration;
use crate::partial::PartialFile;
use crate::reference;
use crate::tokenizer::Tokenizer;
use crate::weights::{Gpt2Weights, LayerWeights};

/// Positions of the calibration run that finds the LM head's outlier channels.
const CALIBRATION_TOKENS: usize = 32;
/// A channel is an outlier when its largest |ln_f output| exceeds this multiple of the median
/// channel's.
const OUTLIER_RATIO: f32 = 8.0;

/// What to pack.
#[derive(Clone, Debug, PartialEq)]
pub struct PackOptions {
    /// Format of the weight matrices.
    pub matrices: MatrixFormat,
    /// Whether an int8 `wte` keeps the LM head's outlier input channels in f32.
    pub lm_head_outliers: bool,
    /// Matrices stored in another format than `matrices`.
    pub overrides: Vec<FormatOverride>,
    /// The `compact` preset: choose every matrix's format (q4m, q5m or q6m) so the matrices
    /// take at most this fraction of their int8 bytes (see [`crate::compact`]); `matrices`
    /// and `overrides` are then replaced by the choice.
    pub compact: Option<f64>,
    /// Token ids of the calibration text the scale-and-minimum formats weigh their errors
    /// by (default: [`crate::calibrate::CALIBRATION_TEXT`] through the pack's tokenizer; without
    /// either, every input counts the same).
    pub calibration_tokens: Option<Vec<u32>>,
}

/// The format int4 packs keep the LM head in: int4 flips too many greedy picks there (see
/// the README's quality table).
pub const INT4_LM_HEAD: MatrixFormat = MatrixFormat::Int8 { block: 32 };

impl PackOptions {
    /// Every matrix in `matrices`, except that int4 packs keep `wte` in [`INT4_LM_HEAD`].
    pub fn new(matrices: MatrixFormat, lm_head_outliers: bool) -> Self {
        let overrides = if matrices == MatrixFormat::Int4 {
            vec![FormatOverride { kind: TensorKind::Wte, layer: NO_LAYER, format: INT4_LM_HEAD }]
        } else {
            Vec::new()
        };
        Self { matrices, lm_head_outliers, overrides, compact: None, calibration_tokens: None }
    }

    /// The `compact` preset at `budget` × int8's matrix bytes.
    pub fn compact(budget: f64) -> Self {
        let q4m = MatrixFormat::Affine { bits: 4, block: 32 };
        Self { compact: Some(budget), ..Self::new(q4m, false) }
    }

    /// Whether these options need calibration statistics.
    fn calibrates(&self) -> bool {
        self.compact.is_some()
            || matches!(self.matrices, MatrixFormat::Affine { .. })
            || self.overrides.iter().any(|o| matches!(o.format, MatrixFormat::Affine { .. }))
    }
}

/// Why a pack failed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The quantization scheme does not fit the model.
    #[error("cannot pack with {scheme}: {source}")]
    Scheme {
        /// The scheme asked for.
        scheme: MatrixFormat,
        /// Why it does not fit.
        source: picogpt_core::FormatError,
    },
    /// The calibration run failed.
    #[error("calibration run for LM-head outliers failed: {0}")]
    Calibration(#[from] reference::ReferenceError),
    /// Writing the output failed.
    #[error("writing {path}: {source}")]
    Io {
        /// Output path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// More format overrides than a pack can carry.
    #[error("{0} format overrides, a pack carries at most {MAX_OVERRIDES}")]
    TooManyOverrides(usize),
    /// postcard could not encode the manifest.
    #[error("encoding the manifest: {0}")]
    Manifest(#[from] postcard::Error),
}

/// Sizes and quantization errors of one group of tensors.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KindSummary {
    /// Group name (`attn.c_attn`, `wte (embedding + LM head)`, …).
    pub name: &'static str,
    /// Bytes in the pack.
    pub bytes: u64,
    /// Bytes the same tensors take as f32.
    pub f32_bytes: u64,
    /// Largest |stored − original| of any element.
    pub max_abs_error: f32,
    /// sqrt(Σ error²) / sqrt(Σ original²).
    pub rel_rms_error: f64,
    sq_err: f64,
    sq_ref: f64,
}

/// What a pack wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct PackSummary {
    /// The scheme written.
    pub quant: QuantScheme,
    /// Per group of tensors, in file order of first appearance.
    pub kinds: Vec<KindSummary>,
    /// File length.
    pub file_bytes: u64,
    /// What the `compact` preset chose, tensor by tensor (empty for other packs).
    pub compact: Vec<crate::compact::Choice>,
    /// Positions of calibration text the scale-and-minimum formats were fitted to (0: none,
    /// plain least squares).
    pub calibration_positions: usize,
}

impl PackSummary {
    /// Bytes the whole model takes as f32.
    pub fn f32_bytes(&self) -> u64 {
        self.kinds.iter().map(|k| k.f32_bytes).sum()
    }
}

/// Packs `weights` into `out`; `progress(done, total, tensor)` is called after each tensor.
pub fn pack(
    weights: &Gpt2Weights,
    tokenizer: Option<&Tokenizer>,
    opts: &PackOptions,
    out: &Path,
    mut progress: impl FnMut(u64, u64, TensorId),
) -> Result<PackSummary, PackError> {
    let calibration = if opts.calibrates() {
        let tokens = opts
            .calibration_tokens
            .clone()
            .or_else(|| tokenizer.map(|t| t.encode(crate::calibrate::CALIBRATION_TEXT)));
        match tokens {
            Some(tokens) if !tokens.is_empty() => Some(Calibration::measure(weights, &tokens)?),
            _ => None,
        }
    } else {
        None
    };
    let mut chosen = Vec::new();
    let opts = &match opts.compact {
        Some(budget) => {
            chosen = crate::compact::choose(weights, calibration.as_ref(), budget);
            crate::compact::options(&chosen, opts)
        }
        None => opts.clone(),
    };
    let mut quant = QuantScheme::uniform(opts.matrices);
    for &o in &opts.overrides {
        quant.overrides.push(o).map_err(|_| PackError::TooManyOverrides(opts.overrides.len()))?;
    }
    let wte_format = opts
        .overrides
        .iter()
        .find(|o| o.kind == TensorKind::Wte)
        .map_or(opts.matrices, |o| o.format);
    if matches!(wte_format, MatrixFormat::Int8 { .. }) && opts.lm_head_outliers {
        quant.lm_head_outliers = lm_head_outliers(weights)?;
    }
    let mut head = ManifestHead {
        config: weights.config,
        quant: quant.clone(),
        alignment: ALIGNMENT,
        file_len: 0,
        tensor_count: 0,
        tokenizer: None,
    };
    let sections = tokenizer.map(TokenizerSections::new);
    let layout = stable_layout(&mut head, sections.as_ref())
        .map_err(|source| PackError::Scheme { scheme: opts.matrices, source })?;
    let io = |source| PackError::Io { path: out.display().to_string(), source };
    let partial = PartialFile::create(out).map_err(io)?;
    let mut file = BufWriter::with_capacity(1 << 20, partial.file());
    file.seek(SeekFrom::Start(layout.data_start())).map_err(io)?;

    let total = layout.file_len() - layout.data_start();
    let mut entries = Vec::new();
    let mut kinds: Vec<KindSummary> = Vec::new();
    let mut pos = layout.data_start();
    for index in 0..layout.tensor_count() {
        let id = layout.id_at(index);
        let mut entry = layout.expected_entry(id);
        pad_to(&mut file, &mut pos, entry.offset).map_err(io)?;
        let original = rows_of(weights, id);
        let importance = calibration.as_ref().and_then(|c| c.importance(id));
        let bytes = encode(&layout, id, &original, importance.as_deref());
        debug_assert_eq!(bytes.len() as u64, entry.len);
        entry.crc32 = crc32fast::hash(&bytes);
        file.write_all(&bytes).map_err(io)?;
        pos += bytes.len() as u64;
        record(&mut kinds, &layout, id, &original, &bytes);
        entries.push(entry);
        progress(pos - layout.data_start(), total, id);
    }

    if let (Some(sections), Some(t)) = (&sections, layout.tokenizer()) {
        pad_to(&mut file, &mut pos, t.vocab_offset).map_err(io)?;
        file.write_all(&sections.vocab).map_err(io)?;
        pos += sections.vocab.len() as u64;
        pad_to(&mut file, &mut pos, t.index_offset).map_err(io)?;
        file.write_all(&sections.index).map_err(io)?;
    }
    let manifest = encode_manifest(&head, &entries)?;
    let header = Header {
        version: FORMAT_VERSION,
        manifest_len: manifest.len() as u32,
        manifest_crc: crc32fast::hash(&manifest),
    };
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    file.write_all(&header.to_bytes()).map_err(io)?;
    file.write_all(&manifest).map_err(io)?;
    file.into_inner().map_err(|e| io(e.into_error()))?;
    partial.finish().map_err(io)?;
    for k in &mut kinds {
        k.rel_rms_error = (k.sq_err / k.sq_ref.max(f64::MIN_POSITIVE)).sqrt();
    }
    Ok(PackSummary {
        quant,
        kinds,
        file_bytes: layout.file_len(),
        compact: chosen,
        calibration_positions: calibration.map_or(0, |c| c.positions),
    })
}

/// The tokenizer sections' bytes, ready to be placed after the weights.
struct TokenizerSections {
    vocab: Vec<u8>,
    index: Vec<u8>,
    slots: u32,
    max_token_bytes: u32,
    end_of_text: u32,
}

impl TokenizerSections {
    /// Lays out the vocabulary (offsets, then bytes) and the BPE index (open addressing over
    /// [`token_hash`], linear probing, at most half full).
    fn new(tokenizer: &Tokenizer) -> Self {
        let n = tokenizer.len();
        let mut vocab = Vec::with_capacity(4 * (n + 1));
        let mut blob = Vec::new();
        let mut max_token_bytes = 0;
        for id in 0..n as u32 {
            vocab.extend_from_slice(&(blob.len() as u32).to_le_bytes());
            blob.extend_from_slice(tokenizer.token(id));
            max_token_bytes = max_token_bytes.max(tokenizer.token(id).len() as u32);
        }
        vocab.extend_from_slice(&(blob.len() as u32).to_le_bytes());
        vocab.extend_from_slice(&blob);
        let slots = (2 * n).next_power_of_two() as u32;
        let mut table = vec![(EMPTY_SLOT, 0u32); slots as usize];
        for id in (0..n as u32).filter(|&id| id != tokenizer.end_of_text()) {
            let hash = token_hash(tokenizer.token(id));
            let mut slot = (hash & (slots - 1)) as usize;
            while table[slot].0 != EMPTY_SLOT {
                slot = (slot + 1) & (slots as usize - 1);
            }
            table[slot] = (id, hash);
        }
        let index = table
            .iter()
            .flat_map(|(id, h)| [id.to_le_bytes(), h.to_le_bytes()])
            .flatten()
            .collect();
        Self { vocab, index, slots, max_token_bytes, end_of_text: tokenizer.end_of_text() }
    }

    /// The manifest entry for these sections when the weights end at `weights_end`.
    fn head(&self, weights_end: u64) -> TokenizerHead {
        let vocab_offset = align_up(weights_end);
        TokenizerHead {
            vocab_offset,
            vocab_len: self.vocab.len() as u64,
            vocab_crc: crc32fast::hash(&self.vocab),
            index_offset: align_up(vocab_offset + self.vocab.len() as u64),
            index_slots: self.slots,
            index_crc: crc32fast::hash(&self.index),
            max_token_bytes: self.max_token_bytes,
            end_of_text: self.end_of_text,
        }
    }
}

/// Encodes the head until its own `file_len` and count no longer change its length.
fn stable_layout(
    head: &mut ManifestHead,
    sections: Option<&TokenizerSections>,
) -> Result<Layout, picogpt_core::FormatError> {
    let mut head_len = 0u64;
    loop {
        let mut layout = Layout::new(head.config, head.quant.clone(), head_len)?;
        if let Some(sections) = sections {
            let tokenizer = sections.head(layout.weights_end());
            layout = layout.with_tokenizer(tokenizer)?;
            head.tokenizer = Some(tokenizer);
        }
        head.tensor_count = layout.tensor_count() as u32;
        head.file_len = layout.file_len();
        let len = postcard::to_allocvec(head).map(|v| v.len() as u64).unwrap_or(0);
        if len == head_len {
            return Ok(layout);
        }
        head_len = len;
    }
}

fn encode_manifest(
    head: &ManifestHead,
    entries: &[TensorEntry],
) -> Result<Vec<u8>, postcard::Error> {
    let mut out = postcard::to_allocvec(head)?;
    for entry in entries {
        out.extend_from_slice(&postcard::to_allocvec(entry)?);
    }
    Ok(out)
}

fn pad_to(file: &mut impl Write, pos: &mut u64, target: u64) -> std::io::Result<()> {
    let zeros = [0u8; ALIGNMENT as usize];
    while *pos < target {
        let n = (target - *pos).min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])?;
        *pos += n as u64;
    }
    Ok(())
}

/// A tensor as `[rows, cols]` rows in the order the forward pass reads them: Conv1D weights
/// (stored `[in, out]`) transposed so each output's inputs are contiguous.
pub(crate) fn rows_of(weights: &Gpt2Weights, id: TensorId) -> Vec<f32> {
    let d = weights.config.embd();
    let layer = || &weights.layers[usize::from(id.layer)];
    let t = |w: &[f32], n_in: usize, n_out: usize| transpose(w, n_in, n_out);
    match id.kind {
        TensorKind::Wpe => weights.wpe.clone(),
        TensorKind::Wte => weights.wte.clone(),
        TensorKind::LnFWeight => weights.ln_f_weight.clone(),
        TensorKind::LnFBias => weights.ln_f_bias.clone(),
        TensorKind::CAttnWeight => t(&layer().c_attn_weight, d, 3 * d),
        TensorKind::AttnCProjWeight => t(&layer().attn_c_proj_weight, d, d),
        TensorKind::CFcWeight => t(&layer().c_fc_weight, d, 4 * d),
        TensorKind::MlpCProjWeight => t(&layer().mlp_c_proj_weight, 4 * d, d),
        kind => layer_vector(layer(), kind).to_vec(),
    }
}

fn layer_vector(layer: &LayerWeights, kind: TensorKind) -> &[f32] {
    match kind {
        TensorKind::Ln1Weight => &layer.ln_1_weight,
        TensorKind::Ln1Bias => &layer.ln_1_bias,
        TensorKind::CAttnBias => &layer.c_attn_bias,
        TensorKind::AttnCProjBias => &layer.attn_c_proj_bias,
        TensorKind::Ln2Weight => &layer.ln_2_weight,
        TensorKind::Ln2Bias => &layer.ln_2_bias,
        TensorKind::CFcBias => &layer.c_fc_bias,
        _ => &layer.mlp_c_proj_bias,
    }
}

/// `[n_in, n_out]` → `[n_out, n_in]`.
fn transpose(w: &[f32], n_in: usize, n_out: usize) -> Vec<f32> {
    let mut out = vec![0.0; w.len()];
    for (i, row) in w.chunks_exact(n_out).enumerate() {
        for (o, &v) in row.iter().enumerate() {
            out[o * n_in + i] = v;
        }
    }
    out
}

/// Encodes `[rows, cols]` values in the tensor's storage format; the scale-and-minimum
/// formats weigh column `c`'s errors by `importance[c]` (all alike without it).
fn encode(layout: &Layout, id: TensorId, rows: &[f32], importance: Option<&[f32]>) -> Vec<u8> {
    let format = layout.format(id);
    let cols = layout.shape(id.kind).1;
    let outliers = side_channels(layout, id);
    let row_bytes = format.row_bytes(cols);
    let mut out = vec![0u8; rows.len() / cols * row_bytes];
    let mut scratch = vec![0.0f32; cols];
    let ones = vec![1.0f32; cols];
    let importance = importance.unwrap_or(&ones);
    for (row, dst) in rows.chunks_exact(cols).zip(out.chunks_exact_mut(row_bytes)) {
        match format.dtype {
            DType::Q4M | DType::Q5M | DType::Q6M => {
                let bits = format.dtype.affine_bits().unwrap_or(4);
                encode_affine(row, importance, bits, format.block as usize, dst);
            }
            picogpt_core::format::DType::F32 => encode_f32(row, dst),
            picogpt_core::format::DType::F16 => encode_f16(row, dst),
            picogpt_core::format::DType::Int4 => encode_int4(row, dst),
            picogpt_core::format::DType::Int8 => {
                scratch.copy_from_slice(row);
                for &c in outliers.iter() {
                    scratch[usize::from(c)] = 0.0;
                }
                let (blocks, extras) = dst.split_at_mut(format.weight_bytes(cols));
                encode_int8(&scratch, format.block as usize, blocks);
                let kept: Vec<f32> = outliers.iter().map(|&c| row[usize::from(c)]).collect();
                encode_f32(&kept, extras);
            }
        }
    }
    out
}

/// The channels a tensor stores in f32 beside its int8 blocks (only `wte` has any).
fn side_channels(layout: &Layout, id: TensorId) -> &[u16] {
    if layout.format(id).extras > 0 { &layout.quant().lm_head_outliers } else { &[] }
}

/// Decodes what [`encode`] wrote, for the error report.
fn decode(layout: &Layout, id: TensorId, bytes: &[u8]) -> Vec<f32> {
    let format = layout.format(id);
    let cols = layout.shape(id.kind).1;
    let outliers = side_channels(layout, id);
    let row_bytes = format.row_bytes(cols);
    let mut out = vec![0.0f32; bytes.len() / row_bytes * cols];
    for (src, row) in bytes.chunks_exact(row_bytes).zip(out.chunks_exact_mut(cols)) {
        match format.dtype {
            DType::Q4M | DType::Q5M | DType::Q6M => {
                affine::decoder(format.dtype.affine_bits().unwrap_or(4), format.block as usize)(
                    src, row,
                );
            }
            picogpt_core::format::DType::F32 => decode_f32(src, row),
            picogpt_core::format::DType::F16 => decode_f16(src, row),
            picogpt_core::format::DType::Int4 => decode_int4(src, row),
            picogpt_core::format::DType::Int8 => {
                let (blocks, extras) = src.split_at(format.weight_bytes(cols));
                decode_int8(blocks, row);
                let mut kept = vec![0.0; outliers.len()];
                decode_f32(extras, &mut kept);
                for (&c, v) in outliers.iter().zip(kept) {
                    row[usize::from(c)] = v;
                }
            }
        }
    }
    out
}

fn group_name(kind: TensorKind) -> &'static str {
    match kind {
        TensorKind::Wte => "wte (embedding + LM head)",
        TensorKind::Wpe => "wpe",
        TensorKind::CAttnWeight => "attn.c_attn",
        TensorKind::AttnCProjWeight => "attn.c_proj",
        TensorKind::CFcWeight => "mlp.c_fc",
        TensorKind::MlpCProjWeight => "mlp.c_proj",
        _ => "layer norms and biases",
    }
}

fn record(
    kinds: &mut Vec<KindSummary>,
    layout: &Layout,
    id: TensorId,
    original: &[f32],
    bytes: &[u8],
) {
    let name = group_name(id.kind);
    let at = match kinds.iter().position(|k| k.name == name) {
        Some(at) => at,
        None => {
            kinds.push(KindSummary { name, ..KindSummary::default() });
            kinds.len() - 1
        }
    };
    let k = &mut kinds[at];
    k.bytes += bytes.len() as u64;
    k.f32_bytes += 4 * original.len() as u64;
    for (a, b) in original.iter().zip(decode(layout, id, bytes)) {
        let e = (a - b).abs();
        k.max_abs_error = k.max_abs_error.max(e);
        k.sq_err += f64::from(e) * f64::from(e);
        k.sq_ref += f64::from(*a) * f64::from(*a);
    }
}

/// Input channels of the LM head whose final-layer-norm output dwarfs the rest.
///
/// Runs the float model over a fixed spread of tokens, takes each channel's largest
/// |ln_f output|, and keeps (at most [`MAX_OUTLIERS`], largest first) those above
/// [`OUTLIER_RATIO`] × the median channel. Their `wte` columns are then stored in f32 beside
/// the int8 blocks, because an int8 step sized for the row, multiplied by such a channel,
/// would swamp the logit differences that decide greedy picks.
pub fn lm_head_outliers(
    weights: &Gpt2Weights,
) -> Result<heapless::Vec<u16, MAX_OUTLIERS>, reference::ReferenceError> {
    let cfg = &weights.config;
    let d = cfg.embd();
    let n = CALIBRATION_TOKENS.min(cfg.n_ctx as usize);
    let tokens: Vec<u32> = (0..n as u32).map(|i| (i * 7919 + 13) % cfg.vocab_size).collect();
    let residual = reference::Session::new(weights)?.residual(&tokens)?;
    let mut peak = vec![0.0f32; d];
    for x in residual.chunks_exact(d) {
        let h = reference::layer_norm(
            x,
            &weights.ln_f_weight,
            &weights.ln_f_bias,
            cfg.layer_norm_epsilon,
        );
        for (p, v) in peak.iter_mut().zip(h) {
            *p = p.max(v.abs());
        }
    }
    let mut sorted = peak.clone();
    sorted.sort_by(f32::total_cmp);
    let median = sorted[d / 2];
    let mut channels: Vec<usize> = (0..d).filter(|&c| peak[c] > OUTLIER_RATIO * median).collect();
    channels.sort_by(|&a, &b| peak[b].total_cmp(&peak[a]));
    channels.truncate(MAX_OUTLIERS);
    channels.sort_unstable();
    Ok(channels.into_iter().map(|c| c as u16).collect())
}
