//! The tokenizer sections: a valid pack with GPT-2's vocabulary whose vocabulary and BPE
//! index bytes are edited, then encode and decode.
//!
//! Input: a count byte `p` (mod 8), `p` edits of 8 bytes each (u32 LE offset into the
//! tokenizer sections, u32 LE value written there), then the text (at most 256 bytes).
//! Unedited, core must encode exactly as tiktoken and decode back to the text; edited, it
//! must return a typed error or a result, and `verify_all` must name a tokenizer section
//! (unless every edit fell in the alignment padding between the sections).
#![no_main]

use host_tools::faults::Recording;
use libfuzzer_sys::fuzz_target;
use picogpt_core::format::MAX_TOKEN_BYTES;
use picogpt_core::{Error, FormatError, Model, WorkspaceSpec};
use picogpt_fuzz::tokenizer_pack;

const MAX_TEXT: usize = 256;

fuzz_target!(|data: &[u8]| {
    let base = tokenizer_pack();
    let Some((&count, rest)) = data.split_first() else { return };
    let edits = usize::from(count % 8).min(rest.len() / 8);
    let (edits, text) = rest.split_at(8 * edits);
    let text = &text[..text.len().min(MAX_TEXT)];
    let region = base.bytes.len() - base.start - 4;
    // The net change of each byte (a later edit of the same byte wins), as XOR masks.
    let mut masks = std::collections::BTreeMap::new();
    for edit in edits.chunks_exact(8) {
        let at = base.start + u32::from_le_bytes(edit[..4].try_into().unwrap()) as usize % region;
        for (i, &v) in edit[4..].iter().enumerate() {
            masks.insert((at + i) as u64, base.bytes[at + i] ^ v);
        }
    }
    let flips: Vec<(u64, u8)> = masks.into_iter().filter(|&(_, mask)| mask != 0).collect();
    let mut storage = Recording::with_flips(&base.bytes, flips.clone());
    let mut model = Model::open(&mut storage).expect("the manifest is not edited");
    let mut scratch = vec![0u32; 2 * text.len() + 2];
    let mut ids = vec![0u32; text.len()];
    let encoded = model.encode(text, &mut scratch, &mut ids);
    let mut decoded = Vec::new();
    if let Ok(n) = encoded {
        let mut buf = [0u8; MAX_TOKEN_BYTES as usize];
        for &id in &ids[..n] {
            match model.token_bytes(id, &mut buf) {
                Ok(bytes) => decoded.extend_from_slice(bytes),
                Err(e) => assert!(!flips.is_empty(), "clean pack: decoding {id} failed: {e}"),
            }
        }
    }
    if flips.is_empty() {
        match (std::str::from_utf8(text), encoded) {
            (Ok(s), Ok(n)) => {
                assert_eq!(ids[..n], base.host.encode(s)[..], "core and tiktoken differ on {s:?}");
                assert_eq!(decoded, text, "decoding does not give the text back");
            }
            (Err(_), Err(Error::InvalidUtf8 { .. })) => {}
            (utf8, result) => panic!("clean pack, UTF-8 {}: {result:?}", utf8.is_ok()),
        }
    } else {
        let spec = WorkspaceSpec::new(1, 64 * 1024);
        let mut mem = vec![0.0f32; model.workspace_bytes(&spec) / 4];
        let mut ws = model.workspace(&spec, &mut mem).expect("workspace");
        let verdict = model.verify_all(&mut ws);
        let covered =
            flips.iter().any(|&(at, _)| base.covered.iter().any(|r| r.contains(&(at as usize))));
        if covered {
            assert!(
                matches!(verdict, Err(Error::Format(FormatError::TokenizerCrc { .. }))),
                "edited tokenizer sections pass verify_all: {verdict:?}"
            );
        } else {
            assert!(verdict.is_ok(), "edits in the padding only: {verdict:?}");
        }
    }
    assert_eq!(storage.out_of_bounds(), None, "core read past the end of the file");
});
