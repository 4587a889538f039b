//! `verify` and `eval` end to end: a good pack passes, a damaged one is named by its first
//! bad tensor or section with a non-zero exit, and eval's JSON holds the measured numbers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use host_tools::eval::EvalReport;
use picogpt_core::{Model, SliceStorage, TensorId, TensorKind};

fn host_tools(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_host-tools")).args(args).output().unwrap()
}

fn succeeds(args: &[&str]) -> String {
    let out = host_tools(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "host-tools {args:?} failed: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

fn fails(args: &[&str]) -> String {
    let out = host_tools(args);
    assert!(!out.status.success(), "host-tools {args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A one-block model with GPT-2's vocabulary, packed f32 and int8 (with tokenizer sections).
fn model() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("trust");
        let model = dir.join("model");
        let shape = ["--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--n-ctx", "32"];
        succeeds(&[&["synth", "--out", s(&model), "--seed", "3"][..], &shape].concat());
        for quant in ["f32", "int8"] {
            let pack = dir.join(format!("{quant}.pgpt"));
            succeeds(&["pack", s(&model), "-o", s(&pack), "--quant", quant]);
        }
        dir
    })
}

/// The int8 pack with one byte changed at `offset(model)`.
fn damaged(name: &str, offset: impl Fn(&Model<SliceStorage<'_>>) -> u64) -> PathBuf {
    let mut bytes = std::fs::read(model().join("int8.pgpt")).unwrap();
    let at = offset(&Model::open(SliceStorage::new(&bytes)).unwrap()) as usize;
    bytes[at] ^= 0x10;
    let path = model().join(format!("{name}.pgpt"));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn verify_passes_a_good_pack_and_names_the_first_bad_tensor_or_section() {
    let good = model().join("int8.pgpt");
    let out = succeeds(&["verify", s(&good)]);
    assert!(out.contains("ok: manifest, 16 tensors and both tokenizer sections"), "{out}");

    let c_fc = TensorId::layer(0, TensorKind::CFcWeight);
    let bad = damaged("bad-c_fc", |m| m.layout().offset(c_fc) + 77);
    let err = fails(&["verify", s(&bad)]);
    assert!(err.contains("bad-c_fc.pgpt: tensor h.0.mlp.c_fc.weight: CRC mismatch"), "{err}");

    let wpe = damaged("bad-wpe", |m| m.layout().offset(TensorId::global(TensorKind::Wpe)));
    let err = fails(&["verify", s(&wpe)]);
    assert!(err.contains("tensor wpe.weight: CRC mismatch"), "{err}");

    let vocab = damaged("bad-vocab", |m| m.tokenizer().unwrap().vocab_offset + 5000);
    let err = fails(&["verify", s(&vocab)]);
    assert!(err.contains("tokenizer vocabulary section: CRC mismatch"), "{err}");

    let index = damaged("bad-index", |m| m.tokenizer().unwrap().index_offset + 8 * 4000);
    let err = fails(&["verify", s(&index)]);
    assert!(err.contains("tokenizer index section: CRC mismatch"), "{err}");

    let bytes = std::fs::read(&good).unwrap();
    let cut = model().join("cut.pgpt");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let err = fails(&["verify", s(&cut)]);
    assert!(err.contains("pack is truncated"), "{err}");
}

#[test]
fn eval_prints_a_table_and_writes_json() {
    let dir = model();
    let (f32_pack, int8_pack, json) =
        (dir.join("f32.pgpt"), dir.join("int8.pgpt"), dir.join("eval.json"));
    let out =
        succeeds(&["eval", s(&dir.join("model")), s(&f32_pack), s(&int8_pack), "--json", s(&json)]);
    let passage =
        "data/kjv-ruth-1.txt (Ruth 1, held out of training): 238 tokens, reading the first 32";
    assert!(out.contains(passage), "{out}");
    assert!(out.contains("perplexity") && out.contains("int8 (blocks of 32)"), "{out}");
    let report = EvalReport::read(&json).unwrap();
    assert_eq!(report.tokens, 32);
    let [f32_q, int8_q] = &report.packs[..] else { panic!("{report:?}") };
    assert_eq!(f32_q.format, "f32");
    assert!(f32_q.mean_kl < 1e-8, "{}", f32_q.mean_kl);
    assert_eq!(f32_q.top1_agreement, 1.0);
    assert!(int8_q.mean_kl > f32_q.mean_kl && int8_q.mean_kl < 0.05, "{}", int8_q.mean_kl);

    let out = succeeds(&["eval", s(&dir.join("model")), s(&f32_pack), "--tokens", "464,3290,318"]);
    assert!(out.contains("--tokens: 3 tokens"), "{out}");
    let err = fails(&["eval", s(&dir.join("model")), s(&f32_pack), "--tokens", "464"]);
    assert!(err.contains("evaluation needs at least 2"), "{err}");
}

#[test]
fn eval_without_packs_packs_every_format_and_reads_every_activation_path() {
    let dir = model();
    let gettysburg = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/gettysburg.txt");
    let json = dir.join("eval-default.json");
    let out = succeeds(&["eval", s(&dir.join("model")), "--text", gettysburg, "--json", s(&json)]);
    assert!(out.contains("gettysburg.txt: 331 tokens, reading the first 32"), "{out}");
    let report = EvalReport::read(&json).unwrap();
    let runs: Vec<(&str, &str)> =
        report.packs.iter().map(|q| (q.format.as_str(), q.activations.as_str())).collect();
    let int4 = "int4 (blocks of 32), wte int8 (blocks of 32)";
    let (runs, compact) = runs.split_at(8);
    // The compact pack's formats are its own choice; every one is q4m-q6m.
    let paths: Vec<&str> = compact.iter().map(|r| r.1).collect();
    assert_eq!(paths, ["f32", "int16", "int8"], "{compact:?}");
    assert!(compact.iter().all(|r| r.0.starts_with('q') && r.0.contains("scale + min")));
    assert_eq!(
        runs,
        [
            ("f32", "f32"),
            ("f16", "f32"),
            ("int8 (blocks of 32)", "f32"),
            ("int8 (blocks of 32)", "int16"),
            ("int8 (blocks of 32)", "int8"),
            (int4, "f32"),
            (int4, "int16"),
            (int4, "int8"),
        ]
    );
    assert_eq!(report.packs[0].path, "(made here) model-f32.pgpt");
    assert!(report.packs[0].mean_kl < 1e-8, "{:?}", report.packs[0]);
    // The int8 activation path is a different computation: it moves the logits.
    assert!(report.packs[4].max_abs_logit_error != report.packs[2].max_abs_logit_error);
}

#[test]
fn eval_refuses_the_calibration_text() {
    let text = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/calibration-kjv-genesis.txt");
    let err = fails(&["eval", "--text", text]);
    assert!(err.contains("is the calibration text"), "{err}");
}

#[test]
fn eval_defaults_to_the_learned_model_and_its_held_out_passage() {
    let out = succeeds(&["eval"]);
    assert!(out.contains("weights/kjv-4x128"), "{out}");
    assert!(
        out.contains("data/kjv-ruth-1.txt (Ruth 1, held out of training): 238 tokens"),
        "{out}"
    );
    let rows = out.lines().filter(|l| l.starts_with("(made here) model-")).count();
    assert_eq!(rows, 11, "{out}");
    let compact = out.lines().filter(|l| l.starts_with("(made here) model-compact.pgpt")).count();
    assert_eq!(compact, 3, "{out}");
}
