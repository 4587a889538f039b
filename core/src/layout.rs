//! Where every tensor lives in a pack, derived from the config and quantization scheme alone.
//!
//! The loader checks the file's tensor table against this layout entry by entry, so the
//! forward pass can compute offsets instead of keeping a table in RAM.

use crate::config::{BLOCK_ELEMS, ModelConfig};
use crate::error::{FormatError, QuantError};
use crate::format::{
    ALIGNMENT, DType, ENTRY_BYTES, HEADER_BYTES, INDEX_SLOT_BYTES, MAX_TOKEN_BYTES, MatrixFormat,
    NO_LAYER, QuantScheme, TensorEntry, TensorFormat, TensorId, TensorKind, TokenizerHead,
};

/// Tensors per transformer block.
const PER_LAYER: u64 = TensorKind::LAYER.len() as u64;

/// Rounds `x` up to the next multiple of [`ALIGNMENT`].
pub fn align_up(x: u64) -> u64 {
    x.div_ceil(u64::from(ALIGNMENT)) * u64::from(ALIGNMENT)
}

/// The canonical placement of a model's tensors in a pack.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    config: ModelConfig,
    quant: QuantScheme,
    manifest_len: u64,
    data_start: u64,
    /// Bytes per block when every block has the same formats (no per-block override).
    layer_stride: Option<u64>,
    tokenizer: Option<TokenizerHead>,
}

impl Layout {
    /// Lays out a model whose manifest head encodes to `head_len` bytes.
    pub fn new(
        config: ModelConfig,
        quant: QuantScheme,
        head_len: u64,
    ) -> Result<Self, FormatError> {
        config.validate().map_err(FormatError::Config)?;
        check_quant(&config, &quant).map_err(FormatError::Quant)?;
        let mut layout = Self {
            config,
            quant,
            manifest_len: 0,
            data_start: 0,
            layer_stride: None,
            tokenizer: None,
        };
        layout.manifest_len = head_len + layout.tensor_count() * ENTRY_BYTES as u64;
        layout.data_start = align_up(HEADER_BYTES as u64 + layout.manifest_len);
        let uniform = layout.quant.overrides.iter().all(|o| o.layer == NO_LAYER);
        layout.layer_stride = uniform.then(|| {
            TensorKind::LAYER
                .iter()
                .map(|&k| align_up(layout.tensor_len(TensorId::layer(0, k))))
                .sum()
        });
        Ok(layout)
    }

    /// Model shape.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Weight formats.
    pub fn quant(&self) -> &QuantScheme {
        &self.quant
    }

    /// Entries in the tensor table: `wpe`, 12 per block, `ln_f.weight`, `ln_f.bias`, `wte`.
    pub fn tensor_count(&self) -> u64 {
        4 + PER_LAYER * u64::from(self.config.n_layer)
    }

    /// Length of the manifest (head and table) in bytes.
    pub fn manifest_len(&self) -> u64 {
        self.manifest_len
    }

    /// File offset of the tensor-table entry at `index`.
    pub fn entry_offset(&self, index: u64) -> u64 {
        HEADER_BYTES as u64 + self.manifest_len - (self.tensor_count() - index) * ENTRY_BYTES as u64
    }

    /// The tensor at table position `index` (which must be below [`Self::tensor_count`]).
    pub fn id_at(&self, index: u64) -> TensorId {
        let last = self.tensor_count() - 1;
        match index {
            0 => TensorId::global(TensorKind::Wpe),
            i if i == last => TensorId::global(TensorKind::Wte),
            i if i == last - 1 => TensorId::global(TensorKind::LnFBias),
            i if i == last - 2 => TensorId::global(TensorKind::LnFWeight),
            i => {
                let layer = (i - 1) / PER_LAYER;
                let kind = TensorKind::LAYER[((i - 1) % PER_LAYER) as usize];
                TensorId::layer(layer as u16, kind)
            }
        }
    }

    /// Table position of a tensor (the inverse of [`Self::id_at`]).
    pub fn index_of(&self, id: TensorId) -> u64 {
        let last = self.tensor_count() - 1;
        match id.kind {
            TensorKind::Wpe => 0,
            TensorKind::Wte => last,
            TensorKind::LnFBias => last - 1,
            TensorKind::LnFWeight => last - 2,
            kind => {
                let within = TensorKind::LAYER.iter().position(|&k| k == kind).unwrap_or(0);
                1 + PER_LAYER * u64::from(id.layer) + within as u64
            }
        }
    }

    /// The matrix format of `id`: its override if the scheme has one, else the pack's.
    fn matrix_format_of(&self, id: TensorId) -> MatrixFormat {
        self.quant
            .overrides
            .iter()
            .find(|o| o.kind == id.kind && (o.layer == NO_LAYER || o.layer == id.layer))
            .map_or(self.quant.matrices, |o| o.format)
    }

    /// Storage format of a tensor.
    pub fn format(&self, id: TensorId) -> TensorFormat {
        match id.kind {
            TensorKind::Wpe => match self.quant.matrices {
                MatrixFormat::F32 => TensorFormat::F32,
                _ => TensorFormat::F16,
            },
            TensorKind::CAttnWeight
            | TensorKind::AttnCProjWeight
            | TensorKind::CFcWeight
            | TensorKind::MlpCProjWeight => {
                tensor_format(self.matrix_format_of(id), self.shape(id.kind).1)
            }
            TensorKind::Wte => {
                let format = tensor_format(self.matrix_format_of(id), self.config.embd());
                let extras = if format.dtype == DType::Int8 {
                    self.quant.lm_head_outliers.len() as u32
                } else {
                    0
                };
                TensorFormat { extras, ..format }
            }
            _ => TensorFormat::F32,
        }
    }

    /// `(rows, cols)` of a tensor kind as the forward pass reads it (vectors are one row).
    pub fn shape(&self, kind: TensorKind) -> (usize, usize) {
        let d = self.config.embd();
        match kind {
            TensorKind::Wpe => (self.config.n_ctx as usize, d),
            TensorKind::Wte => (self.config.vocab_size as usize, d),
            TensorKind::CAttnWeight => (3 * d, d),
            TensorKind::AttnCProjWeight => (d, d),
            TensorKind::CFcWeight => (4 * d, d),
            TensorKind::MlpCProjWeight => (d, 4 * d),
            TensorKind::CAttnBias => (1, 3 * d),
            TensorKind::CFcBias => (1, 4 * d),
            _ => (1, d),
        }
    }

    /// Bytes of one row of a tensor.
    pub fn row_bytes(&self, id: TensorId) -> usize {
        self.format(id).row_bytes(self.shape(id.kind).1)
    }

    fn tensor_len(&self, id: TensorId) -> u64 {
        self.shape(id.kind).0 as u64 * self.row_bytes(id) as u64
    }

    /// File offset of the first tensor (`wpe`).
    pub fn data_start(&self) -> u64 {
        self.data_start
    }

    /// File offset of a tensor.
    pub fn offset(&self, id: TensorId) -> u64 {
        let global = |kind| TensorId::global(kind);
        let layers_start = self.data_start + align_up(self.tensor_len(global(TensorKind::Wpe)));
        let Some(stride) = self.layer_stride else {
            // Blocks of different formats: add up everything before.
            return (0..self.index_of(id))
                .map(|i| align_up(self.tensor_len(self.id_at(i))))
                .sum::<u64>()
                + self.data_start;
        };
        let layers_end = layers_start + stride * u64::from(self.config.n_layer);
        let ln_f_bias = layers_end + align_up(self.tensor_len(global(TensorKind::LnFWeight)));
        match id.kind {
            TensorKind::Wpe => self.data_start,
            TensorKind::LnFWeight => layers_end,
            TensorKind::LnFBias => ln_f_bias,
            TensorKind::Wte => ln_f_bias + align_up(self.tensor_len(global(TensorKind::LnFBias))),
            kind => {
                let within: u64 = TensorKind::LAYER
                    .iter()
                    .take_while(|&&k| k != kind)
                    .map(|&k| align_up(self.tensor_len(TensorId::layer(id.layer, k))))
                    .sum();
                layers_start + stride * u64::from(id.layer) + within
            }
        }
    }

    /// End of the last tensor (`wte`).
    pub fn weights_end(&self) -> u64 {
        let wte = TensorId::global(TensorKind::Wte);
        self.offset(wte) + self.tensor_len(wte)
    }

    /// The length of a well-formed pack: the end of the tokenizer, or of the weights.
    pub fn file_len(&self) -> u64 {
        match &self.tokenizer {
            Some(t) => t.index_offset + u64::from(t.index_slots) * INDEX_SLOT_BYTES as u64,
            None => self.weights_end(),
        }
    }

    /// The tokenizer sections, if the pack has them.
    pub fn tokenizer(&self) -> Option<&TokenizerHead> {
        self.tokenizer.as_ref()
    }

    /// Adds tokenizer sections after the weights, checking they sit where the format puts
    /// them and have plausible sizes.
    pub fn with_tokenizer(mut self, head: TokenizerHead) -> Result<Self, FormatError> {
        let vocab = u64::from(self.config.vocab_size);
        let bad = |what, value| Err(FormatError::Tokenizer { what, value });
        if head.vocab_offset != align_up(self.weights_end()) {
            return bad("vocabulary offset is not right after the weights", head.vocab_offset);
        }
        let offsets = 4 * (vocab + 1);
        if head.vocab_len < offsets || head.vocab_len > offsets + vocab * u64::from(MAX_TOKEN_BYTES)
        {
            return bad("vocabulary length does not fit the vocabulary size", head.vocab_len);
        }
        if head.index_offset != align_up(head.vocab_offset + head.vocab_len) {
            return bad("index offset is not right after the vocabulary", head.index_offset);
        }
        let slots = u64::from(head.index_slots);
        if !head.index_slots.is_power_of_two()
            || slots < vocab
            || slots > 4 * vocab.next_power_of_two()
        {
            return bad("index slots are not a power of two fitting the vocabulary", slots);
        }
        if head.max_token_bytes == 0 || head.max_token_bytes > MAX_TOKEN_BYTES {
            return bad("longest token is out of range", u64::from(head.max_token_bytes));
        }
        if u64::from(head.end_of_text) >= vocab {
            return bad("end-of-text id is outside the vocabulary", u64::from(head.end_of_text));
        }
        self.tokenizer = Some(head);
        Ok(self)
    }

    /// The table entry this layout expects for `id` (CRC left 0).
    pub fn expected_entry(&self, id: TensorId) -> TensorEntry {
        let (rows, cols) = self.shape(id.kind);
        TensorEntry {
            id,
            format: self.format(id),
            rows: rows as u32,
            cols: cols as u32,
            offset: self.offset(id),
            len: self.tensor_len(id),
            crc32: 0,
        }
    }

    /// Whether any matrix is stored as int8, and whether any as int4 or q4m–q6m (the formats
    /// read against one 16-bit activation per element).
    pub fn integer_matrices(&self) -> (bool, bool) {
        let dtypes = (0..self.tensor_count()).map(|i| self.format(self.id_at(i)).dtype);
        dtypes.fold((false, false), |(i8, i4), t| {
            (i8 || t == DType::Int8, i4 || t == DType::Int4 || t.affine_bits().is_some())
        })
    }

    /// Largest block (or row-extras run) any tensor has: the least a chunk buffer must hold.
    pub fn max_unit_bytes(&self) -> usize {
        let wte = self.format(TensorId::global(TensorKind::Wte));
        let matrices = (0..self.tensor_count()).map(|i| self.format(self.id_at(i)).unit_bytes());
        matrices.chain([wte.extras_bytes()]).max().unwrap_or(0)
    }
}

/// The stored format of a matrix of `cols` inputs in `format`.
fn tensor_format(format: MatrixFormat, cols: usize) -> TensorFormat {
    match format {
        MatrixFormat::F32 => TensorFormat::F32,
        MatrixFormat::F16 => TensorFormat::F16,
        MatrixFormat::Int8 { block } => TensorFormat {
            dtype: DType::Int8,
            block: if block == 0 { cols as u32 } else { block },
            extras: 0,
        },
        MatrixFormat::Int4 => {
            TensorFormat { dtype: DType::Int4, block: BLOCK_ELEMS as u32, extras: 0 }
        }
        MatrixFormat::Affine { bits, block } => TensorFormat {
            dtype: DType::affine(bits).unwrap_or(DType::Q4M),
            block: u32::from(block),
            extras: 0,
        },
    }
}

/// Checks a scheme against a config: block sizes divide the rows, overrides name matrices,
/// outlier channels come with an int8 `wte` and are sane.
fn check_quant(config: &ModelConfig, quant: &QuantScheme) -> Result<(), QuantError> {
    check_format(config, quant.matrices)?;
    for o in &quant.overrides {
        let matrix = matches!(
            o.kind,
            TensorKind::CAttnWeight
                | TensorKind::AttnCProjWeight
                | TensorKind::CFcWeight
                | TensorKind::MlpCProjWeight
                | TensorKind::Wte
        );
        let layer_ok = o.layer == NO_LAYER
            || (o.kind != TensorKind::Wte && u32::from(o.layer) < config.n_layer);
        if !matrix || !layer_ok {
            return Err(QuantError::BadOverride { kind: o.kind, layer: o.layer });
        }
        check_format(config, o.format)?;
    }
    let wte_format = quant
        .overrides
        .iter()
        .find(|o| o.kind == TensorKind::Wte)
        .map_or(quant.matrices, |o| o.format);
    if !quant.lm_head_outliers.is_empty() && !matches!(wte_format, MatrixFormat::Int8 { .. }) {
        return Err(QuantError::OutliersWithoutInt8 { format: wte_format });
    }
    let mut previous: Option<u16> = None;
    for &channel in &quant.lm_head_outliers {
        let in_order = previous.is_none_or(|p| p < channel);
        if !in_order || u32::from(channel) >= config.n_embd {
            return Err(QuantError::BadOutlier { channel, n_embd: config.n_embd });
        }
        previous = Some(channel);
    }
    Ok(())
}

/// Checks one matrix format's block size against the rows it must divide.
fn check_format(config: &ModelConfig, format: MatrixFormat) -> Result<(), QuantError> {
    if let MatrixFormat::Affine { bits, block } = format
        && (DType::affine(bits).is_none()
            || !matches!(block, 32 | 64)
            || !config.n_embd.is_multiple_of(u32::from(block)))
    {
        return Err(QuantError::AffineShape { bits, block, n_embd: config.n_embd });
    }
    if let MatrixFormat::Int8 { block } = format {
        let fits = block == 0
            || ((block as usize).is_multiple_of(BLOCK_ELEMS)
                && config.n_embd.is_multiple_of(block));
        if !fits {
            return Err(QuantError::BlockSize { block, n_embd: config.n_embd });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::FormatOverride;

    fn scheme(matrices: MatrixFormat) -> QuantScheme {
        QuantScheme::uniform(matrices)
    }

    #[test]
    fn tensors_are_aligned_and_in_forward_order() {
        let layout =
            Layout::new(ModelConfig::GPT2_124M, scheme(MatrixFormat::Int8 { block: 32 }), 40)
                .unwrap();
        let mut end = layout.data_start();
        for i in 0..layout.tensor_count() {
            let e = layout.expected_entry(layout.id_at(i));
            assert_eq!(e.offset % 512, 0, "{}", e.id);
            assert!(e.offset >= end, "{} overlaps the previous tensor", e.id);
            assert!(e.offset - end < 512, "{} leaves a gap", e.id);
            end = e.offset + e.len;
        }
        assert_eq!(end, layout.file_len());
    }

    #[test]
    fn int8_rows_carry_one_scale_per_block() {
        let layout =
            Layout::new(ModelConfig::GPT2_124M, scheme(MatrixFormat::Int8 { block: 32 }), 40)
                .unwrap();
        // c_fc: 3072 rows of 768 inputs = 12 pairs of blocks of 68 bytes.
        assert_eq!(layout.row_bytes(TensorId::layer(0, TensorKind::CFcWeight)), 12 * 68);
        let per_row =
            Layout::new(ModelConfig::GPT2_124M, scheme(MatrixFormat::Int8 { block: 0 }), 40)
                .unwrap();
        // One scale per row, stored once per 32 inputs: the same bytes as blocks of 32.
        assert_eq!(per_row.row_bytes(TensorId::layer(3, TensorKind::MlpCProjWeight)), 48 * 68);
    }

    #[test]
    fn per_block_overrides_shift_the_offsets_that_follow() {
        let mut quant = scheme(MatrixFormat::Int4);
        let keep =
            |kind, layer| FormatOverride { kind, layer, format: MatrixFormat::Int8 { block: 32 } };
        quant.overrides.push(keep(TensorKind::Wte, NO_LAYER)).unwrap();
        quant.overrides.push(keep(TensorKind::CFcWeight, 1)).unwrap();
        let layout = Layout::new(ModelConfig::GPT2_124M, quant, 40).unwrap();
        let fc = |l| layout.format(TensorId::layer(l, TensorKind::CFcWeight));
        assert_eq!(
            (fc(0).dtype, fc(1).dtype, fc(2).dtype),
            (DType::Int4, DType::Int8, DType::Int4)
        );
        assert_eq!(layout.format(TensorId::global(TensorKind::Wte)).dtype, DType::Int8);
        // Offsets still tile the file: each tensor starts at the next aligned byte.
        let mut end = layout.data_start();
        for i in 0..layout.tensor_count() {
            let e = layout.expected_entry(layout.id_at(i));
            assert_eq!(e.offset, align_up(end), "{}", e.id);
            end = e.offset + e.len;
        }
        assert_eq!(end, layout.file_len());
        let mut bad = scheme(MatrixFormat::Int4);
        bad.overrides.push(keep(TensorKind::Ln1Weight, NO_LAYER)).unwrap();
        let err = Layout::new(ModelConfig::GPT2_124M, bad, 40).unwrap_err();
        assert!(matches!(err, FormatError::Quant(QuantError::BadOverride { .. })));
    }

    #[test]
    fn rejects_block_sizes_that_do_not_divide_rows() {
        let cfg = ModelConfig::GPT2_1558M;
        let err = Layout::new(cfg, scheme(MatrixFormat::Int8 { block: 128 }), 40).unwrap_err();
        assert_eq!(err, FormatError::Quant(QuantError::BlockSize { block: 128, n_embd: 1600 }));
    }

    #[test]
    fn rejects_outliers_out_of_order() {
        let mut quant = scheme(MatrixFormat::Int8 { block: 32 });
        quant.lm_head_outliers.extend_from_slice(&[5, 3]).unwrap();
        let err = Layout::new(ModelConfig::GPT2_124M, quant, 40).unwrap_err();
        assert_eq!(err, FormatError::Quant(QuantError::BadOutlier { channel: 3, n_embd: 768 }));
    }
}
