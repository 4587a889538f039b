//! Desktop tools around `picogpt-core`: checkpoint reading, synthesis, packing, reference.

pub mod bench;
pub mod board_model;
pub mod calibrate;
pub mod checkpoint;
pub mod compact;
pub mod cpu;
pub mod download;
pub mod eval;
pub mod faults;
pub mod file_storage;
pub mod guard;
pub mod hub;
pub mod learned;
pub mod mapped;
pub mod memory_rate;
pub mod pack;
pub mod partial;
pub mod prefetch;
pub mod reference;
pub mod report;
pub mod run;
pub mod synth;
pub mod threads;
pub mod tokenizer;
pub mod uf2;
pub mod weights;
