//! What the fuzz targets share: the tiny model shape of the seeds, the run every opened pack
//! gets, and the GPT-2-vocabulary pack the tokenizer target edits.
//!
//! The property checked on every input: core returns (a typed error or a result) without
//! panicking, hanging or reading past the end of the file.

use std::sync::OnceLock;

use host_tools::faults::Recording;
use host_tools::pack::{PackOptions, pack};
use host_tools::synth;
use host_tools::tokenizer::Tokenizer;
use picogpt_core::format::{HEADER_BYTES, Header, MAX_TOKEN_BYTES};
use picogpt_core::{KvFormat, MatrixFormat, Model, ModelConfig, RamKv, TopK, WorkspaceSpec};

/// The seeds' model: one block of width 32, 8 positions, 300 tokens (no tokenizer).
pub const TINY: ModelConfig = ModelConfig {
    n_layer: 1,
    n_embd: 32,
    n_head: 2,
    n_ctx: 8,
    vocab_size: 300,
    layer_norm_epsilon: 1e-5,
};

/// Largest workspace a fuzzed pack may ask for before its forward pass is skipped.
const MAX_WORKSPACE_BYTES: usize = 64 << 20;

/// Rewrites the header's manifest CRC to match the manifest bytes, so that mutations reach
/// the parser behind the CRC check.
pub fn fix_manifest_crc(pack: &mut [u8]) {
    let Some(raw) = pack.get(..HEADER_BYTES) else { return };
    let (_, header) = Header::parse(raw.try_into().expect("16 bytes"));
    let end = HEADER_BYTES + header.manifest_len as usize;
    if let Some(manifest) = pack.get(HEADER_BYTES..end) {
        let crc = crc32fast::hash(manifest);
        pack[12..16].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Opens `pack` and, if it opens, checks every CRC, runs a two-token prompt and one more
/// step (CRC checks during the pass as `verify` says), and encodes and decodes a little text
/// when it has a tokenizer. Panics only if core reads past the end of the file or hands out a
/// non-finite logit.
pub fn exercise(pack: &[u8], verify: bool) {
    let mut storage = Recording::new(pack);
    run(&mut storage, verify);
    assert_eq!(storage.out_of_bounds(), None, "core read past the end of the file");
}

fn run(storage: &mut Recording<'_>, verify: bool) {
    let Ok(mut model) = Model::open(storage).map_err(|e| e.to_string()) else { return };
    let cfg = *model.config();
    let chunk = model.layout().max_unit_bytes().next_multiple_of(512).max(512);
    let spec = WorkspaceSpec::new(2, chunk);
    if model.workspace_bytes(&spec) > MAX_WORKSPACE_BYTES {
        return;
    }
    let mut mem = vec![0.0f32; model.workspace_bytes(&spec).div_ceil(4)];
    let Ok(mut ws) = model.workspace(&spec, &mut mem) else { return };
    let _ = model.verify_all(&mut ws).map_err(|e| e.to_string());
    let mut kv_mem = vec![0u8; RamKv::bytes_per_position(&cfg, KvFormat::F16) * 3];
    let mut kv = RamKv::new(&cfg, KvFormat::F16, &mut kv_mem);
    model.set_verify(verify);
    let last = cfg.vocab_size - 1;
    for (tokens, start) in [(&[0, last][..], 0), (&[last / 2][..], 2)] {
        let mut top = TopK::<3>::new();
        match model.forward(&mut ws, &mut kv, tokens, start, &mut top) {
            Ok(()) => assert!(top.candidates().iter().all(|c| c.logit.is_finite())),
            Err(e) => {
                let _ = e.to_string();
                break;
            }
        }
    }
    if let Some(head) = model.tokenizer().copied() {
        let text = "Hello, world! It's 2024 — naïve café 東京 🙂";
        let mut scratch = vec![0u32; 2 * text.len() + 2];
        let mut ids = vec![0u32; text.len()];
        let _ = model.encode(text.as_bytes(), &mut scratch, &mut ids).map_err(|e| e.to_string());
        let mut buf = [0u8; MAX_TOKEN_BYTES as usize];
        for id in [0, head.end_of_text, last] {
            let _ = model.token_bytes(id, &mut buf).map_err(|e| e.to_string());
        }
    }
}

/// A valid pack of a one-block model with GPT-2's vocabulary and tokenizer sections.
pub struct TokenizerPack {
    /// The file.
    pub bytes: Vec<u8>,
    /// File offset of the first tokenizer byte (the vocabulary section).
    pub start: usize,
    /// Byte ranges the tokenizer CRCs cover: the vocabulary and the index (the alignment
    /// padding between them is covered by none).
    pub covered: [std::ops::Range<usize>; 2],
    /// The host tokenizer (tiktoken's GPT-2) to compare core's encoder with.
    pub host: Tokenizer,
}

/// Builds the GPT-2-vocabulary pack once per process (synthetic weights, int8).
pub fn tokenizer_pack() -> &'static TokenizerPack {
    static PACK: OnceLock<TokenizerPack> = OnceLock::new();
    PACK.get_or_init(|| {
        let config = ModelConfig { vocab_size: 50257, ..TINY };
        let weights = synth::synthesize(config, 1).expect("synthesize");
        let host = Tokenizer::gpt2().expect("GPT-2 tokenizer");
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join("tokenizer.pgpt");
        let opts = PackOptions::new(MatrixFormat::Int8 { block: 32 }, true);
        pack(&weights, Some(&host), &opts, &path, |_, _, _| {}).expect("pack");
        let bytes = std::fs::read(&path).expect("read the pack");
        let model = Model::open(picogpt_core::SliceStorage::new(&bytes)).expect("open");
        let t = *model.tokenizer().expect("tokenizer sections");
        let (start, index) = (t.vocab_offset as usize, t.index_offset as usize);
        let covered = [start..start + t.vocab_len as usize, index..bytes.len()];
        TokenizerPack { bytes, start, covered, host }
    })
}
