//! The typed errors of `core`: one variant per way a pack, a buffer or a storage can fail.

use core::convert::Infallible;
use core::fmt;

use crate::config::ConfigError;
use crate::format::{MatrixFormat, TensorFormat, TensorId, TensorKind};

/// What is wrong with a pack file's contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FormatError {
    /// The file does not start with `PGPT`.
    BadMagic {
        /// The first four bytes found.
        found: [u8; 4],
    },
    /// The pack was written by a different format version.
    UnsupportedVersion {
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// The manifest length in the header is implausible.
    ManifestTooLarge {
        /// Length claimed by the header.
        len: u32,
        /// Largest accepted.
        max: u32,
    },
    /// The manifest bytes do not match the CRC in the header.
    ManifestCrc {
        /// CRC from the header.
        expected: u32,
        /// CRC of the bytes read.
        found: u32,
    },
    /// The manifest could not be decoded.
    ManifestDecode {
        /// File offset of the record that failed.
        offset: u64,
    },
    /// The manifest ends before its tensor table does, or has bytes after it.
    ManifestLength {
        /// Length the header claims.
        claimed: u32,
        /// Length the decoded records need.
        needed: u64,
    },
    /// The model config in the manifest is unusable.
    Config(ConfigError),
    /// The quantization scheme does not fit the model.
    Quant(QuantError),
    /// The manifest's alignment is not the one this build lays tensors out with.
    Alignment {
        /// Alignment found.
        found: u32,
        /// Alignment expected.
        expected: u32,
    },
    /// The tensor table has the wrong number of entries.
    TensorCount {
        /// Entries this model needs.
        expected: u64,
        /// Entries in the table.
        found: u32,
    },
    /// A table entry names a different tensor than the one due at its position.
    WrongTensor {
        /// Position in the table.
        index: u32,
        /// The tensor due there.
        expected: TensorId,
        /// The tensor found.
        found: TensorId,
    },
    /// A table entry's storage format disagrees with the quantization scheme.
    TensorFormat {
        /// The tensor.
        tensor: TensorId,
        /// Format the scheme implies.
        expected: TensorFormat,
        /// Format in the table.
        found: TensorFormat,
    },
    /// A table entry's field disagrees with what the config and scheme imply.
    TensorField {
        /// The tensor.
        tensor: TensorId,
        /// `rows`, `cols`, `offset` or `len`.
        field: &'static str,
        /// Value implied by config and scheme.
        expected: u64,
        /// Value in the table.
        found: u64,
    },
    /// The manifest's `file_len` disagrees with the tensor table.
    FileLen {
        /// End of the last tensor.
        expected: u64,
        /// `file_len` in the manifest.
        found: u64,
    },
    /// The storage holds fewer bytes than the pack needs.
    Truncated {
        /// Bytes the pack needs.
        needed: u64,
        /// Bytes the storage holds.
        found: u64,
    },
    /// The tokenizer sections are misplaced or implausible.
    Tokenizer {
        /// What is wrong.
        what: &'static str,
        /// The offending value.
        value: u64,
    },
    /// A tokenizer entry points outside its section.
    TokenizerData {
        /// The token id (or index slot) whose entry is bad.
        entry: u32,
    },
    /// A tokenizer section's bytes do not match its CRC.
    TokenizerCrc {
        /// `vocabulary` or `index`.
        section: &'static str,
    },
    /// A tensor's bytes do not match its CRC.
    Crc {
        /// The tensor.
        tensor: TensorId,
        /// CRC from the table.
        expected: u32,
        /// CRC of the bytes read.
        found: u32,
    },
}

/// Why a [`crate::format::QuantScheme`] cannot describe a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum QuantError {
    /// The int8 block size is not a multiple of 32 dividing `n_embd`.
    BlockSize {
        /// Block size.
        block: u32,
        /// `n_embd`.
        n_embd: u32,
    },
    /// LM-head outlier channels are listed for a format that has no int8 blocks.
    OutliersWithoutInt8 {
        /// The matrix format.
        format: MatrixFormat,
    },
    /// A format override names a tensor that is not a matrix, or a block that does not exist.
    BadOverride {
        /// The tensor kind.
        kind: TensorKind,
        /// The block index (`u16::MAX`: every block).
        layer: u16,
    },
    /// An outlier channel is out of range or not in increasing order.
    BadOutlier {
        /// The channel.
        channel: u16,
        /// `n_embd`.
        n_embd: u32,
    },
    /// A scale-and-minimum format this build does not read (4, 5 or 6 bits in blocks of 32
    /// or 64), or whose block does not divide `n_embd`.
    AffineShape {
        /// The width asked for.
        bits: u8,
        /// The block asked for.
        block: u16,
        /// `n_embd`.
        n_embd: u32,
    },
}

impl fmt::Display for QuantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::AffineShape { bits, block, n_embd } => write!(
                f,
                "q{bits}m in blocks of {block}: scale-and-minimum weights come in 4, 5 or 6 bits \
                 in blocks of 32 or 64 that divide n_embd {n_embd}"
            ),
            Self::BlockSize { block, n_embd } => write!(
                f,
                "int8 block size {block} is not a multiple of 32 that divides n_embd {n_embd}"
            ),
            Self::OutliersWithoutInt8 { format } => {
                write!(f, "LM-head outlier channels listed for {format} weights")
            }
            Self::BadOverride { kind, layer } => write!(
                f,
                "format override for {} (block {layer}) names no matrix of this model",
                kind.hf_name()
            ),
            Self::BadOutlier { channel, n_embd } => write!(
                f,
                "LM-head outlier channel {channel} is out of order or not below n_embd {n_embd}"
            ),
        }
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadMagic { found } => {
                f.write_str("not a picogpt pack: it starts with \"")?;
                for b in found {
                    write!(f, "{}", core::ascii::escape_default(b))?;
                }
                f.write_str("\", expected \"PGPT\"")
            }
            Self::UnsupportedVersion { found, supported } if found < supported => write!(
                f,
                "pack format version {found} is older than this build's version {supported}: \
                 re-pack the checkpoint with this build's `host-tools pack`"
            ),
            Self::UnsupportedVersion { found, supported } => write!(
                f,
                "pack format version {found} is not supported (this build reads version {supported})"
            ),
            Self::ManifestTooLarge { len, max } => {
                write!(f, "manifest length {len} exceeds the limit of {max} bytes")
            }
            Self::ManifestCrc { expected, found } => write!(
                f,
                "manifest CRC mismatch: header says {expected:#010x}, bytes give {found:#010x}"
            ),
            Self::ManifestDecode { offset } => {
                write!(f, "manifest record at offset {offset} cannot be decoded")
            }
            Self::ManifestLength { claimed, needed } => write!(
                f,
                "manifest length {claimed} in the header, but its records need {needed} bytes"
            ),
            Self::Config(e) => write!(f, "model config: {e}"),
            Self::Quant(e) => write!(f, "quantization scheme: {e}"),
            Self::Alignment { found, expected } => {
                write!(f, "tensor alignment {found}, expected {expected}")
            }
            Self::TensorCount { expected, found } => {
                write!(f, "tensor table has {found} entries, the model needs {expected}")
            }
            Self::WrongTensor { index, expected, found } => {
                write!(f, "tensor table entry {index} is {found}, expected {expected}")
            }
            Self::TensorFormat { tensor, expected, found } => {
                write!(f, "tensor {tensor}: stored as {found}, expected {expected}")
            }
            Self::TensorField { tensor, field, expected, found } => {
                write!(f, "tensor {tensor}: {field} is {found}, expected {expected}")
            }
            Self::FileLen { expected, found } => {
                write!(f, "manifest file_len is {found}, but the tensors end at {expected}")
            }
            Self::Truncated { needed, found } => {
                write!(f, "pack is truncated: {found} bytes, needs {needed}")
            }
            Self::Tokenizer { what, value } => write!(f, "tokenizer: {what} ({value})"),
            Self::TokenizerData { entry } => {
                write!(f, "tokenizer entry {entry} points outside its section")
            }
            Self::TokenizerCrc { section } => {
                write!(f, "tokenizer {section} section: CRC mismatch")
            }
            Self::Crc { tensor, expected, found } => write!(
                f,
                "tensor {tensor}: CRC mismatch (table {expected:#010x}, data {found:#010x})"
            ),
        }
    }
}

/// Every failure of `core`. `SE` is the weight storage's error, `KE` the KV cache's.
#[derive(Debug, PartialEq)]
pub enum Error<SE, KE = Infallible> {
    /// The weight storage failed.
    Storage {
        /// The storage's own error.
        source: SE,
        /// File offset being read.
        offset: u64,
        /// Tensor being read, if any.
        tensor: Option<TensorId>,
    },
    /// The storage reported end of data before the requested bytes.
    UnexpectedEof {
        /// File offset being read.
        offset: u64,
        /// Tensor being read, if any.
        tensor: Option<TensorId>,
    },
    /// The pack's contents are invalid.
    Format(FormatError),
    /// A caller-provided buffer is too small.
    BufferTooSmall {
        /// Which buffer.
        what: &'static str,
        /// Bytes (or positions) needed.
        needed: usize,
        /// Bytes (or positions) given.
        given: usize,
    },
    /// A workspace or KV cache was built for a different model.
    ShapeMismatch {
        /// Which buffer.
        what: &'static str,
    },
    /// The KV cache failed.
    Kv {
        /// The cache's own error.
        source: KE,
        /// Layer being read or written.
        layer: usize,
        /// Position being read or written.
        pos: usize,
    },
    /// The tokens do not fit the context.
    ContextFull {
        /// Positions the request needs.
        needed: usize,
        /// Positions available.
        available: usize,
        /// `n_ctx` or `KV cache`.
        limit: &'static str,
    },
    /// A token id is not in the vocabulary.
    TokenOutOfRange {
        /// The token.
        token: u32,
        /// Vocabulary size.
        vocab: u32,
    },
    /// No tokens were given.
    EmptyInput,
    /// Text was asked of a pack without tokenizer sections (token ids still work).
    NoTokenizer,
    /// Input text is not UTF-8.
    InvalidUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// A logit came out NaN or infinite (corrupt weights read without CRC checks).
    NonFinite {
        /// The token whose logit it was.
        token: u32,
    },
}

impl<SE, KE> From<FormatError> for Error<SE, KE> {
    fn from(e: FormatError) -> Self {
        Self::Format(e)
    }
}

impl core::error::Error for FormatError {}

impl core::error::Error for QuantError {}

impl<SE: fmt::Debug + fmt::Display, KE: fmt::Debug + fmt::Display> core::error::Error
    for Error<SE, KE>
{
}

impl<SE> Error<SE, Infallible> {
    /// The same error typed for a call that also involves a KV cache, so `open` and
    /// `forward` errors fit one type.
    pub fn with_kv<KE>(self) -> Error<SE, KE> {
        match self {
            Self::Storage { source, offset, tensor } => Error::Storage { source, offset, tensor },
            Self::UnexpectedEof { offset, tensor } => Error::UnexpectedEof { offset, tensor },
            Self::Format(e) => Error::Format(e),
            Self::BufferTooSmall { what, needed, given } => {
                Error::BufferTooSmall { what, needed, given }
            }
            Self::ShapeMismatch { what } => Error::ShapeMismatch { what },
            Self::Kv { source, .. } => match source {},
            Self::ContextFull { needed, available, limit } => {
                Error::ContextFull { needed, available, limit }
            }
            Self::TokenOutOfRange { token, vocab } => Error::TokenOutOfRange { token, vocab },
            Self::EmptyInput => Error::EmptyInput,
            Self::NoTokenizer => Error::NoTokenizer,
            Self::InvalidUtf8 { offset } => Error::InvalidUtf8 { offset },
            Self::NonFinite { token } => Error::NonFinite { token },
        }
    }
}

struct Context(Option<TensorId>);

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(t) => write!(f, " (tensor {t})"),
            None => Ok(()),
        }
    }
}

impl<SE: fmt::Display, KE: fmt::Display> fmt::Display for Error<SE, KE> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Storage { source, offset, tensor } => {
                write!(f, "storage read at offset {offset}{} failed: {source}", Context(*tensor))
            }
            Self::UnexpectedEof { offset, tensor } => {
                write!(f, "storage ended at offset {offset}{}", Context(*tensor))
            }
            Self::Format(e) => write!(f, "{e}"),
            Self::BufferTooSmall { what, needed, given } => {
                write!(f, "{what} too small: needs {needed}, given {given}")
            }
            Self::ShapeMismatch { what } => write!(f, "{what} was built for a different model"),
            Self::Kv { source, layer, pos } => {
                write!(f, "KV cache failed at layer {layer}, position {pos}: {source}")
            }
            Self::ContextFull { needed, available, limit } => {
                write!(f, "{needed} positions needed, {limit} holds {available}")
            }
            Self::TokenOutOfRange { token, vocab } => {
                write!(f, "token {token} is outside the vocabulary of {vocab}")
            }
            Self::EmptyInput => write!(f, "no input tokens"),
            Self::NoTokenizer => {
                write!(f, "this pack has no tokenizer sections: give token ids instead of text")
            }
            Self::InvalidUtf8 { offset } => write!(f, "input is not valid UTF-8 (byte {offset})"),
            Self::NonFinite { token } => write!(
                f,
                "logit of token {token} is not finite: the weights are corrupt (run with CRC checks)"
            ),
        }
    }
}
