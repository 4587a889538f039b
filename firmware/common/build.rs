//! Asks core, on the host, how much working memory GPT-2 124M needs on a board, so the
//! boards' static workspace is exactly that big and follows any change in core.

use std::env;
use std::fs;
use std::path::PathBuf;

use picogpt_core::format::{MAX_OUTLIERS, QuantScheme};
use picogpt_core::layout::Layout;
use picogpt_core::{Activations, MatrixFormat, ModelConfig, Workspace, WorkspaceSpec};

/// Bytes per storage read on every board: 32 SD sectors, the Pico 2's card window.
const CHUNK_BYTES: usize = 16 * 1024;

fn main() {
    // An int8 pack with the most LM-head outlier channels a pack may have: the largest
    // row-extras run, so any 124M pack (int8, or int4's smaller blocks) fits.
    let mut quant = QuantScheme::uniform(MatrixFormat::Int8 { block: 32 });
    quant.lm_head_outliers = (0..MAX_OUTLIERS as u16).collect();
    let layout = match Layout::new(ModelConfig::GPT2_124M, quant, 0) {
        Ok(layout) => layout,
        Err(e) => {
            println!("cargo::error=GPT-2 124M int8 layout rejected by core: {e}");
            return;
        }
    };
    // Either kernel path: exact f32 activations, or int8 ones (which need their buffers).
    let words = [Activations::F32, Activations::Int8]
        .map(|a| Workspace::words(&layout, &WorkspaceSpec::new(1, CHUNK_BYTES).with_activations(a)))
        .into_iter()
        .max()
        .unwrap_or(0);
    let code = format!(
        "/// Bytes per storage read the boards use.\n\
         pub const CHUNK_BYTES: usize = {CHUNK_BYTES};\n\
         /// f32 words of core's workspace for GPT-2 124M int8, batch 1, [`CHUNK_BYTES`] reads,\n\
         /// with either activation path (`Model::workspace_bytes` / 4, computed by core at\n\
         /// build time).\n\
         pub const GPT2_124M_WORKSPACE_WORDS: usize = {words};\n"
    );
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default()).join("sizes.rs");
    if let Err(e) = fs::write(&out, code) {
        println!("cargo::error=cannot write {}: {e}", out.display());
    }
    println!("cargo::rerun-if-changed=build.rs");
}
