//! core against the independent float reference on a tiny synthetic GPT-2 (real vocabulary).
//!
//! Following llm.c's `test_gpt2`: print the first values and the largest difference, and hold
//! f32 to `|core − ref| ≤ 1e-4 + 1e-3·|ref|`. Quantized packs are held to a per-format bound
//! on the logit error, and must pick the reference's greedy token wherever the reference's
//! top-1/top-2 margin is more than twice that bound.

mod common;

use std::sync::OnceLock;

use common::*;
use host_tools::reference::{self, Generation};
use host_tools::run::{RunOptions, run};
use picogpt_core::{KvFormat, MatrixFormat, WorkspaceSpec};

const STEPS: usize = 8;

fn fixture() -> &'static (Fixture, Generation) {
    static FIXTURE: OnceLock<(Fixture, Generation)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let fixture = Fixture::new("core_vs_reference", TINY, 1);
        let generation = reference::greedy(&fixture.weights, &PROMPT, STEPS).unwrap();
        (fixture, generation)
    })
}

/// The prompt followed by every generated token but the last: what teacher forcing feeds.
fn forced_sequence(generation: &Generation) -> Vec<u32> {
    let mut seq = PROMPT.to_vec();
    seq.extend(&generation.tokens()[..STEPS - 1]);
    seq
}

fn default_spec() -> WorkspaceSpec {
    WorkspaceSpec::new(16, 4096)
}

#[test]
fn f32_pack_matches_the_reference_everywhere() {
    let (fixture, generation) = fixture();
    let pack = fixture.pack("f32", MatrixFormat::F32, false);
    let report = run(&pack, &RunOptions::new(PROMPT.to_vec(), STEPS), |_| {}).unwrap();
    assert_eq!(report.tokens(), generation.tokens(), "greedy tokens");

    let core = core_logits(
        &pack,
        &forced_sequence(generation),
        PROMPT.len(),
        default_spec(),
        KvFormat::F32,
    );
    let mut worst = 0.0f32;
    for (step, (c, r)) in core.iter().zip(&generation.all_logits).enumerate() {
        assert_eq!(c.len(), r.len());
        for (i, (&x, &y)) in c.iter().zip(r).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 + 1e-3 * y.abs(),
                "step {step}, token {i}: core {x}, reference {y}"
            );
        }
        worst = worst.max(max_abs_diff(c, r));
    }
    println!("first logits core {:?}", &core[0][..5]);
    println!("first logits ref  {:?}", &generation.all_logits[0][..5]);
    println!("f32: max |logit error| {worst:.3e} over {} steps", core.len());
}

/// Checks a quantized pack against the reference; returns the largest logit error.
fn check_quantized(name: &str, matrices: MatrixFormat, bound: f32) -> f32 {
    let (fixture, generation) = fixture();
    let pack = fixture.pack(name, matrices, true);
    let core = core_logits(
        &pack,
        &forced_sequence(generation),
        PROMPT.len(),
        default_spec(),
        KvFormat::F32,
    );
    let mut worst = 0.0f32;
    let (mut decided, mut agreed) = (0, 0);
    for (step, (c, r)) in core.iter().zip(&generation.all_logits).enumerate() {
        let err = max_abs_diff(c, r);
        worst = worst.max(err);
        let top = top_k(r, 4);
        if r[top[0]] - r[top[1]] > 2.0 * bound {
            decided += 1;
            assert_eq!(argmax(c), top[0], "{name} step {step}: greedy pick differs");
        }
        if r[top[2]] - r[top[3]] > 2.0 * bound {
            let mut want = top[..3].to_vec();
            let mut got = top_k(c, 3);
            want.sort_unstable();
            got.sort_unstable();
            assert_eq!(got, want, "{name} step {step}: top-3 set differs");
        }
        agreed += usize::from(argmax(c) == top[0]);
    }
    println!(
        "{name}: max |logit error| {worst:.4} (bound {bound}); greedy agreement {agreed}/{} steps, \
         {decided} decided by more than 2x the bound",
        core.len()
    );
    assert!(worst <= bound, "{name}: logit error {worst} exceeds {bound}");
    worst
}

#[test]
fn f16_pack_stays_within_its_error_bound() {
    check_quantized("f16", MatrixFormat::F16, 0.05);
}

#[test]
fn int8_pack_stays_within_its_error_bound() {
    check_quantized("int8", MatrixFormat::Int8 { block: 32 }, 1.0);
}

#[test]
fn int4_pack_stays_within_its_error_bound() {
    // int4 (Q4_0-like) is coarse on a model this narrow: a loose bound, measured 8.3.
    check_quantized("int4", MatrixFormat::Int4, 12.0);
}

#[test]
fn scale_and_minimum_packs_stay_within_their_error_bounds() {
    // Random weights at this width: looser than int8, tighter than int4 (bounds from
    // measurement, about 1.5x what each width showed).
    let q4 = check_quantized("q4m", MatrixFormat::Affine { bits: 4, block: 32 }, 12.0);
    let q6 = check_quantized("q6m-64", MatrixFormat::Affine { bits: 6, block: 64 }, 4.5);
    assert!(q6 < q4, "q6m error {q6} not below q4m's {q4}");
}

#[test]
fn keeping_lm_head_outliers_in_f16_cuts_the_logit_error() {
    let (fixture, generation) = fixture();
    let seq = forced_sequence(generation);
    let with = fixture.pack("int8-outliers", MatrixFormat::Int8 { block: 32 }, true);
    let without = fixture.pack("int8-plain", MatrixFormat::Int8 { block: 32 }, false);
    let err = |pack| {
        let core = core_logits(pack, &seq, PROMPT.len(), default_spec(), KvFormat::F32);
        core.iter().zip(&generation.all_logits).map(|(c, r)| max_abs_diff(c, r)).fold(0.0, f32::max)
    };
    let (e_with, e_without) = (err(&with), err(&without));
    println!(
        "int8 max |logit error|: {e_with:.4} with f32 outlier channels, {e_without:.4} without"
    );
    assert!(e_with * 2.0 < e_without, "outlier channels should at least halve the error");
}

#[test]
fn batched_prefill_gives_the_same_bits_as_one_position_per_pass() {
    let (fixture, generation) = fixture();
    let pack = fixture.pack("int8-batch", MatrixFormat::Int8 { block: 32 }, true);
    let seq = forced_sequence(generation);
    let one = core_logits(&pack, &seq, PROMPT.len(), WorkspaceSpec::new(1, 4096), KvFormat::F32);
    let all = core_logits(&pack, &seq, PROMPT.len(), WorkspaceSpec::new(10, 4096), KvFormat::F32);
    let three = core_logits(&pack, &seq, PROMPT.len(), WorkspaceSpec::new(3, 4096), KvFormat::F32);
    assert!(one == all && one == three, "batch size changed the logits");
}

#[test]
fn chunk_size_does_not_change_a_bit() {
    let (fixture, generation) = fixture();
    let seq = forced_sequence(generation);
    for (name, matrices) in [
        ("f16-chunks", MatrixFormat::F16),
        ("int8-chunks", MatrixFormat::Int8 { block: 32 }),
        ("int4-chunks", MatrixFormat::Int4),
        ("q5m-chunks", MatrixFormat::Affine { bits: 5, block: 64 }),
    ] {
        let pack = fixture.pack(name, matrices, true);
        let logits = |chunk_bytes| {
            core_logits(
                &pack,
                &seq,
                PROMPT.len(),
                WorkspaceSpec::new(4, chunk_bytes),
                KvFormat::F32,
            )
        };
        let reference = logits(65536);
        for chunk_bytes in [128, 512, 1000, 4096] {
            assert!(
                logits(chunk_bytes) == reference,
                "{name}: chunk of {chunk_bytes} bytes changed the logits"
            );
        }
    }
}

#[test]
fn reduced_precision_kv_caches_stay_close_to_f32() {
    let (fixture, generation) = fixture();
    let pack = fixture.pack("f32-kv", MatrixFormat::F32, false);
    let seq = forced_sequence(generation);
    let exact = core_logits(&pack, &seq, PROMPT.len(), default_spec(), KvFormat::F32);
    for (format, bound) in [(KvFormat::F16, 0.02), (KvFormat::Int8, 0.3)] {
        let approx = core_logits(&pack, &seq, PROMPT.len(), default_spec(), format);
        let err = exact.iter().zip(&approx).map(|(a, b)| max_abs_diff(a, b)).fold(0.0, f32::max);
        println!("{format:?} KV cache: max |logit change| {err:.4}");
        assert!(err <= bound, "{format:?} KV: {err} > {bound}");
    }
}
