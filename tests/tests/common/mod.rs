//! Fixtures shared by the integration tests: synthetic checkpoints, their packs, and core
//! runs that record every logit.
#![allow(dead_code)]

pub mod corpus;
pub mod firmware;

use std::path::{Path, PathBuf};

use host_tools::checkpoint::{self, WriteOptions};
use host_tools::file_storage::FileStorage;
use host_tools::pack::{PackOptions, pack};
use host_tools::synth;
use host_tools::tokenizer::Tokenizer;
use host_tools::weights::Gpt2Weights;
use picogpt_core::format::{ALIGNMENT, HEADER_BYTES, Header, ManifestHead, TensorEntry};
use picogpt_core::{KvFormat, LogitSink, MatrixFormat, Model, ModelConfig, RamKv, WorkspaceSpec};

/// The tiny shape every `cargo test` runs: real vocabulary, 2 blocks of width 64.
pub const TINY: ModelConfig = ModelConfig {
    n_layer: 2,
    n_embd: 64,
    n_head: 4,
    n_ctx: 64,
    vocab_size: 50257,
    layer_norm_epsilon: 1e-5,
};

/// "Alan Turing theorized that computers would one day become" in GPT-2 tokens.
pub const PROMPT: [u32; 10] = [36235, 39141, 18765, 1143, 326, 9061, 561, 530, 1110, 1716];

/// A checkpoint on disk (synthetic, or one shipped in `weights/`) with its packs.
pub struct Fixture {
    /// Folder holding the packs (and, for a synthetic checkpoint, config.json and
    /// model.safetensors).
    pub dir: PathBuf,
    /// Folder holding config.json and model.safetensors.
    pub checkpoint: PathBuf,
    /// The weights as synthesized or read.
    pub weights: Gpt2Weights,
}

impl Fixture {
    /// Synthesizes `config` from `seed` into `CARGO_TARGET_TMPDIR/<name>` (rewritten each run,
    /// so it always reflects the current code).
    pub fn new(name: &str, config: ModelConfig, seed: u64) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let weights = synth::synthesize(config, seed).unwrap();
        checkpoint::write(&dir, &weights, &WriteOptions::default()).unwrap();
        Self { checkpoint: dir.clone(), dir, weights }
    }

    /// Reads the checkpoint in `checkpoint` (e.g. one shipped in `weights/`, left untouched);
    /// its packs go to `CARGO_TARGET_TMPDIR/<name>`.
    pub fn read(name: &str, checkpoint: &Path) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let weights = checkpoint::load(checkpoint).unwrap();
        Self { dir, checkpoint: checkpoint.to_owned(), weights }
    }

    /// Packs the checkpoint (read back from disk, as a user would) into `<name>.pgpt`.
    pub fn pack(&self, name: &str, matrices: MatrixFormat, lm_head_outliers: bool) -> PathBuf {
        self.pack_with(name, &PackOptions::new(matrices, lm_head_outliers))
    }

    /// Packs the checkpoint with `opts` into `<name>.pgpt`.
    pub fn pack_with(&self, name: &str, opts: &PackOptions) -> PathBuf {
        let weights = checkpoint::load(&self.checkpoint).unwrap();
        let tokenizer = Tokenizer::for_pack(&self.checkpoint, weights.config.vocab_size).unwrap();
        let out = self.dir.join(format!("{name}.pgpt"));
        pack(&weights, tokenizer.as_ref(), opts, &out, |_, _, _| {}).unwrap();
        out
    }
}

/// Collects every logit of one step.
#[derive(Default)]
pub struct AllLogits(pub Vec<f32>);

impl LogitSink for AllLogits {
    fn accept(&mut self, token: u32, logit: f32) {
        assert_eq!(token as usize, self.0.len(), "logits arrive in token order");
        self.0.push(logit);
    }
}

/// Runs core over `tokens` teacher-forced: the logits after `tokens[..prompt]`, then after
/// each following token. Returns one full logit vector per step.
pub fn core_logits(
    pack: &Path,
    tokens: &[u32],
    prompt: usize,
    spec: WorkspaceSpec,
    kv_format: KvFormat,
) -> Vec<Vec<f32>> {
    let mut model = Model::open(FileStorage::open(pack).unwrap()).unwrap();
    let cfg = *model.config();
    let mut mem = vec![0.0f32; model.workspace_bytes(&spec) / 4];
    let mut ws = model.workspace(&spec, &mut mem).unwrap();
    let mut kv_mem = vec![0u8; RamKv::bytes_per_position(&cfg, kv_format) * tokens.len()];
    let mut kv = RamKv::new(&cfg, kv_format, &mut kv_mem);
    model.set_verify(true);
    let mut steps = Vec::new();
    let mut sink = AllLogits::default();
    model.forward(&mut ws, &mut kv, &tokens[..prompt], 0, &mut sink).unwrap();
    steps.push(sink.0);
    for pos in prompt..tokens.len() {
        let mut sink = AllLogits::default();
        model.forward(&mut ws, &mut kv, &tokens[pos..=pos], pos, &mut sink).unwrap();
        steps.push(sink.0);
    }
    steps
}

/// Index of the largest value (lowest index on ties).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// The `k` largest values' indices, best first.
pub fn top_k(v: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// Largest |a − b| over two equally long vectors.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Decodes the manifest, lets `edit` change it, and writes it back with the header's length
/// and CRC made to match, so the parser sees the edited fields.
pub fn rewrite_manifest(
    bytes: &[u8],
    edit: impl FnOnce(&mut ManifestHead, &mut Vec<TensorEntry>),
) -> Vec<u8> {
    let (_, header) = Header::parse(bytes[..HEADER_BYTES].try_into().unwrap());
    let end = HEADER_BYTES + header.manifest_len as usize;
    let (mut head, mut rest): (ManifestHead, &[u8]) =
        postcard::take_from_bytes(&bytes[HEADER_BYTES..end]).unwrap();
    let mut entries = Vec::new();
    for _ in 0..head.tensor_count {
        let (entry, tail) = postcard::take_from_bytes::<TensorEntry>(rest).unwrap();
        entries.push(entry);
        rest = tail;
    }
    edit(&mut head, &mut entries);
    let mut manifest = postcard::to_allocvec(&head).unwrap();
    for e in &entries {
        manifest.extend(postcard::to_allocvec(e).unwrap());
    }
    let data_start = end.next_multiple_of(ALIGNMENT as usize);
    assert!(HEADER_BYTES + manifest.len() <= data_start, "the edit overran the padding");
    let mut out = bytes.to_vec();
    out[HEADER_BYTES..data_start].fill(0);
    out[HEADER_BYTES..HEADER_BYTES + manifest.len()].copy_from_slice(&manifest);
    let header = Header {
        manifest_len: manifest.len() as u32,
        manifest_crc: crc32fast::hash(&manifest),
        ..header
    };
    out[..HEADER_BYTES].copy_from_slice(&header.to_bytes());
    out
}
