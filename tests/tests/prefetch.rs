//! Double buffering: core announces each next read, a reader thread fetches it while core
//! computes, and the results are the same bits as with plain reads.

mod common;

use common::*;
use host_tools::prefetch::PrefetchingFile;
use picogpt_core::{KvFormat, MatrixFormat, Model, RamKv, WorkspaceSpec};

#[test]
fn the_prefetch_schedule_serves_nearly_every_read_and_changes_no_bit() {
    let fixture = Fixture::new("prefetch", TINY, 6);
    let pack = fixture.pack("int8", MatrixFormat::Int8 { block: 32 }, true);
    let spec = WorkspaceSpec::new(4, 4096);
    let plain = core_logits(&pack, &PROMPT, 6, spec, KvFormat::F32);

    let mut model = Model::open(PrefetchingFile::open(&pack).unwrap()).unwrap();
    let cfg = *model.config();
    let mut mem = vec![0.0f32; model.workspace_bytes(&spec) / 4];
    let mut ws = model.workspace(&spec, &mut mem).unwrap();
    let mut kv_mem = vec![0u8; RamKv::bytes_per_position(&cfg, KvFormat::F32) * PROMPT.len()];
    let mut kv = RamKv::new(&cfg, KvFormat::F32, &mut kv_mem);
    model.set_verify(true);
    let mut steps = Vec::new();
    let mut sink = AllLogits::default();
    model.forward(&mut ws, &mut kv, &PROMPT[..6], 0, &mut sink).unwrap();
    steps.push(sink.0);
    for pos in 6..PROMPT.len() {
        let mut sink = AllLogits::default();
        model.forward(&mut ws, &mut kv, &PROMPT[pos..=pos], pos, &mut sink).unwrap();
        steps.push(sink.0);
    }
    assert!(steps == plain, "prefetching changed the logits");
    let stats = model.into_storage().stats();
    println!("{stats:?}");
    // Misses: the manifest, CRC table entries and the embedding rows of each pass.
    assert!(stats.hits > 10 * stats.misses, "{stats:?}");
    assert!(stats.wasted <= stats.misses, "{stats:?}");
}
