//! GPT-2 hyper-parameters and the limits `core` accepts for them.

use core::fmt;

use serde::{Deserialize, Serialize};

/// Every matrix row is processed in blocks of this many input elements; `n_embd` must be a
/// multiple of it so that rows never end inside a block.
pub const BLOCK_ELEMS: usize = 32;

/// Largest accepted `n_layer`, `n_embd`, `n_ctx` and `vocab_size`: far beyond GPT-2 XL
/// (48, 1600, 1024, 50257) yet small enough that every size product fits a `u64` and, on
/// 32-bit targets, every per-row product fits a `usize`.
pub const MAX_LAYERS: u32 = 1024;
/// See [`MAX_LAYERS`].
pub const MAX_EMBD: u32 = 1 << 15;
/// See [`MAX_LAYERS`].
pub const MAX_CTX: u32 = 1 << 16;
/// See [`MAX_LAYERS`].
pub const MAX_VOCAB: u32 = 1 << 20;

/// The shape of a GPT-2 model, as in Hugging Face's `config.json`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ModelConfig {
    /// Number of transformer blocks (`n_layer`).
    pub n_layer: u32,
    /// Width of the residual stream (`n_embd`).
    pub n_embd: u32,
    /// Attention heads per block (`n_head`); `n_embd / n_head` is the head size.
    pub n_head: u32,
    /// Longest context the position table covers (`n_positions` / `n_ctx`).
    pub n_ctx: u32,
    /// Number of tokens (`vocab_size`), 50257 for every released GPT-2.
    pub vocab_size: u32,
    /// Layer-norm epsilon (`layer_norm_epsilon`), 1e-5 for GPT-2.
    pub layer_norm_epsilon: f32,
}

/// `12 layers, n_embd 768, 12 heads, n_ctx 1024, vocab 50257`: how tools name a shape.
impl fmt::Display for ModelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} layers, n_embd {}, {} heads, n_ctx {}, vocab {}",
            self.n_layer, self.n_embd, self.n_head, self.n_ctx, self.vocab_size
        )
    }
}

/// Why a [`ModelConfig`] cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConfigError {
    /// A dimension is zero.
    Zero {
        /// Which field.
        field: &'static str,
    },
    /// A dimension exceeds what `core` supports.
    TooLarge {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: u32,
        /// The largest accepted value.
        max: u32,
    },
    /// `n_embd` is not a multiple of `n_head`.
    HeadsDontDivide {
        /// `n_embd`.
        n_embd: u32,
        /// `n_head`.
        n_head: u32,
    },
    /// `n_embd` is not a multiple of [`BLOCK_ELEMS`].
    EmbdNotBlockAligned {
        /// `n_embd`.
        n_embd: u32,
    },
    /// The layer-norm epsilon is not a positive finite number.
    BadEpsilon,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Zero { field } => write!(f, "config field {field} is 0"),
            Self::TooLarge { field, value, max } => {
                write!(f, "config field {field} = {value} exceeds the supported maximum {max}")
            }
            Self::HeadsDontDivide { n_embd, n_head } => {
                write!(f, "n_embd {n_embd} is not divisible by n_head {n_head}")
            }
            Self::EmbdNotBlockAligned { n_embd } => {
                write!(f, "n_embd {n_embd} is not a multiple of {BLOCK_ELEMS}")
            }
            Self::BadEpsilon => write!(f, "layer_norm_epsilon must be positive and finite"),
        }
    }
}

impl core::error::Error for ConfigError {}

impl ModelConfig {
    /// GPT-2 124M ("gpt2"): 12 layers, 768 wide, 12 heads, 1024 positions.
    pub const GPT2_124M: Self = Self::gpt2(12, 768, 12);
    /// GPT-2 355M ("gpt2-medium").
    pub const GPT2_355M: Self = Self::gpt2(24, 1024, 16);
    /// GPT-2 774M ("gpt2-large").
    pub const GPT2_774M: Self = Self::gpt2(36, 1280, 20);
    /// GPT-2 1558M ("gpt2-xl").
    pub const GPT2_1558M: Self = Self::gpt2(48, 1600, 25);

    const fn gpt2(n_layer: u32, n_embd: u32, n_head: u32) -> Self {
        Self { n_layer, n_embd, n_head, n_ctx: 1024, vocab_size: 50257, layer_norm_epsilon: 1e-5 }
    }

    /// Checks that every later size computation is well defined and fits the integer types.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fields = [
            ("n_layer", self.n_layer, MAX_LAYERS),
            ("n_embd", self.n_embd, MAX_EMBD),
            ("n_head", self.n_head, MAX_EMBD),
            ("n_ctx", self.n_ctx, MAX_CTX),
            ("vocab_size", self.vocab_size, MAX_VOCAB),
        ];
        for (field, value, max) in fields {
            if value == 0 {
                return Err(ConfigError::Zero { field });
            }
            if value > max {
                return Err(ConfigError::TooLarge { field, value, max });
            }
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return Err(ConfigError::HeadsDontDivide { n_embd: self.n_embd, n_head: self.n_head });
        }
        if !(self.n_embd as usize).is_multiple_of(BLOCK_ELEMS) {
            return Err(ConfigError::EmbdNotBlockAligned { n_embd: self.n_embd });
        }
        if !(self.layer_norm_epsilon.is_finite() && self.layer_norm_epsilon > 0.0) {
            return Err(ConfigError::BadEpsilon);
        }
        Ok(())
    }

    /// Residual width as a `usize`.
    pub fn embd(&self) -> usize {
        self.n_embd as usize
    }

    /// Size of one attention head.
    pub fn head_size(&self) -> usize {
        (self.n_embd / self.n_head) as usize
    }

    /// Width of the MLP hidden layer (4 × `n_embd` in GPT-2).
    pub fn hidden(&self) -> usize {
        4 * self.embd()
    }

    /// Multiply-adds of one token's forward pass through the weight matrices (LM head
    /// included, attention over the cache excluded).
    pub fn weight_macs_per_token(&self) -> u64 {
        let d = u64::from(self.n_embd);
        let per_layer = d * 3 * d + d * d + d * 4 * d + 4 * d * d;
        u64::from(self.n_layer) * per_layer + u64::from(self.vocab_size) * d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_sizes_are_valid() {
        for cfg in [
            ModelConfig::GPT2_124M,
            ModelConfig::GPT2_355M,
            ModelConfig::GPT2_774M,
            ModelConfig::GPT2_1558M,
        ] {
            assert_eq!(cfg.validate(), Ok(()));
        }
    }

    #[test]
    fn rejects_heads_that_do_not_divide() {
        let cfg = ModelConfig { n_head: 5, ..ModelConfig::GPT2_124M };
        assert_eq!(cfg.validate(), Err(ConfigError::HeadsDontDivide { n_embd: 768, n_head: 5 }));
    }

    #[test]
    fn rejects_zero_and_huge_fields() {
        let cfg = ModelConfig { n_layer: 0, ..ModelConfig::GPT2_124M };
        assert_eq!(cfg.validate(), Err(ConfigError::Zero { field: "n_layer" }));
        let cfg = ModelConfig { vocab_size: u32::MAX, ..ModelConfig::GPT2_124M };
        assert!(matches!(cfg.validate(), Err(ConfigError::TooLarge { field: "vocab_size", .. })));
        let cfg = ModelConfig { layer_norm_epsilon: f32::NAN, ..ModelConfig::GPT2_124M };
        assert_eq!(cfg.validate(), Err(ConfigError::BadEpsilon));
    }

    #[test]
    fn counts_124m_multiply_adds() {
        // 85M block weights + 38.6M tied LM head.
        assert_eq!(ModelConfig::GPT2_124M.weight_macs_per_token(), 84_934_656 + 38_597_376);
    }
}
