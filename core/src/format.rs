//! The packed-file format: header, postcard manifest, tensor table.
//!
//! ```text
//! offset 0   header      magic "PGPT", format version, manifest length, manifest CRC32 (LE u32s)
//! offset 16  manifest    postcard(ManifestHead) ++ tensor_count × postcard(TensorEntry)
//!            padding     to `alignment` (512, an SD sector)
//!            tensors     in the order the forward pass reads them, each aligned to 512:
//!                        wpe, h.0.ln_1.weight … h.{L-1}.mlp.c_proj.bias, ln_f.*, wte
//!            tokenizer   optional, each section aligned to 512:
//!                        vocab: (vocab + 1) u32 LE offsets, then the token bytes
//!                        index: `slots` × { u32 id, u32 hash } open-addressing table
//! ```
//! Every `TensorEntry` encodes to exactly [`ENTRY_BYTES`] (all integers are fixed-width), so
//! entry `k` can be read straight from storage without decoding the ones before it.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::config::{BLOCK_ELEMS, ModelConfig};
use crate::kernels::int8::{PAIR_BYTES, int8_row_bytes};

/// First four bytes of every pack.
pub const MAGIC: [u8; 4] = *b"PGPT";
/// The format version this crate reads and writes.
pub const FORMAT_VERSION: u32 = 5;
/// Bytes before the manifest: magic, version, manifest length, manifest CRC32.
pub const HEADER_BYTES: usize = 16;
/// Alignment of every tensor in the file: one SD-card sector.
pub const ALIGNMENT: u32 = 512;
/// Encoded size of one [`TensorEntry`].
pub const ENTRY_BYTES: usize = 40;
/// Largest manifest `core` accepts (the 1558M model needs about 23 KiB).
pub const MAX_MANIFEST_BYTES: u32 = 1 << 20;
/// Most LM-head input channels a pack may keep in f32 beside the int8 blocks.
pub const MAX_OUTLIERS: usize = 32;

/// The fixed-size header at offset 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Format version ([`FORMAT_VERSION`]).
    pub version: u32,
    /// Length of the manifest in bytes.
    pub manifest_len: u32,
    /// CRC32 (IEEE) of the manifest bytes.
    pub manifest_crc: u32,
}

impl Header {
    /// Encodes the header for writing at offset 0.
    pub fn to_bytes(&self) -> [u8; HEADER_BYTES] {
        let mut out = [0u8; HEADER_BYTES];
        out[0..4].copy_from_slice(&MAGIC);
        out[4..8].copy_from_slice(&self.version.to_le_bytes());
        out[8..12].copy_from_slice(&self.manifest_len.to_le_bytes());
        out[12..16].copy_from_slice(&self.manifest_crc.to_le_bytes());
        out
    }

    /// Splits the raw header into its fields; the caller checks magic and version.
    pub fn parse(bytes: &[u8; HEADER_BYTES]) -> ([u8; 4], Self) {
        let word =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
        (magic, Self { version: word(4), manifest_len: word(8), manifest_crc: word(12) })
    }
}

/// How the weight matrices are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum MatrixFormat {
    /// IEEE f32, as in the checkpoint.
    F32,
    /// IEEE binary16.
    F16,
    /// Symmetric int8 in blocks along the input dimension, one f16 scale per block
    /// (`{ f16 d; i8 q[block] }`, value = d·q). `block == 0` means one block per row.
    Int8 {
        /// Input elements per block: a multiple of 32, or 0 for a whole row.
        block: u32,
    },
    /// 4-bit weights in blocks of 32 with an f16 scale, as ggml's Q4_0
    /// (`{ f16 d; u8 q[16] }`, element 2j in the low nibble of byte j, value = d·(q − 8)).
    Int4,
    /// `bits`-bit (4, 5 or 6) weights in blocks of 32 or 64 with an f16 scale and an f16
    /// minimum, value = d·q + m, q in 0..2^bits (see [`crate::kernels::affine`]); the packer
    /// picks `d` and `m` per block to minimize the error weighted by calibration activations.
    Affine {
        /// Bits per weight: 4, 5 or 6.
        bits: u8,
        /// Weights per block: 32 or 64 (dividing `n_embd`).
        block: u16,
    },
}

impl MatrixFormat {
    /// Whether matrices in this format are integers read through the activation paths.
    pub fn is_integer(self) -> bool {
        matches!(self, Self::Int8 { .. } | Self::Int4 | Self::Affine { .. })
    }
}

impl fmt::Display for MatrixFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::F32 => f.write_str("f32"),
            Self::F16 => f.write_str("f16"),
            Self::Int8 { block: 0 } => f.write_str("int8 (per row)"),
            Self::Int8 { block } => write!(f, "int8 (blocks of {block})"),
            Self::Int4 => f.write_str("int4 (blocks of 32)"),
            Self::Affine { bits, block } => write!(f, "q{bits}m (blocks of {block}, scale + min)"),
        }
    }
}

/// Most per-tensor format overrides a pack may carry.
pub const MAX_OVERRIDES: usize = 64;

/// The quantization choices of a pack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct QuantScheme {
    /// Format of every 2-D weight (and of `wte`, the tied LM head) unless overridden.
    pub matrices: MatrixFormat,
    /// Input channels of the LM head stored beside each int8 `wte` row in f32, because the
    /// final layer norm makes them far larger than the rest (empty unless `wte` is int8).
    pub lm_head_outliers: heapless::Vec<u16, MAX_OUTLIERS>,
    /// Matrices kept in another format than `matrices` (mixed precision: say, an int4 pack
    /// whose LM head stays int8). The first matching entry wins.
    pub overrides: heapless::Vec<FormatOverride, MAX_OVERRIDES>,
}

impl QuantScheme {
    /// One format for every matrix, no outlier channels, no overrides.
    pub fn uniform(matrices: MatrixFormat) -> Self {
        Self { matrices, lm_head_outliers: heapless::Vec::new(), overrides: heapless::Vec::new() }
    }

    /// Whether any matrix is stored as integers (int8, int4, q4m–q6m): the matrices the
    /// activation paths ([`crate::Activations`]) apply to.
    pub fn has_integer_matrices(&self) -> bool {
        self.matrices.is_integer() || self.overrides.iter().any(|o| o.format.is_integer())
    }
}

/// A matrix (or a kind of matrix in every block) stored in its own format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FormatOverride {
    /// Which matrix kind: a block matrix or `wte`.
    pub kind: TensorKind,
    /// Which block, or [`NO_LAYER`] for every block (and for `wte`).
    pub layer: u16,
    /// Its format.
    pub format: MatrixFormat,
}

/// Everything in the manifest except the tensor table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestHead {
    /// Model shape.
    pub config: ModelConfig,
    /// Weight formats.
    pub quant: QuantScheme,
    /// Alignment of each tensor's offset ([`ALIGNMENT`]).
    pub alignment: u32,
    /// Total file length in bytes; a shorter file is truncated.
    pub file_len: u64,
    /// Number of [`TensorEntry`] records that follow.
    pub tensor_count: u32,
    /// Where the tokenizer sections are, if the pack has them.
    pub tokenizer: Option<TokenizerHead>,
}

/// The tokenizer sections: GPT-2's byte-level BPE, read through the same storage as weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TokenizerHead {
    /// File offset of the vocabulary: `vocab_size + 1` u32 offsets into the byte blob that
    /// follows them (token `i` is `blob[off[i]..off[i + 1]]`).
    pub vocab_offset: u64,
    /// Length of the vocabulary section in bytes.
    pub vocab_len: u64,
    /// CRC32 of the vocabulary section.
    pub vocab_crc: u32,
    /// File offset of the BPE index: a hash table from token bytes to id.
    pub index_offset: u64,
    /// Slots in the index (a power of two); each is `{ u32 id, u32 hash }`, id `u32::MAX` when
    /// empty.
    pub index_slots: u32,
    /// CRC32 of the index section.
    pub index_crc: u32,
    /// Longest token in bytes.
    pub max_token_bytes: u32,
    /// Id of `<|endoftext|>`, which is in the vocabulary but not in the index.
    pub end_of_text: u32,
}

/// Bytes of one BPE index slot.
pub const INDEX_SLOT_BYTES: usize = 8;
/// Marks an empty BPE index slot.
pub const EMPTY_SLOT: u32 = u32::MAX;
/// Longest token a pack may declare.
pub const MAX_TOKEN_BYTES: u32 = 256;

/// The BPE index's hash of a token's bytes (32-bit FNV-1a).
pub fn token_hash(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// Element type of a stored tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DType {
    /// IEEE f32.
    F32,
    /// IEEE binary16.
    F16,
    /// int8 blocks with an f16 scale each.
    Int8,
    /// 4-bit blocks of 32 with an f16 scale each.
    Int4,
    /// 4-bit blocks of 32 with an f16 scale and minimum each.
    Q4M,
    /// 5-bit blocks of 32 with an f16 scale and minimum each.
    Q5M,
    /// 6-bit blocks of 32 with an f16 scale and minimum each.
    Q6M,
}

impl DType {
    /// Bits per weight of the scale-and-minimum formats (`None` for the others).
    pub const fn affine_bits(self) -> Option<u32> {
        match self {
            Self::Q4M => Some(4),
            Self::Q5M => Some(5),
            Self::Q6M => Some(6),
            _ => None,
        }
    }

    /// The scale-and-minimum format of `bits` bits, if there is one.
    pub const fn affine(bits: u8) -> Option<Self> {
        match bits {
            4 => Some(Self::Q4M),
            5 => Some(Self::Q5M),
            6 => Some(Self::Q6M),
            _ => None,
        }
    }
}

/// How one tensor's rows are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TensorFormat {
    /// Element type.
    pub dtype: DType,
    /// Elements per block (int8: per scale, a multiple of 32 or a whole row, stored as one
    /// scale per 32; q4m–q6m: 32 or 64; f32/f16/int4: [`BLOCK_ELEMS`]).
    #[serde(with = "postcard::fixint::le")]
    pub block: u32,
    /// f32 values appended to each row (the LM head's outlier channels).
    #[serde(with = "postcard::fixint::le")]
    pub extras: u32,
}

impl TensorFormat {
    /// Plain f32 (vectors, and matrices of f32 packs).
    pub const F32: Self = Self { dtype: DType::F32, block: BLOCK_ELEMS as u32, extras: 0 };
    /// Plain f16.
    pub const F16: Self = Self { dtype: DType::F16, block: BLOCK_ELEMS as u32, extras: 0 };

    /// Bytes of one streaming unit, the smallest piece a row is ever cut into: a block of
    /// [`BLOCK_ELEMS`] for f32, f16 and int4, a pair of blocks for int8 (whose odd rows end
    /// with one single block, see [`crate::kernels::int8`]).
    pub fn unit_bytes(&self) -> usize {
        match self.dtype {
            DType::F32 => 4 * BLOCK_ELEMS,
            DType::F16 => 2 * BLOCK_ELEMS,
            DType::Int8 => PAIR_BYTES,
            DType::Int4 => 2 + BLOCK_ELEMS / 2,
            DType::Q4M | DType::Q5M | DType::Q6M => crate::kernels::affine::block_bytes(
                self.dtype.affine_bits().unwrap_or(4),
                self.block as usize,
            ),
        }
    }

    /// Elements of one unit.
    pub fn unit_elems(&self) -> usize {
        match self.dtype {
            DType::Int8 => 2 * BLOCK_ELEMS,
            DType::Q4M | DType::Q5M | DType::Q6M => self.block as usize,
            _ => BLOCK_ELEMS,
        }
    }

    /// Bytes of the weights of one row of `cols` elements (extras excluded).
    pub fn weight_bytes(&self, cols: usize) -> usize {
        match self.dtype {
            DType::Int8 => int8_row_bytes(cols),
            _ => cols / self.unit_elems().max(1) * self.unit_bytes(),
        }
    }

    /// Bytes of the f32 extras after each row.
    pub fn extras_bytes(&self) -> usize {
        4 * self.extras as usize
    }

    /// Bytes of one row of `cols` elements, extras included.
    pub fn row_bytes(&self, cols: usize) -> usize {
        self.weight_bytes(cols) + self.extras_bytes()
    }
}

impl fmt::Display for TensorFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.dtype {
            DType::F32 => f.write_str("f32")?,
            DType::F16 => f.write_str("f16")?,
            DType::Int8 => write!(f, "int8 blocks of {}", self.block)?,
            DType::Int4 => write!(f, "int4 blocks of {}", self.block)?,
            DType::Q4M | DType::Q5M | DType::Q6M => {
                write!(f, "q{}m blocks of {}", self.dtype.affine_bits().unwrap_or(0), self.block)?
            }
        }
        if self.extras > 0 {
            write!(f, " + {} f32 outlier channels", self.extras)?;
        }
        Ok(())
    }
}

/// Which tensor of the checkpoint tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TensorKind {
    /// `wpe.weight`, position embeddings [n_ctx, n_embd].
    Wpe,
    /// `h.{i}.ln_1.weight`.
    Ln1Weight,
    /// `h.{i}.ln_1.bias`.
    Ln1Bias,
    /// `h.{i}.attn.c_attn.weight`, stored [3·n_embd rows, n_embd cols].
    CAttnWeight,
    /// `h.{i}.attn.c_attn.bias`.
    CAttnBias,
    /// `h.{i}.attn.c_proj.weight`, stored [n_embd rows, n_embd cols].
    AttnCProjWeight,
    /// `h.{i}.attn.c_proj.bias`.
    AttnCProjBias,
    /// `h.{i}.ln_2.weight`.
    Ln2Weight,
    /// `h.{i}.ln_2.bias`.
    Ln2Bias,
    /// `h.{i}.mlp.c_fc.weight`, stored [4·n_embd rows, n_embd cols].
    CFcWeight,
    /// `h.{i}.mlp.c_fc.bias`.
    CFcBias,
    /// `h.{i}.mlp.c_proj.weight`, stored [n_embd rows, 4·n_embd cols].
    MlpCProjWeight,
    /// `h.{i}.mlp.c_proj.bias`.
    MlpCProjBias,
    /// `ln_f.weight`.
    LnFWeight,
    /// `ln_f.bias`.
    LnFBias,
    /// `wte.weight`, token embeddings and tied LM head [vocab, n_embd].
    Wte,
}

impl TensorKind {
    /// The per-block tensors, in file order.
    pub const LAYER: [Self; 12] = [
        Self::Ln1Weight,
        Self::Ln1Bias,
        Self::CAttnWeight,
        Self::CAttnBias,
        Self::AttnCProjWeight,
        Self::AttnCProjBias,
        Self::Ln2Weight,
        Self::Ln2Bias,
        Self::CFcWeight,
        Self::CFcBias,
        Self::MlpCProjWeight,
        Self::MlpCProjBias,
    ];

    /// Name inside the checkpoint, after `h.{i}.` for per-block tensors.
    pub fn hf_name(self) -> &'static str {
        match self {
            Self::Wpe => "wpe.weight",
            Self::Ln1Weight => "ln_1.weight",
            Self::Ln1Bias => "ln_1.bias",
            Self::CAttnWeight => "attn.c_attn.weight",
            Self::CAttnBias => "attn.c_attn.bias",
            Self::AttnCProjWeight => "attn.c_proj.weight",
            Self::AttnCProjBias => "attn.c_proj.bias",
            Self::Ln2Weight => "ln_2.weight",
            Self::Ln2Bias => "ln_2.bias",
            Self::CFcWeight => "mlp.c_fc.weight",
            Self::CFcBias => "mlp.c_fc.bias",
            Self::MlpCProjWeight => "mlp.c_proj.weight",
            Self::MlpCProjBias => "mlp.c_proj.bias",
            Self::LnFWeight => "ln_f.weight",
            Self::LnFBias => "ln_f.bias",
            Self::Wte => "wte.weight",
        }
    }
}

/// Marks a tensor that belongs to no block.
pub const NO_LAYER: u16 = u16::MAX;

/// One tensor of the model: its kind and, for per-block tensors, the block index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TensorId {
    /// Block index, or [`NO_LAYER`].
    #[serde(with = "postcard::fixint::le")]
    pub layer: u16,
    /// Which tensor.
    pub kind: TensorKind,
}

impl TensorId {
    /// A tensor outside the blocks (`wte`, `wpe`, `ln_f.*`).
    pub const fn global(kind: TensorKind) -> Self {
        Self { layer: NO_LAYER, kind }
    }

    /// A tensor of block `layer`.
    pub const fn layer(layer: u16, kind: TensorKind) -> Self {
        Self { layer, kind }
    }
}

impl fmt::Display for TensorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.layer == NO_LAYER {
            f.write_str(self.kind.hf_name())
        } else {
            write!(f, "h.{}.{}", self.layer, self.kind.hf_name())
        }
    }
}

/// One row of the tensor table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorEntry {
    /// Which tensor.
    pub id: TensorId,
    /// Storage format.
    pub format: TensorFormat,
    /// Rows as the forward pass reads them (output features; 1 for vectors).
    #[serde(with = "postcard::fixint::le")]
    pub rows: u32,
    /// Columns (input features; the length for vectors).
    #[serde(with = "postcard::fixint::le")]
    pub cols: u32,
    /// Absolute file offset of the first byte.
    #[serde(with = "postcard::fixint::le")]
    pub offset: u64,
    /// Length in bytes.
    #[serde(with = "postcard::fixint::le")]
    pub len: u64,
    /// CRC32 (IEEE) of the tensor's bytes.
    #[serde(with = "postcard::fixint::le")]
    pub crc32: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_encode_to_a_fixed_size() {
        let small = TensorEntry {
            id: TensorId::global(TensorKind::Wpe),
            format: TensorFormat::F32,
            rows: 0,
            cols: 0,
            offset: 0,
            len: 0,
            crc32: 0,
        };
        let large = TensorEntry {
            id: TensorId::layer(1000, TensorKind::MlpCProjBias),
            format: TensorFormat { dtype: DType::Int8, block: u32::MAX, extras: u32::MAX },
            rows: u32::MAX,
            cols: u32::MAX,
            offset: u64::MAX,
            len: u64::MAX,
            crc32: u32::MAX,
        };
        let mut buf = [0u8; 64];
        for entry in [small, large] {
            let used = postcard::to_slice(&entry, &mut buf).map(|b| b.len());
            assert_eq!(used, Ok(ENTRY_BYTES));
        }
    }

    #[test]
    fn header_round_trips() {
        let header =
            Header { version: FORMAT_VERSION, manifest_len: 1234, manifest_crc: 0xdead_beef };
        let (magic, parsed) = Header::parse(&header.to_bytes());
        assert_eq!(magic, MAGIC);
        assert_eq!(parsed, header);
    }

    #[test]
    fn names_follow_the_checkpoint_tree() {
        let id = TensorId::layer(3, TensorKind::CAttnBias);
        assert_eq!(std::format!("{id}"), "h.3.attn.c_attn.bias");
        assert_eq!(std::format!("{}", TensorId::global(TensorKind::Wte)), "wte.weight");
    }
}
