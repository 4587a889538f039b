//! `bench`: the figures that decide speed — per pack, kernel path and thread count: time per
//! generated token and for the prompt (the pack memory-mapped, and read chunk by chunk as a
//! board reads its card), bytes read per token, working RAM, KV bytes per position — and
//! what emulator instruction counts imply for a board's compute time.

use std::path::{Path, PathBuf};

use picogpt_core::kv::bytes_per_position;
use picogpt_core::{Activations, KvFormat, ModelConfig, WorkspaceSpec};

use crate::file_storage::FileStorage;
use crate::run::{RunError, RunOptions, run};

/// One configuration to time.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchCase {
    /// The pack.
    pub pack: PathBuf,
    /// Kernel path.
    pub activations: Activations,
    /// Worker threads.
    pub threads: usize,
}

/// What one [`BenchCase`] measured (medians over the repeats).
#[derive(Clone, Debug, PartialEq)]
pub struct BenchRow {
    /// The case.
    pub case: BenchCase,
    /// `f32`, `f16`, `int8`, `int4`.
    pub quant: String,
    /// The kernel table core used.
    pub kernels: String,
    /// Milliseconds per generated token (after the prompt's pass), the pack memory-mapped.
    pub ms_per_token: f64,
    /// Milliseconds of the prompt's pass, the pack memory-mapped.
    pub prompt_ms: f64,
    /// Milliseconds per generated token with the pack read chunk by chunk into core's
    /// buffer (64 KiB reads), as a board reads its card.
    pub read_ms_per_token: f64,
    /// Bytes read from storage per generated token.
    pub bytes_per_token: u64,
    /// Working memory at the board's settings (batch 1, 16 KiB chunks), KV cache excluded.
    pub board_working_bytes: usize,
    /// Working memory at the host's settings (whole prompt per pass, 64 KiB chunks).
    pub host_working_bytes: usize,
}

/// Times every case `repeats` times, round-robin (so a busy moment of the machine hits all
/// cases alike), and reports medians.
pub fn bench(
    cases: &[BenchCase],
    prompt: &[u32],
    n: usize,
    repeats: usize,
) -> Result<Vec<BenchRow>, RunError> {
    let opts = |case: &BenchCase, mmap: bool| RunOptions {
        verify: false,
        activations: case.activations,
        threads: case.threads,
        mmap,
        ..RunOptions::new(prompt.to_vec(), n)
    };
    let mut samples = vec![(Vec::new(), Vec::new(), Vec::new()); cases.len()];
    let mut reports = vec![None; cases.len()];
    for _ in 0..repeats.max(1) {
        for (i, case) in cases.iter().enumerate() {
            let mapped = run(&case.pack, &opts(case, true), |_| {})?;
            let (token_ms, prompt_ms, read_ms) = &mut samples[i];
            token_ms.push(mapped.ms_per_token);
            prompt_ms.push(mapped.prefill_ms);
            read_ms.push(run(&case.pack, &opts(case, false), |_| {})?.ms_per_token);
            reports[i] = Some(mapped);
        }
    }
    let mut rows = Vec::new();
    for ((case, (mut token_ms, mut prompt_ms, mut read_ms)), report) in
        cases.iter().zip(samples).zip(reports)
    {
        let report = report.ok_or(RunError::NothingToGenerate)?;
        let first_only = run(&case.pack, &RunOptions { n: 1, ..opts(case, true) }, |_| {})?;
        let generated = report.steps.len().saturating_sub(1).max(1) as u64;
        let bytes_per_token = report.bytes_read.saturating_sub(first_only.bytes_read) / generated;
        let (board_working_bytes, host_working_bytes) =
            working_bytes(&case.pack, case.activations, prompt.len())?;
        rows.push(BenchRow {
            case: case.clone(),
            quant: report.quant.clone(),
            kernels: report.engine.map(|e| e.kernels).unwrap_or_default(),
            ms_per_token: median(&mut token_ms),
            prompt_ms: median(&mut prompt_ms),
            read_ms_per_token: median(&mut read_ms),
            bytes_per_token,
            board_working_bytes,
            host_working_bytes,
        });
    }
    Ok(rows)
}

/// Working memory of `pack` at the board's settings and at the host's.
fn working_bytes(
    pack: &Path,
    activations: Activations,
    prompt: usize,
) -> Result<(usize, usize), RunError> {
    let name = pack.display().to_string();
    let storage =
        FileStorage::open(pack).map_err(|error| RunError::Open { path: name.clone(), error })?;
    let model = picogpt_core::Model::open(storage)
        .map_err(|e| RunError::Core { path: name, error: Box::new(e) })?;
    let board = WorkspaceSpec::new(1, crate::board_model::CHUNK).with_activations(activations);
    let host = WorkspaceSpec::new(prompt, 64 * 1024).with_activations(activations);
    Ok((model.workspace_bytes(&board), model.workspace_bytes(&host)))
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

/// Instructions per token measured under emulation (QEMU `-icount`), split into what one
/// core runs and what the workers share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstructionCount {
    /// Every guest instruction of a generated token.
    pub total: u64,
    /// Of those, the ones inside the matrices' row jobs (`Workers::run`), which split between
    /// the workers; the rest (layer norms, attention, the activations' coding, the LM head's
    /// sink) runs on one core.
    pub in_row_jobs: u64,
}

/// Compute seconds per token on a board at `clock_hz`, from an emulator's instruction
/// count, with `workers` cores sharing the row jobs (about one instruction per cycle: the
/// estimate ignores wait states and multi-cycle instructions such as `LDM`, `VDIV`).
pub fn compute_seconds(count: InstructionCount, workers: usize, clock_hz: f64) -> f64 {
    let shared = count.in_row_jobs.min(count.total);
    let serial = count.total - shared;
    (serial as f64 + shared as f64 / workers.max(1) as f64) / clock_hz
}

/// Seconds per token on a board that reads `bytes` per token at `bytes_per_second` and
/// computes for `compute_seconds`: without overlap, and with reading and computing
/// overlapped (double buffering).
pub fn board_seconds(bytes: u64, compute_seconds: f64, bytes_per_second: f64) -> (f64, f64) {
    let io = bytes as f64 / bytes_per_second;
    (io + compute_seconds, io.max(compute_seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_jobs_split_between_workers_and_the_rest_does_not() {
        let count = InstructionCount { total: 300_000_000, in_row_jobs: 240_000_000 };
        let one = compute_seconds(count, 1, 150e6);
        let two = compute_seconds(count, 2, 150e6);
        assert!((one - 2.0).abs() < 1e-9, "{one}");
        assert!((two - (60e6 + 120e6) / 150e6).abs() < 1e-9, "{two}");
    }

    #[test]
    fn board_time_adds_or_overlaps_io_and_compute() {
        let (serial, overlapped) = board_seconds(15_000_000, 1.0, 15e6);
        assert!((serial - 2.0).abs() < 1e-9 && (overlapped - 1.0).abs() < 1e-9);
    }

    #[test]
    fn median_picks_the_middle() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.0);
    }
}
