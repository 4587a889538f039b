//! Where every tensor lives in a pack, derived from the config and quantization scheme alone.
//!
//! The loader checks the file's tensor table against this layout entry by entry, so the
//! forward pass can compute offsets instead of keeping a table in RAM.

use crate::config::{BLOCK_ELEMS, ModelConfig};
use crate::error::{FormatError, QuantError};
use crate::format::{
    ALIGNMENT, DType, ENTRY_BYTES, HEADER_BYTES, INDEX_SLOT_BYTES, MAX_TOKEN_BYTES, MatrixFormat,
    QuantScheme, TensorEntry, TensorFormat, TensorId, TensorKind, TokenizerHead,
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
    layer_stride: u64,
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
            layer_stride: 0,
            tokenizer: None,
        };
        layout.manifest_len = head_len + layout.tensor_count() * ENTRY_BYTES as u64;
        layout.data_start = align_up(HEADER_BYTES as u64 + layout.manifest_len);
        layout.layer_stride =
            TensorKind::LAYER.iter().map(|&k| align_up(layout.tensor_len(k))).sum();
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

    /// Storage format of a tensor kind.
    pub fn format(&self, kind: TensorKind) -> TensorFormat {
        match kind {
            TensorKind::Wpe => match self.quant.matrices {
                MatrixFormat::F32 => TensorFormat::F32,
                _ => TensorFormat::F16,
            },
            TensorKind::CAttnWeight
            | TensorKind::AttnCProjWeight
            | TensorKind::CFcWeight
            | TensorKind::MlpCProjWeight => self.matrix_format(self.shape(kind).1),
            TensorKind::Wte => TensorFormat {
                extras: self.quant.lm_head_outliers.len() as u32,
                ..self.matrix_format(self.config.embd())
            },
            _ => TensorFormat::F32,
        }
    }

    fn matrix_format(&self, cols: usize) -> TensorFormat {
        match self.quant.matrices {
            MatrixFormat::F32 => TensorFormat::F32,
            MatrixFormat::F16 => TensorFormat::F16,
            MatrixFormat::Int8 { block } => TensorFormat {
                dtype: DType::Int8,
                block: if block == 0 { cols as u32 } else { block },
                extras: 0,
            },
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

    /// Bytes of one row of a tensor kind.
    pub fn row_bytes(&self, kind: TensorKind) -> usize {
        self.format(kind).row_bytes(self.shape(kind).1)
    }

    fn tensor_len(&self, kind: TensorKind) -> u64 {
        self.shape(kind).0 as u64 * self.row_bytes(kind) as u64
    }

    /// File offset of the first tensor (`wpe`).
    pub fn data_start(&self) -> u64 {
        self.data_start
    }

    /// File offset of a tensor.
    pub fn offset(&self, id: TensorId) -> u64 {
        let layers_start = self.data_start + align_up(self.tensor_len(TensorKind::Wpe));
        let layers_end = layers_start + self.layer_stride * u64::from(self.config.n_layer);
        let ln_f_bias = layers_end + align_up(self.tensor_len(TensorKind::LnFWeight));
        match id.kind {
            TensorKind::Wpe => self.data_start,
            TensorKind::LnFWeight => layers_end,
            TensorKind::LnFBias => ln_f_bias,
            TensorKind::Wte => ln_f_bias + align_up(self.tensor_len(TensorKind::LnFBias)),
            kind => {
                let within: u64 = TensorKind::LAYER
                    .iter()
                    .take_while(|&&k| k != kind)
                    .map(|&k| align_up(self.tensor_len(k)))
                    .sum();
                layers_start + self.layer_stride * u64::from(id.layer) + within
            }
        }
    }

    /// End of the last tensor (`wte`).
    pub fn weights_end(&self) -> u64 {
        let wte = TensorId::global(TensorKind::Wte);
        self.offset(wte) + self.tensor_len(TensorKind::Wte)
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
            format: self.format(id.kind),
            rows: rows as u32,
            cols: cols as u32,
            offset: self.offset(id),
            len: self.tensor_len(id.kind),
            crc32: 0,
        }
    }

    /// Largest block (or row-extras run) any tensor has: the least a chunk buffer must hold.
    pub fn max_unit_bytes(&self) -> usize {
        let kinds = [TensorKind::Wpe, TensorKind::CFcWeight, TensorKind::MlpCProjWeight];
        let wte = self.format(TensorKind::Wte);
        kinds
            .iter()
            .map(|&k| self.format(k).block_bytes())
            .chain([wte.block_bytes(), 2 * wte.extras as usize, TensorFormat::F32.block_bytes()])
            .max()
            .unwrap_or(0)
    }
}

/// Checks a scheme against a config: block sizes divide the rows, outliers are sane.
fn check_quant(config: &ModelConfig, quant: &QuantScheme) -> Result<(), QuantError> {
    match quant.matrices {
        MatrixFormat::Int8 { block } => {
            let fits = block == 0
                || ((block as usize).is_multiple_of(BLOCK_ELEMS)
                    && config.n_embd.is_multiple_of(block));
            if !fits {
                return Err(QuantError::BlockSize { block, n_embd: config.n_embd });
            }
        }
        format if !quant.lm_head_outliers.is_empty() => {
            return Err(QuantError::OutliersWithoutInt8 { format });
        }
        _ => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scheme(matrices: MatrixFormat) -> QuantScheme {
        QuantScheme { matrices, lm_head_outliers: heapless::Vec::new() }
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
        // c_fc: 3072 rows of 768 inputs = 24 blocks of 34 bytes.
        assert_eq!(layout.row_bytes(TensorKind::CFcWeight), 24 * 34);
        let per_row =
            Layout::new(ModelConfig::GPT2_124M, scheme(MatrixFormat::Int8 { block: 0 }), 40)
                .unwrap();
        assert_eq!(per_row.row_bytes(TensorKind::MlpCProjWeight), 3072 + 2);
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
