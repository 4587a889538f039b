//! One set of bits whatever computes them: every logit of a teacher-forced run is identical
//! for every kernel level this CPU has (portable, AVX2, AVX-512), any number of worker
//! threads, a memory-mapped pack or chunked reads of any size, for every weight format and
//! activation path.

mod common;

use std::path::Path;

use common::*;
use host_tools::cpu::{self, KernelLevel};
use host_tools::file_storage::FileStorage;
use host_tools::mapped::MappedFile;
use host_tools::threads::ThreadPool;
use picogpt_core::{Activations, KvFormat, MatrixFormat, Model, ModelConfig, RamKv, Storage};
use picogpt_core::{OneWorker, Workers, WorkspaceSpec};

/// Odd widths: an int8 row of 96 inputs is a pair of blocks and a single one.
const ODD: ModelConfig = ModelConfig { n_layer: 2, n_embd: 96, n_head: 4, ..TINY };

/// Steps of every run: the prompt in passes of `batch`, then three tokens one at a time.
fn all_logits<S: Storage>(
    storage: S,
    level: KernelLevel,
    workers: &mut dyn Workers,
    spec: WorkspaceSpec,
) -> Vec<u32>
where
    S::Error: std::fmt::Debug,
{
    let mut model = Model::open(storage).unwrap();
    model.set_kernels(cpu::kernels(level).unwrap());
    let cfg = *model.config();
    let mut mem = vec![0.0f32; model.workspace_bytes(&spec) / 4];
    let mut ws = model.workspace(&spec, &mut mem).unwrap();
    let mut kv_mem = vec![0u8; RamKv::bytes_per_position(&cfg, KvFormat::F32) * 16];
    let mut kv = RamKv::new(&cfg, KvFormat::F32, &mut kv_mem);
    let mut bits = Vec::new();
    let mut pos = 0;
    for (step, tokens) in
        [&PROMPT[..7], &PROMPT[7..8], &PROMPT[8..9], &PROMPT[9..10]].iter().enumerate()
    {
        model.set_verify(step == 0);
        let mut sink = AllLogits::default();
        model.forward_with(&mut ws, &mut kv, tokens, pos, &mut sink, workers).unwrap();
        bits.extend(sink.0.iter().map(|l| l.to_bits()));
        pos += tokens.len();
    }
    bits
}

fn check_pack(pack: &Path, activations: &[Activations]) {
    for &act in activations {
        let spec = |batch, chunk| WorkspaceSpec::new(batch, chunk).with_activations(act);
        let file = || FileStorage::open(pack).unwrap();
        let baseline = all_logits(file(), KernelLevel::Portable, &mut OneWorker, spec(3, 4096));
        let mut pools: Vec<ThreadPool> = (1..=3).map(|n| ThreadPool::new(n).unwrap()).collect();
        for level in cpu::levels() {
            let [one, two, three] = &mut pools[..] else { unreachable!() };
            let mapped = MappedFile::open(pack).unwrap();
            let runs = [
                ("mapped, 3 threads", all_logits(mapped, level, three, spec(7, 4096))),
                ("chunks of 1500, 2 threads", all_logits(file(), level, two, spec(1, 1500))),
                ("chunks of 4096, 1 thread", all_logits(file(), level, one, spec(2, 4096))),
            ];
            for (how, bits) in runs {
                assert_eq!(bits, baseline, "{}: {act:?}, {level:?} kernels, {how}", pack.display());
            }
        }
    }
}

#[test]
fn every_kernel_level_thread_count_and_storage_gives_the_same_bits() {
    for (name, config) in [("same-bits-64", TINY), ("same-bits-96", ODD)] {
        let fixture = Fixture::new(name, config, 5);
        let all = [Activations::F32, Activations::Int16, Activations::Int8];
        for (format, quant, activations) in [
            ("int8", MatrixFormat::Int8 { block: 32 }, &all[..]),
            ("int8-per-row", MatrixFormat::Int8 { block: 0 }, &all[1..2]),
            ("int4", MatrixFormat::Int4, &all[..]),
            ("q4m", MatrixFormat::Affine { bits: 4, block: 32 }, &all[..]),
            ("q5m-64", MatrixFormat::Affine { bits: 5, block: 64 }, &all[..]),
            ("q6m", MatrixFormat::Affine { bits: 6, block: 32 }, &all[..]),
            ("f16", MatrixFormat::F16, &all[..1]),
            ("f32", MatrixFormat::F32, &all[..1]),
        ] {
            if let MatrixFormat::Affine { block, .. } = quant
                && !config.n_embd.is_multiple_of(u32::from(block))
            {
                continue;
            }
            check_pack(&fixture.pack(format, quant, true), activations);
        }
    }
}
