//! Bad input never panics: each case is a typed error that names the problem.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;
use host_tools::file_storage::FileStorage;
use host_tools::run::{RunError, RunOptions, run};
use picogpt_core::format::{FORMAT_VERSION, HEADER_BYTES};
use picogpt_core::{
    ConfigError, Error, FormatError, KvFormat, MatrixFormat, Model, RamKv, SliceStorage, TensorId,
    TensorKind, TopK, WorkspaceSpec,
};

fn pack_bytes() -> &'static (PathBuf, Vec<u8>) {
    static PACK: OnceLock<(PathBuf, Vec<u8>)> = OnceLock::new();
    PACK.get_or_init(|| {
        let fixture = Fixture::new("bad_input", TINY, 2);
        let path = fixture.pack("int8", MatrixFormat::Int8 { block: 32 }, true);
        let bytes = std::fs::read(&path).unwrap();
        (fixture.dir, bytes)
    })
}

fn open(bytes: &[u8]) -> Result<Model<SliceStorage<'_>>, Error<std::convert::Infallible>> {
    Model::open(SliceStorage::new(bytes))
}

fn format_error(bytes: &[u8]) -> FormatError {
    match open(bytes) {
        Err(Error::Format(e)) => e,
        Err(other) => panic!("expected a format error, got {other}"),
        Ok(_) => panic!("a bad pack opened"),
    }
}

#[test]
fn truncated_packs_say_how_many_bytes_they_need() {
    let (_, bytes) = pack_bytes();
    for len in [0, 10, 100, 2000, bytes.len() / 2, bytes.len() - 1] {
        match format_error(&bytes[..len]) {
            FormatError::Truncated { found, needed } => {
                assert_eq!(found, len as u64);
                assert!(needed > found);
            }
            other => panic!("length {len}: expected Truncated, got {other}"),
        }
    }
}

#[test]
fn wrong_magic_and_version_are_named() {
    let (_, bytes) = pack_bytes();
    let mut bad = bytes.clone();
    bad[..4].copy_from_slice(b"GGUF");
    assert_eq!(format_error(&bad), FormatError::BadMagic { found: *b"GGUF" });
    // Too short for a header, and not the start of a pack either: not a pack, not "truncated".
    assert_eq!(format_error(b"hello!"), FormatError::BadMagic { found: *b"hell" });
    let mut bad = bytes.clone();
    bad[4..8].copy_from_slice(&7u32.to_le_bytes());
    let err = format_error(&bad);
    assert_eq!(err, FormatError::UnsupportedVersion { found: 7, supported: FORMAT_VERSION });
    assert!(err.to_string().contains("version 7"), "{err}");
    // A pack from before the current layout says what to do about it.
    let mut old = bytes.clone();
    old[4..8].copy_from_slice(&(FORMAT_VERSION - 1).to_le_bytes());
    let err = format_error(&old).to_string();
    assert!(err.contains("is older than this build's") && err.contains("re-pack"), "{err}");
}

#[test]
fn a_flipped_manifest_byte_fails_its_crc() {
    let (_, bytes) = pack_bytes();
    let mut bad = bytes.clone();
    bad[HEADER_BYTES + 3] ^= 0x40;
    assert!(matches!(format_error(&bad), FormatError::ManifestCrc { .. }));
}

#[test]
fn a_flipped_weight_byte_is_caught_by_its_tensor_crc() {
    let (_, bytes) = pack_bytes();
    let target = TensorId::layer(1, TensorKind::CFcWeight);
    let offset = open(bytes).unwrap().layout().offset(target) as usize;
    let mut bad = bytes.clone();
    bad[offset + 100] ^= 0x01;
    let mut model = open(&bad).unwrap();
    let spec = WorkspaceSpec::new(2, 4096);
    let mut mem = vec![0.0f32; model.workspace_bytes(&spec) / 4];
    let mut ws = model.workspace(&spec, &mut mem).unwrap();
    match model.verify_all(&mut ws) {
        Err(Error::Format(FormatError::Crc { tensor, .. })) => assert_eq!(tensor, target),
        other => panic!("expected a CRC error, got {other:?}"),
    }
    let cfg = *model.config();
    let mut kv_mem = vec![0u8; RamKv::bytes_per_position(&cfg, KvFormat::F32) * 4];
    let mut kv = RamKv::new(&cfg, KvFormat::F32, &mut kv_mem);
    model.set_verify(true);
    let err = model.forward(&mut ws, &mut kv, &PROMPT[..2], 0, &mut TopK::<3>::new()).unwrap_err();
    assert!(err.to_string().contains("h.1.mlp.c_fc.weight"), "{err}");
    // Without checks the same pass runs to a finite result.
    model.set_verify(false);
    let mut top = TopK::<3>::new();
    model.forward(&mut ws, &mut kv, &PROMPT[..2], 0, &mut top).unwrap();
    assert!(top.candidates().iter().all(|c| c.logit.is_finite()));
}

#[test]
fn table_entries_that_disagree_with_the_config_are_named() {
    let (_, bytes) = pack_bytes();
    let bad = rewrite_manifest(bytes, |_, entries| entries[9].rows += 1);
    let err = format_error(&bad);
    assert_eq!(
        err,
        FormatError::TensorField {
            tensor: TensorId::layer(0, TensorKind::CFcWeight),
            field: "rows",
            expected: 256,
            found: 257
        }
    );
    assert!(err.to_string().contains("h.0.mlp.c_fc.weight: rows is 257, expected 256"), "{err}");

    let bad = rewrite_manifest(bytes, |_, entries| entries.swap(3, 4));
    assert!(matches!(format_error(&bad), FormatError::WrongTensor { index: 3, .. }));
}

#[test]
fn heads_that_do_not_divide_n_embd_are_rejected() {
    let (_, bytes) = pack_bytes();
    let bad = rewrite_manifest(bytes, |head, _| head.config.n_head = 5);
    let err = format_error(&bad);
    assert_eq!(err, FormatError::Config(ConfigError::HeadsDontDivide { n_embd: 64, n_head: 5 }));
    assert!(err.to_string().contains("n_embd 64 is not divisible by n_head 5"), "{err}");
}

#[test]
fn prompts_longer_than_the_context_fail_before_any_work() {
    let (dir, _) = pack_bytes();
    let pack = dir.join("int8.pgpt");
    let prompt: Vec<u32> = (0..60).collect();
    match run(&pack, &RunOptions::new(prompt.clone(), 10), |_| panic!("no step may run")) {
        Err(RunError::TooLong { needed: 69, n_ctx: 64, .. }) => {}
        other => panic!("expected TooLong, got {other:?}"),
    }
    let mut model = Model::open(FileStorage::open(&pack).unwrap()).unwrap();
    let before = model.bytes_read();
    let spec = WorkspaceSpec::new(4, 4096);
    let mut mem = vec![0.0f32; model.workspace_bytes(&spec) / 4];
    let mut ws = model.workspace(&spec, &mut mem).unwrap();
    let cfg = *model.config();
    let mut kv_mem = vec![0u8; RamKv::bytes_per_position(&cfg, KvFormat::F16) * 80];
    let mut kv = RamKv::new(&cfg, KvFormat::F16, &mut kv_mem);
    let long: Vec<u32> = (0..65).collect();
    let err = model.forward(&mut ws, &mut kv, &long, 0, &mut TopK::<3>::new()).unwrap_err();
    assert!(
        matches!(err, Error::ContextFull { needed: 65, available: 64, limit: "n_ctx" }),
        "{err}"
    );
    assert_eq!(model.bytes_read(), before, "rejected before reading weights");
}

#[test]
fn small_buffers_and_bad_tokens_are_typed_errors() {
    let (_, bytes) = pack_bytes();
    let mut model = open(bytes).unwrap();
    let spec = WorkspaceSpec::new(2, 4096);
    let needed = model.workspace_bytes(&spec);
    let mut small = vec![0.0f32; needed / 4 - 1];
    assert!(matches!(
        model.workspace(&spec, &mut small),
        Err(Error::BufferTooSmall { what: "workspace", needed: n, .. }) if n == needed
    ));
    let tiny_chunk = WorkspaceSpec::new(1, 16);
    let mut mem = vec![0.0f32; model.workspace_bytes(&tiny_chunk) / 4];
    assert!(matches!(
        model.workspace(&tiny_chunk, &mut mem),
        Err(Error::BufferTooSmall { what: "chunk buffer", .. })
    ));

    let mut mem = vec![0.0f32; needed / 4];
    let mut ws = model.workspace(&spec, &mut mem).unwrap();
    let cfg = *model.config();
    let mut kv_mem = vec![0u8; RamKv::bytes_per_position(&cfg, KvFormat::Int8) * 3];
    let mut kv = RamKv::new(&cfg, KvFormat::Int8, &mut kv_mem);
    let err = model.forward(&mut ws, &mut kv, &PROMPT[..4], 0, &mut TopK::<3>::new()).unwrap_err();
    assert!(
        matches!(err, Error::ContextFull { needed: 4, available: 3, limit: "KV cache" }),
        "{err}"
    );
    let err = model.forward(&mut ws, &mut kv, &[50257], 0, &mut TopK::<3>::new()).unwrap_err();
    assert_eq!(err.to_string(), "token 50257 is outside the vocabulary of 50257");
    let err = model.forward(&mut ws, &mut kv, &[], 0, &mut TopK::<3>::new()).unwrap_err();
    assert!(matches!(err, Error::EmptyInput));
}

#[test]
fn a_missing_pack_file_names_its_path() {
    let missing = Path::new("/nonexistent/model.pgpt");
    let err = run(missing, &RunOptions::new(vec![1], 1), |_| {}).unwrap_err();
    assert!(err.to_string().starts_with("/nonexistent/model.pgpt: "), "{err}");
}

#[test]
fn a_failed_pack_leaves_no_file_behind() {
    use host_tools::pack::{PackError, PackOptions, pack};
    let (dir, _) = pack_bytes();
    let weights = host_tools::checkpoint::load(dir).unwrap();
    let partials = || {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".partial"))
            .count()
    };
    let opts = PackOptions::new(MatrixFormat::Int8 { block: 32 }, true);
    // Everything is written, then the final rename onto a non-empty folder fails.
    let occupied = dir.join("occupied.pgpt");
    std::fs::create_dir_all(occupied.join("inside")).unwrap();
    let err = pack(&weights, None, &opts, &occupied, |_, _, _| {}).unwrap_err();
    assert!(matches!(err, PackError::Io { .. }), "{err}");
    assert!(err.to_string().contains("occupied.pgpt"), "{err}");
    assert_eq!(partials(), 0, "the temporary file must be removed");

    let bad_block = PackOptions::new(MatrixFormat::Int8 { block: 48 }, true);
    let out = dir.join("never.pgpt");
    let err = pack(&weights, None, &bad_block, &out, |_, _, _| {}).unwrap_err();
    assert!(err.to_string().contains("block size 48"), "{err}");
    assert!(!out.exists());
    assert_eq!(partials(), 0);
}
