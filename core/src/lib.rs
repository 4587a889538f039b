//! picoGPT on a microcontroller: the GPT-2 forward pass, `no_std`, streaming its weights.
//!
//! Weights arrive only through [`Storage`] (read `len` bytes at an offset) into a chunk
//! buffer the caller sizes, or are used in place when the storage is memory
//! ([`Storage::slice_at`]); activations live in a caller-provided [`Workspace`]; keys and
//! values in a [`KvCache`]. Each matrix's rows can be split between [`Workers`] (threads, a
//! second core) and the kernels swapped for faster ones ([`Kernels`]), all with the same bits. Nothing here allocates, panics on input, or depends on the
//! target for its arithmetic: the same pack and prompt give the same bits on x86-64 and on a
//! Cortex-M33.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod config;
pub mod display;
pub mod error;
pub mod format;
mod forward;
mod gelu;
pub mod kernels;
pub mod kv;
pub mod layout;
pub mod logits;
pub mod model;
pub mod pretokenize;
pub mod quant;
pub mod sample;
pub mod speculate;
pub mod storage;
mod stream;
pub mod tokenizer;
pub mod utf8;
pub mod workers;
pub mod workspace;

pub use config::{ConfigError, ModelConfig};
pub use error::{Error, FormatError, QuantError};
pub use format::{MatrixFormat, QuantScheme, TensorId, TensorKind};
pub use kernels::Kernels;
pub use kv::{KvCache, KvFormat, RamKv, StorageKv, StorageMut, TieredKv};
pub use layout::Layout;
pub use logits::{Candidate, LogitSink, TopK};
pub use model::Model;
pub use sample::{Choice, Picker, RandomSampling, Sampling};
pub use speculate::{Choose, Context, DraftSpec, Passes};
pub use storage::{SliceStorage, Storage};
pub use workers::{OneWorker, Workers};
pub use workspace::{Activations, Workspace, WorkspaceSpec};
