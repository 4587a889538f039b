//! `bench`: the figures that decide speed — per pack and kernel path, on one thread: time per
//! generated token, time for the prompt, bytes read per token, working RAM, KV bytes per
//! position — and what they imply for a Pico 2.

use std::path::Path;

use picogpt_core::kv::bytes_per_position;
use picogpt_core::{Activations, KvFormat, ModelConfig, SliceStorage, WorkspaceSpec};

use crate::file_storage::FileStorage;
use crate::run::{RunError, RunOptions, run, run_storage};

/// One benchmarked configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchRow {
    /// `f32`, `f16`, `int8`.
    pub quant: String,
    /// Kernel path.
    pub activations: Activations,
    /// Median milliseconds per generated token (after the prompt's pass).
    pub ms_per_token: f64,
    /// The same with the pack already in RAM: the compute alone, without the reads.
    pub compute_ms_per_token: f64,
    /// Median milliseconds of the prompt's pass.
    pub prompt_ms: f64,
    /// Bytes read from storage per generated token.
    pub bytes_per_token: u64,
    /// Working memory at the board's settings (batch 1, 4 KiB chunks), KV cache excluded.
    pub board_working_bytes: usize,
    /// Working memory at the host's settings (whole prompt per pass, 64 KiB chunks).
    pub host_working_bytes: usize,
}

/// What a run over `pack` measures, as the median of `repeats` runs.
pub fn bench_pack(
    pack: &Path,
    prompt: &[u32],
    n: usize,
    activations: Activations,
    repeats: usize,
) -> Result<BenchRow, RunError> {
    let opts = RunOptions { verify: false, activations, ..RunOptions::new(prompt.to_vec(), n) };
    let mut token_ms = Vec::new();
    let mut prompt_ms = Vec::new();
    let mut report = None;
    for _ in 0..repeats.max(1) {
        let r = run(pack, &opts, |_| {})?;
        token_ms.push(r.ms_per_token);
        prompt_ms.push(r.prefill_ms);
        report = Some(r);
    }
    let first_only = run(pack, &RunOptions { n: 1, ..opts.clone() }, |_| {})?;
    let name = pack.display().to_string();
    let bytes =
        std::fs::read(pack).map_err(|error| RunError::Open { path: name.clone(), error })?;
    let mut compute_ms = Vec::new();
    for _ in 0..repeats.max(1) {
        let r = run_storage(SliceStorage::new(&bytes), &name, &opts, |_| {})?;
        compute_ms.push(r.ms_per_token);
    }
    let full = report.ok_or(RunError::NothingToGenerate)?;
    let generated = full.steps.len().saturating_sub(1).max(1) as u64;
    let bytes_per_token = full.bytes_read.saturating_sub(first_only.bytes_read) / generated;
    let storage = FileStorage::open(pack)
        .map_err(|error| RunError::Open { path: pack.display().to_string(), error })?;
    let model = picogpt_core::Model::open(storage)
        .map_err(|e| RunError::Core { path: pack.display().to_string(), error: Box::new(e) })?;
    let board = WorkspaceSpec::new(1, 4096).with_activations(activations);
    let host = WorkspaceSpec::new(prompt.len(), 64 * 1024).with_activations(activations);
    Ok(BenchRow {
        quant: full.quant,
        activations,
        ms_per_token: median(&mut token_ms),
        compute_ms_per_token: median(&mut compute_ms),
        prompt_ms: median(&mut prompt_ms),
        bytes_per_token,
        board_working_bytes: model.workspace_bytes(&board),
        host_working_bytes: model.workspace_bytes(&host),
    })
}

/// Median of a non-empty list (the lower middle for even lengths).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len().saturating_sub(1) / 2).copied().unwrap_or(0.0)
}

/// KV cache bytes per position for each format.
pub fn kv_bytes(config: &ModelConfig) -> [(KvFormat, usize); 3] {
    [KvFormat::F32, KvFormat::F16, KvFormat::Int8].map(|f| (f, bytes_per_position(config, f)))
}

/// Seconds per token on a Pico 2 (RP2350 at 150 MHz, about one instruction per cycle) that
/// reads `bytes` per token at `bytes_per_second` and executes `instructions`: without overlap,
/// and with reading and computing overlapped (double buffering on the second core).
pub fn pico2_seconds(bytes: u64, instructions: u64, bytes_per_second: f64) -> (f64, f64) {
    let io = bytes as f64 / bytes_per_second;
    let compute = instructions as f64 / 150e6;
    (io + compute, io.max(compute))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pico2_estimate_adds_or_overlaps_io_and_compute() {
        let (serial, overlapped) = pico2_seconds(15_000_000, 150_000_000, 15e6);
        assert!((serial - 2.0).abs() < 1e-9 && (overlapped - 1.0).abs() < 1e-9);
    }

    #[test]
    fn median_picks_the_middle() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.0);
    }
}
