//! `eval` on the tiny synthetic model: an f32 pack is the reference to within rounding, an
//! int8 pack is measurably but boundedly worse, and mismatched inputs are typed errors.

mod common;

use std::sync::OnceLock;

use common::*;
use host_tools::eval::{EvalError, EvalOptions, GETTYSBURG, PackQuality, Reference, eval_pack};
use host_tools::tokenizer::Tokenizer;
use picogpt_core::{MatrixFormat, ModelConfig};

struct Setup {
    fixture: Fixture,
    reference: Reference,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let fixture = Fixture::new("eval", TINY, 11);
        let mut tokens = Tokenizer::gpt2().unwrap().encode(GETTYSBURG);
        assert!(tokens.len() > 300, "{}", tokens.len());
        tokens.truncate(TINY.n_ctx as usize);
        let reference = Reference::new(&fixture.weights, &tokens).unwrap();
        Setup { fixture, reference }
    })
}

fn quality(name: &str, matrices: MatrixFormat) -> PackQuality {
    let Setup { fixture, reference } = setup();
    let pack = fixture.pack(name, matrices, true);
    let mut seen = 0;
    let q = eval_pack(&pack, reference, &EvalOptions::default(), |done, total| {
        assert_eq!((done, total), (seen + 1, reference.tokens().len()));
        seen = done;
    })
    .unwrap();
    println!("{name}: {q:?}");
    assert_eq!(q.positions, reference.tokens().len());
    assert_eq!(q.file_bytes, std::fs::metadata(&pack).unwrap().len());
    q
}

#[test]
fn an_f32_pack_is_the_reference() {
    let q = quality("f32", MatrixFormat::F32);
    assert_eq!(q.format, "f32");
    assert!(q.mean_kl < 1e-8 && q.max_kl < 1e-7, "KL {} / {}", q.mean_kl, q.max_kl);
    assert!((q.perplexity_ratio - 1.0).abs() < 1e-5, "{}", q.perplexity_ratio);
    assert_eq!((q.top1_agreement, q.top3_agreement), (1.0, 1.0));
    assert!(q.max_abs_logit_error < 0.01, "{}", q.max_abs_logit_error);
}

#[test]
fn an_int8_pack_is_close_but_measurably_not_the_reference() {
    let f16 = quality("f16", MatrixFormat::F16);
    let int8 = quality("int8", MatrixFormat::Int8 { block: 32 });
    assert_eq!(int8.format, "int8 (blocks of 32)");
    assert!(int8.mean_kl > f16.mean_kl, "int8 {} vs f16 {}", int8.mean_kl, f16.mean_kl);
    assert!(int8.mean_kl < 0.02 && int8.max_kl < 0.1, "KL {} / {}", int8.mean_kl, int8.max_kl);
    assert!((int8.perplexity_ratio - 1.0).abs() < 0.02, "{}", int8.perplexity_ratio);
    assert!(int8.top1_agreement >= 0.85, "{}", int8.top1_agreement);
    assert!(int8.max_abs_logit_error > f16.max_abs_logit_error);
    assert!(int8.file_bytes < f16.file_bytes);
}

#[test]
fn mismatched_inputs_are_typed_errors() {
    let Setup { fixture, reference } = setup();
    let err = Reference::new(&fixture.weights, &[464]).unwrap_err();
    assert!(matches!(err, EvalError::TooFewTokens { found: 1 }), "{err}");
    let long = vec![464; TINY.n_ctx as usize + 1];
    let err = Reference::new(&fixture.weights, &long).unwrap_err();
    assert!(matches!(err, EvalError::TooLong { found: 65, n_ctx: 64 }), "{err}");

    let other = Fixture::new("eval_other", ModelConfig { n_layer: 1, ..TINY }, 11);
    let pack = other.pack("f32", MatrixFormat::F32, false);
    let err = eval_pack(&pack, reference, &EvalOptions::default(), |_, _| {}).unwrap_err();
    assert!(matches!(err, EvalError::ConfigMismatch { .. }), "{err}");
    assert!(err.to_string().contains("eval_other/f32.pgpt"), "{err}");
}
