//! Speculative decoding changes how many passes a text costs, never the text: a verifying
//! pass gives each position the bits a one-token pass gives it, rejected draft positions are
//! overwritten, and `run --speculate K` prints what `--speculate 0` prints.

mod common;

use common::{AllLogits, Fixture, PROMPT, TINY, argmax};
use host_tools::file_storage::FileStorage;
use host_tools::learned::KJV_4X128_DIR;
use host_tools::run::{DEFAULT_SPECULATE, Prompt, RunOptions, run};
use picogpt_core::speculate::{self, Choose};
use picogpt_core::{
    Activations, KvFormat, LogitSink, MatrixFormat, Model, RamKv, RandomSampling, Sampling,
    WorkspaceSpec,
};

/// A sink that keeps every logit and chooses the arg-max, as greedy decoding does.
#[derive(Default)]
struct Greedy(AllLogits);

impl LogitSink for Greedy {
    fn accept(&mut self, token: u32, logit: f32) {
        self.0.accept(token, logit);
    }
}

impl Choose for Greedy {
    fn chosen(&self) -> u32 {
        argmax(&self.0.0) as u32
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Plain greedy decoding, one token per pass: the tokens and every step's logits.
fn plain_greedy(
    model: &mut Model<FileStorage>,
    spec: WorkspaceSpec,
    kv: KvFormat,
    n: usize,
) -> (Vec<u32>, Vec<Vec<f32>>) {
    let cfg = *model.config();
    let mut mem = vec![0.0f32; model.workspace_bytes(&spec) / 4];
    let mut ws = model.workspace(&spec, &mut mem).unwrap();
    let mut kv_mem = vec![0u8; RamKv::bytes_per_position(&cfg, kv) * (PROMPT.len() + n)];
    let mut kv = RamKv::new(&cfg, kv, &mut kv_mem);
    let (mut tokens, mut logits) = (Vec::new(), Vec::new());
    let mut sink = AllLogits::default();
    model.forward(&mut ws, &mut kv, &PROMPT, 0, &mut sink).unwrap();
    for step in 1..n {
        let token = argmax(&sink.0) as u32;
        tokens.push(token);
        logits.push(std::mem::take(&mut sink.0));
        let pos = PROMPT.len() + step - 1;
        model.forward(&mut ws, &mut kv, &[token], pos, &mut sink).unwrap();
    }
    tokens.push(argmax(&sink.0) as u32);
    logits.push(sink.0);
    (tokens, logits)
}

/// A verifying pass fed the true continuation accepts all of it with the plain logits; a
/// wrong draft token is rejected, and the pass after it overwrites its KV position and
/// again gives the plain logits.
#[test]
fn verifying_passes_give_each_position_the_plain_bits() {
    let fixture = Fixture::new("speculate-each", TINY, 21);
    let cases = [
        ("f32", MatrixFormat::F32, Activations::F32, KvFormat::F32),
        ("int8", MatrixFormat::Int8 { block: 32 }, Activations::F32, KvFormat::Int8),
        ("int8-act", MatrixFormat::Int8 { block: 32 }, Activations::Int8, KvFormat::F16),
        ("int4", MatrixFormat::Int4, Activations::Int8, KvFormat::F32),
    ];
    for (name, format, activations, kv_format) in cases {
        let pack =
            fixture.pack(name, format, format != MatrixFormat::F32 && format != MatrixFormat::Int4);
        let mut model = Model::open(FileStorage::open(&pack).unwrap()).unwrap();
        let spec = WorkspaceSpec::new(6, 4096).with_activations(activations);
        let (tokens, plain) = plain_greedy(&mut model, spec, kv_format, 12);

        let cfg = *model.config();
        let mut mem = vec![0.0f32; model.workspace_bytes(&spec) / 4];
        let mut ws = model.workspace(&spec, &mut mem).unwrap();
        let mut kv_mem = vec![0u8; RamKv::bytes_per_position(&cfg, kv_format) * 40];
        let mut kv = RamKv::new(&cfg, kv_format, &mut kv_mem);
        let p = PROMPT.len();
        let mut first = AllLogits::default();
        model.forward(&mut ws, &mut kv, &PROMPT, 0, &mut first).unwrap();
        assert_eq!(bits(&first.0), bits(&plain[0]), "{name}: prompt pass");

        // Feed token 0 and draft tokens 1..=4: the true continuation.
        let mut sinks: Vec<Greedy> = (0..5).map(|_| Greedy::default()).collect();
        model.forward_each(&mut ws, &mut kv, &tokens[..5], p, &mut sinks).unwrap();
        for (j, sink) in sinks.iter().enumerate() {
            assert_eq!(bits(&sink.0.0), bits(&plain[j + 1]), "{name}: position {j} of the draft");
        }
        assert_eq!(speculate::accepted(&sinks, &tokens[1..5]), 4, "{name}");

        // Feed token 5 and a wrong draft: nothing accepted, the choice is token 6.
        let wrong = (tokens[6] + 1) % cfg.vocab_size;
        let mut sinks: Vec<Greedy> = (0..3).map(|_| Greedy::default()).collect();
        model
            .forward_each(&mut ws, &mut kv, &[tokens[5], wrong, wrong], p + 5, &mut sinks)
            .unwrap();
        assert_eq!(speculate::accepted(&sinks, &[wrong, wrong]), 0, "{name}");
        assert_eq!(sinks[0].chosen(), tokens[6], "{name}");

        // The rejected positions are overwritten by the next pass.
        let mut sinks: Vec<Greedy> = (0..2).map(|_| Greedy::default()).collect();
        model.forward_each(&mut ws, &mut kv, &tokens[6..8], p + 6, &mut sinks).unwrap();
        assert_eq!(bits(&sinks[0].0.0), bits(&plain[7]), "{name}: after a rejection");
        assert_eq!(bits(&sinks[1].0.0), bits(&plain[8]), "{name}: after a rejection");
    }
}

#[test]
fn a_draft_must_fit_one_pass_and_have_a_sink_per_token() {
    let fixture = Fixture::new("speculate-bounds", TINY, 22);
    let pack = fixture.pack("int8", MatrixFormat::Int8 { block: 32 }, true);
    let mut model = Model::open(FileStorage::open(&pack).unwrap()).unwrap();
    let cfg = *model.config();
    let spec = WorkspaceSpec::new(2, 4096);
    let mut mem = vec![0.0f32; model.workspace_bytes(&spec) / 4];
    let mut ws = model.workspace(&spec, &mut mem).unwrap();
    let mut kv_mem = vec![0u8; RamKv::bytes_per_position(&cfg, KvFormat::F32) * 8];
    let mut kv = RamKv::new(&cfg, KvFormat::F32, &mut kv_mem);
    let mut sinks: Vec<Greedy> = (0..3).map(|_| Greedy::default()).collect();
    let err = model.forward_each(&mut ws, &mut kv, &PROMPT[..3], 0, &mut sinks).unwrap_err();
    assert!(
        matches!(
            err,
            picogpt_core::Error::BufferTooSmall { what: "workspace batch", needed: 3, given: 2 }
        ),
        "{err:?}"
    );
    let err = model.forward_each(&mut ws, &mut kv, &PROMPT[..2], 0, &mut sinks).unwrap_err();
    assert!(matches!(err, picogpt_core::Error::ShapeMismatch { .. }), "{err:?}");
}

/// Runs `pack` with each draft length and checks every run against `--speculate 0`: the same
/// tokens, the same top-3 lines and logit bits. Returns the passes of the longest draft.
fn same_text_for_every_draft_length(
    pack: &std::path::Path,
    prompt: Prompt,
    n: usize,
    sampling: Sampling,
) -> host_tools::run::Passes {
    let base = RunOptions { sampling, speculate: 0, ..RunOptions::with_prompt(prompt, n) };
    let plain = run(pack, &base, |_| {}).unwrap();
    assert_eq!(plain.passes.unwrap().weight_passes, plain.steps.len());
    let mut last = None;
    for k in [1, 3, 8] {
        let opts = RunOptions { speculate: k, ..base.clone() };
        let fast = run(pack, &opts, |_| {}).unwrap();
        assert_eq!(fast.steps, plain.steps, "--speculate {k} on {}", pack.display());
        for (a, b) in fast.steps.iter().zip(&plain.steps) {
            let (a, b): (Vec<u32>, Vec<u32>) = (
                a.top.iter().map(|t| t.logit.to_bits()).collect(),
                b.top.iter().map(|t| t.logit.to_bits()).collect(),
            );
            assert_eq!(a, b);
        }
        let passes = fast.passes.unwrap();
        assert_eq!(
            passes.weight_passes + passes.accepted_tokens,
            fast.steps.len(),
            "--speculate {k}"
        );
        last = Some(passes);
    }
    last.unwrap()
}

#[test]
fn run_prints_the_same_with_and_without_drafts() {
    let fixture = Fixture::new("speculate-run", TINY, 23);
    let int8 = fixture.pack("int8", MatrixFormat::Int8 { block: 32 }, true);
    let f32_pack = fixture.pack("f32", MatrixFormat::F32, false);
    // A prompt that repeats itself, so drafts are proposed from the start.
    let repetitive: Vec<u32> = PROMPT.iter().chain(&PROMPT).chain(&PROMPT[..4]).copied().collect();
    for pack in [&int8, &f32_pack] {
        same_text_for_every_draft_length(
            pack,
            Prompt::Tokens(PROMPT.to_vec()),
            30,
            Sampling::Greedy,
        );
        let passes = same_text_for_every_draft_length(
            pack,
            Prompt::Tokens(repetitive.clone()),
            30,
            Sampling::Greedy,
        );
        assert!(passes.drafted_tokens > 0, "the repeated prompt drafts");
    }
    let sampled =
        Sampling::Random(RandomSampling { temperature: 0.8, top_k: 0, top_p: 0.95, seed: 9 });
    same_text_for_every_draft_length(&int8, Prompt::Tokens(repetitive), 30, sampled);
}

/// The learned model loops in greedy decoding, as small GPT-2s do: the drafts catch the loop
/// and a 64-token run costs well under one pass per token, for the same text, on one thread
/// or two.
#[test]
fn a_looping_greedy_run_costs_a_fraction_of_a_pass_per_token() {
    let fixture = Fixture::read("speculate-learned", std::path::Path::new(KJV_4X128_DIR));
    let pack = fixture.pack("int8", MatrixFormat::Int8 { block: 32 }, true);
    let prompt = Prompt::Text("And the king said unto".into());
    let plain = RunOptions { speculate: 0, ..RunOptions::with_prompt(prompt.clone(), 64) };
    let plain = run(&pack, &plain, |_| {}).unwrap();
    for threads in [1, 2] {
        let opts = RunOptions { threads, ..RunOptions::with_prompt(prompt.clone(), 64) };
        assert_eq!(opts.speculate, DEFAULT_SPECULATE);
        let fast = run(&pack, &opts, |_| {}).unwrap();
        assert_eq!(fast.steps, plain.steps, "{threads} threads");
        let passes = fast.passes.unwrap();
        let per_token = passes.weight_passes as f64 / fast.steps.len() as f64;
        assert!(per_token <= 0.6, "{per_token} passes per token: {passes:?}");
    }
}
