//! The safetensors import: `model.safetensors` bytes for a fixed tiny config, checked and
//! converted as `pack` and `reference` read them; what loads must run the reference.
#![no_main]

use std::path::Path;

use host_tools::{checkpoint, reference};
use libfuzzer_sys::fuzz_target;
use picogpt_fuzz::TINY;

fuzz_target!(|data: &[u8]| {
    match checkpoint::parse_tensors(Path::new("model.safetensors"), TINY, data) {
        Ok(weights) => {
            let logits = reference::forward(&weights, &[0, TINY.vocab_size - 1]);
            assert!(logits.is_ok(), "loaded weights fail the reference: {logits:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
