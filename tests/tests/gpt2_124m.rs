//! The full GPT-2 124M shape, on synthetic weights (12 × 768, 12 heads, n_ctx 1024, vocab
//! 50257). About a minute in release mode, so ignored by default; CI and the README run it:
//!
//! ```text
//! cargo test --release -p picogpt-tests --test gpt2_124m -- --ignored --nocapture
//! ```
//!
//! It prints, per pack format, the figures the int8 scheme was chosen by.

mod common;

use std::sync::OnceLock;

use common::*;
use host_tools::reference::{self, Generation};
use host_tools::run::{RunOptions, run};
use picogpt_core::{Activations, KvFormat, MatrixFormat, ModelConfig, WorkspaceSpec};

const STEPS: usize = 16;

/// Three prompts: the picoGPT seed sentence, a short one and a spread of ids.
fn prompts() -> Vec<Vec<u32>> {
    vec![PROMPT.to_vec(), vec![464, 3290, 318, 257], (0..12).map(|i| 1000 + i * 3989).collect()]
}

struct Case {
    prompt: Vec<u32>,
    generation: Generation,
}

fn fixture() -> &'static (Fixture, Vec<Case>) {
    static FIXTURE: OnceLock<(Fixture, Vec<Case>)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let fixture = Fixture::new("gpt2_124m", ModelConfig::GPT2_124M, 1);
        let cases = prompts()
            .into_iter()
            .map(|prompt| {
                let generation = reference::greedy(&fixture.weights, &prompt, STEPS).unwrap();
                Case { prompt, generation }
            })
            .collect();
        (fixture, cases)
    })
}

fn forced(case: &Case) -> Vec<u32> {
    let mut seq = case.prompt.clone();
    seq.extend(&case.generation.tokens()[..STEPS - 1]);
    seq
}

fn spec() -> WorkspaceSpec {
    WorkspaceSpec::new(16, 64 * 1024)
}

#[test]
#[ignore = "124M shape: about a minute; run with --ignored"]
fn f32_pack_matches_the_reference_everywhere() {
    let (fixture, cases) = fixture();
    let pack = fixture.pack("f32", MatrixFormat::F32, false);
    let mut worst = 0.0f32;
    for case in cases {
        let report = run(&pack, &RunOptions::new(case.prompt.clone(), STEPS), |_| {}).unwrap();
        assert_eq!(report.tokens(), case.generation.tokens(), "greedy tokens");
        let core = core_logits(&pack, &forced(case), case.prompt.len(), spec(), KvFormat::F32);
        for (step, (c, r)) in core.iter().zip(&case.generation.all_logits).enumerate() {
            for (i, (&x, &y)) in c.iter().zip(r).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-4 + 1e-3 * y.abs(),
                    "step {step}, token {i}: core {x}, reference {y}"
                );
            }
            worst = worst.max(max_abs_diff(c, r));
        }
    }
    println!(
        "124M f32: max |logit error| {worst:.3e}, greedy tokens identical on {} prompts",
        cases.len()
    );
}

/// Agreement of one pack with the reference over every teacher-forced step.
#[derive(Debug, Default)]
struct Agreement {
    steps: usize,
    top1: usize,
    top3_set: usize,
    max_err: f32,
    sum_err: f64,
    logits: usize,
}

fn agreement(pack: &std::path::Path, activations: Activations) -> Agreement {
    let (_, cases) = fixture();
    let mut a = Agreement::default();
    let spec = spec().with_activations(activations);
    for case in cases {
        let core = core_logits(pack, &forced(case), case.prompt.len(), spec, KvFormat::F32);
        for (c, r) in core.iter().zip(&case.generation.all_logits) {
            a.steps += 1;
            a.top1 += usize::from(argmax(c) == argmax(r));
            let (mut tc, mut tr) = (top_k(c, 3), top_k(r, 3));
            tc.sort_unstable();
            tr.sort_unstable();
            a.top3_set += usize::from(tc == tr);
            a.max_err = a.max_err.max(max_abs_diff(c, r));
            a.sum_err += c.iter().zip(r).map(|(x, y)| f64::from((x - y).abs())).sum::<f64>();
            a.logits += c.len();
        }
    }
    a
}

#[test]
#[ignore = "124M shape: about a minute; run with --ignored"]
fn int8_scheme_is_chosen_by_measured_error() {
    let (fixture, cases) = fixture();
    let (f32_act, int16_act, int8_act) = (Activations::F32, Activations::Int16, Activations::Int8);
    let schemes = [
        ("f16", MatrixFormat::F16, false, f32_act),
        ("int8 per row, no outliers", MatrixFormat::Int8 { block: 0 }, false, f32_act),
        ("int8 per row", MatrixFormat::Int8 { block: 0 }, true, f32_act),
        ("int8 blocks of 32, no outliers", MatrixFormat::Int8 { block: 32 }, false, f32_act),
        ("int8 blocks of 32", MatrixFormat::Int8 { block: 32 }, true, f32_act),
        ("int8 blocks of 64", MatrixFormat::Int8 { block: 64 }, true, f32_act),
        ("int8 blocks of 128", MatrixFormat::Int8 { block: 128 }, true, f32_act),
        ("int8/32, int8 activations", MatrixFormat::Int8 { block: 32 }, true, int8_act),
        ("int8/32, int16 activations", MatrixFormat::Int8 { block: 32 }, true, int16_act),
        ("int4, LM head int8", MatrixFormat::Int4, true, f32_act),
        ("int4, LM head int8, int8 act.", MatrixFormat::Int4, true, int8_act),
    ];
    println!(
        "{:<32} {:>12} {:>10} {:>10} {:>12} {:>12}",
        "scheme", "pack bytes", "top-1", "top-3 set", "max |err|", "mean |err|"
    );
    let mut results = Vec::new();
    for (i, (name, matrices, outliers, activations)) in schemes.iter().enumerate() {
        let pack = fixture.pack(&format!("scheme-{i}"), *matrices, *outliers);
        let a = agreement(&pack, *activations);
        let bytes = std::fs::metadata(&pack).unwrap().len();
        println!(
            "{:<32} {:>12} {:>5}/{:<4} {:>5}/{:<4} {:>12.4} {:>12.5}",
            name,
            bytes,
            a.top1,
            a.steps,
            a.top3_set,
            a.steps,
            a.max_err,
            a.sum_err / a.logits as f64
        );
        std::fs::remove_file(&pack).unwrap();
        results.push(a);
    }
    let steps = cases.len() * STEPS;
    let (f16, naive, chosen, int8_act) = (&results[0], &results[1], &results[4], &results[7]);
    let int16_act = &results[8];
    let mean = |a: &Agreement| a.sum_err / a.logits as f64;
    assert_eq!(f16.top1, steps, "f16 must keep every greedy pick");
    assert!(f16.max_err < 0.15, "f16 max logit error {}", f16.max_err);
    assert!(chosen.top1 * 100 >= steps * 85, "int8/32 keeps at least 85% of greedy picks");
    assert!(chosen.max_err < 2.5, "int8/32 max logit error {}", chosen.max_err);
    assert!(chosen.top1 > naive.top1, "int8/32 must keep more greedy picks than naive per-row");
    assert!(mean(chosen) * 2.0 < mean(naive), "int8/32 must halve naive per-row's mean error");
    // 8-bit activations cost fidelity on this model (measured 40/48, mean error 0.276, against
    // 44/48 and 0.192): they stay for comparison with W8A8 engines.
    assert!(int8_act.top1 * 100 >= steps * 75, "int8 activations keep at least 75% of picks");
    assert!(mean(int8_act) < 2.0 * mean(chosen), "int8 activations at most double the error");
    // 16-bit activations cost the boards what 8-bit ones do and keep the exact path's picks.
    assert!(int16_act.top1 + 1 >= chosen.top1, "int16 activations keep the exact path's picks");
    assert!(mean(int16_act) < 1.05 * mean(chosen), "int16 activations add under 5% error");
}
