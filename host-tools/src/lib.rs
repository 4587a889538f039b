//! Desktop tools around `picogpt-core`: checkpoint reading, synthesis, packing, reference.

pub mod bench;
pub mod checkpoint;
pub mod cpu;
pub mod download;
pub mod eval;
pub mod faults;
pub mod file_storage;
pub mod hub;
pub mod mapped;
pub mod output;
pub mod pack;
pub mod prefetch;
pub mod reference;
pub mod report;
pub mod run;
pub mod synth;
pub mod threads;
pub mod tokenizer;
pub mod uf2;
pub mod weights;
