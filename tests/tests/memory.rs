//! What a board's memory forces: one pass over the weights per step (the prompt included),
//! a KV cache split between RAM and storage, and the int8-activation path.

mod common;

use std::sync::OnceLock;

use common::*;
use host_tools::file_storage::{FileStorage, KvFile};
use host_tools::run::{RunOptions, run};
use picogpt_core::{
    Activations, KvFormat, MatrixFormat, Model, StorageKv, TensorId, TensorKind, WorkspaceSpec,
};

fn pack() -> &'static std::path::PathBuf {
    static PACK: OnceLock<std::path::PathBuf> = OnceLock::new();
    PACK.get_or_init(|| {
        Fixture::new("memory", TINY, 8).pack("int8", MatrixFormat::Int8 { block: 32 }, true)
    })
}

/// Bytes of all weights, and of `wte` (the LM head, read once per step whatever the batch).
fn weight_bytes() -> (u64, u64) {
    let model = Model::open(FileStorage::open(pack()).unwrap()).unwrap();
    let layout = model.layout();
    let wte = layout.weights_end() - layout.offset(TensorId::global(TensorKind::Wte));
    (layout.weights_end() - layout.data_start(), wte)
}

#[test]
fn a_prompt_costs_one_pass_over_the_weights() {
    let prompt: Vec<u32> = PROMPT.iter().copied().chain([464]).collect();
    let (weights, wte) = weight_bytes();
    let (weights, wte) = (weights as f64, wte as f64);
    let opts = |n| RunOptions { verify: false, ..RunOptions::new(prompt.clone(), n) };
    let one = run(pack(), &opts(1), |_| {}).unwrap().bytes_read as f64;
    let two = run(pack(), &opts(2), |_| {}).unwrap().bytes_read as f64;
    println!(
        "11-token prompt, -n 1: {:.3} × the weights; -n 2: {:.3} ×",
        one / weights,
        two / weights
    );
    assert!(one <= 1.05 * weights, "{one} bytes for {weights} bytes of weights");
    assert!((1.9 * weights..=2.1 * weights).contains(&two), "{two}");
    // One position per pass reads the blocks eleven times (the LM head still once).
    let slow = RunOptions { batch: 1, speculate: 0, ..opts(1) };
    let eleven = run(pack(), &slow, |_| {}).unwrap().bytes_read as f64;
    let expected = 11.0 * (weights - wte) + wte;
    // (`weights` counts wpe and the alignment padding, which are not read in full.)
    assert!((0.95 * expected..1.05 * expected).contains(&eleven), "{eleven} vs {expected}");
}

#[test]
fn a_kv_cache_that_outgrows_the_ram_budget_spills_without_changing_a_bit() {
    let model = Model::open(FileStorage::open(pack()).unwrap()).unwrap();
    let workspace = model.workspace_bytes(&WorkspaceSpec::new(PROMPT.len(), 65536));
    for kv in [KvFormat::F32, KvFormat::Int8] {
        let opts = RunOptions { kv, ..RunOptions::new(PROMPT.to_vec(), 12) };
        let all_ram = run(pack(), &opts, |_| {}).unwrap();
        let per_position = picogpt_core::kv::bytes_per_position(model.config(), kv);
        let record = StorageKv::<KvFile>::buffer_bytes(model.config(), kv);
        let budget = workspace + record + 5 * per_position;
        let tight = RunOptions { ram_budget: Some(budget), ..opts.clone() };
        let spilled = run(pack(), &tight, |_| {}).unwrap();
        let plan = spilled.kv.unwrap();
        assert_eq!(plan.ram_positions, 5, "{kv:?}: {plan:?}");
        assert_eq!(plan.spilled_positions, PROMPT.len() + 11 - 5);
        assert_eq!(spilled.steps, all_ram.steps, "{kv:?}: spilling changed the output");
    }
    let too_small = RunOptions { ram_budget: Some(workspace / 2), ..RunOptions::new(vec![1], 2) };
    let err = run(pack(), &too_small, |_| {}).unwrap_err();
    assert!(err.to_string().contains("less than the"), "{err}");
}

#[test]
fn int8_activations_stay_close_to_the_exact_path() {
    let exact = RunOptions::new(PROMPT.to_vec(), 6);
    let int8 = RunOptions { activations: Activations::Int8, ..exact.clone() };
    let a = run(pack(), &exact, |_| {}).unwrap();
    let b = run(pack(), &int8, |_| {}).unwrap();
    let worst = a.steps[0]
        .top
        .iter()
        .zip(&b.steps[0].top)
        .map(|(x, y)| (x.logit - y.logit).abs())
        .fold(0.0f32, f32::max);
    println!("first step: top-3 logits differ by at most {worst:.4}");
    assert!(worst < 1.0, "int8 activations moved a top logit by {worst}");
    assert_eq!(a.steps[0].token, b.steps[0].token);
}
