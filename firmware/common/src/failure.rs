//! Why a generation failed: one variant per cause, each displayed as one line.

use core::fmt;

use picogpt_core::Error;

use crate::kv::{KvError, SpillError};
use crate::prompt::{MAX_PIECE_BYTES, MAX_PROMPT};
use crate::request::MAX_GENERATED;

/// Why a generation failed. `SE` is the pack storage's error, `PE` the spill storage's.
#[derive(Debug)]
pub enum Failure<SE, PE = SE> {
    /// Core rejected the pack or the request, or reading or the KV cache failed.
    Core(Error<SE, KvError<PE>>),
    /// `-n 0`.
    NothingToGenerate,
    /// More tokens asked for than [`MAX_GENERATED`].
    TooManyTokens {
        /// Tokens asked for.
        n: usize,
    },
    /// No prompt, and no tokenizer to start from `<|endoftext|>`.
    NoPrompt,
    /// The text encodes to more than the board's token buffer holds.
    TextTooLong {
        /// Tokens the buffer holds.
        max: usize,
    },
    /// A word of the text is longer than the board's BPE scratch covers.
    PieceTooLong,
    /// Prompt and generated tokens exceed the model's context.
    TooLong {
        /// Prompt tokens.
        prompt: usize,
        /// Tokens to generate.
        n: usize,
        /// Positions needed.
        needed: usize,
        /// The model's context.
        n_ctx: usize,
    },
    /// The model's working set is larger than the board's workspace.
    Workspace {
        /// Bytes the model needs at batch 1.
        needed: usize,
        /// Bytes the board has.
        available: usize,
    },
    /// The KV cache in RAM holds fewer positions than the request needs, and there is no
    /// storage to spill the rest to.
    KvCache {
        /// Positions needed.
        needed: usize,
        /// Positions the RAM holds.
        positions: usize,
        /// Bytes per position.
        position_bytes: usize,
        /// What to do about it.
        hint: &'static str,
    },
    /// The storage for the spilled KV positions could not be had.
    Spill(SpillError<PE>),
    /// The console refused a write.
    Console,
}

impl<SE, PE> From<Error<SE, KvError<PE>>> for Failure<SE, PE> {
    fn from(e: Error<SE, KvError<PE>>) -> Self {
        Self::Core(e)
    }
}

impl<SE, PE> From<Error<SE>> for Failure<SE, PE> {
    fn from(e: Error<SE>) -> Self {
        Self::Core(e.with_kv())
    }
}

impl<SE, PE> From<fmt::Error> for Failure<SE, PE> {
    fn from(_: fmt::Error) -> Self {
        Self::Console
    }
}

impl<SE: fmt::Display, PE: fmt::Display> fmt::Display for Failure<SE, PE> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Core(e) => write!(f, "{e}"),
            Self::NothingToGenerate => write!(f, "-n is 0: nothing to generate"),
            Self::TooManyTokens { n } => {
                write!(
                    f,
                    "-n {n} is more than the {MAX_GENERATED} tokens a board generates at once"
                )
            }
            Self::NoPrompt => {
                write!(f, "this pack has no tokenizer to start from <|endoftext|>: give token ids")
            }
            Self::TextTooLong { max } => {
                write!(f, "the prompt is more than {max} tokens (a board takes {MAX_PROMPT})")
            }
            Self::PieceTooLong => write!(
                f,
                "a word of the prompt is longer than the {MAX_PIECE_BYTES} bytes a board encodes"
            ),
            Self::TooLong { prompt, n, needed, n_ctx } => write!(
                f,
                "prompt of {prompt} tokens + {n} generated needs {needed} positions, n_ctx is {n_ctx}"
            ),
            Self::Workspace { needed, available } => write!(
                f,
                "model too large for this board's RAM: its working memory is {needed} bytes, \
                 the board has {available}"
            ),
            Self::KvCache { needed, positions, position_bytes, hint } => write!(
                f,
                "{needed} positions needed, the KV cache in RAM holds {positions} \
                 ({position_bytes} bytes each): {hint}"
            ),
            Self::Spill(e) => write!(f, "KV spill: {e}"),
            Self::Console => write!(f, "console write failed"),
        }
    }
}
