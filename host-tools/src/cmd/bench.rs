//! `host-tools bench`: the speed table of the README.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, anyhow, bail};
use host_tools::bench::{BenchRow, bench_pack, kv_bytes, pico2_seconds};
use host_tools::board_model;
use host_tools::checkpoint::{self, WriteOptions};
use host_tools::file_storage::FileStorage;
use host_tools::guard::{self, Output};
use host_tools::pack::PackOptions;
use host_tools::synth;
use host_tools::tokenizer::Tokenizer;
use picogpt_core::{Activations, MatrixFormat, Model, ModelConfig};

use super::pack::{INT8_BLOCK, pack_folder};

/// picoGPT-style NumPy GPT-2, the comparison `--numpy` times.
const NUMPY_SCRIPT: &str = include_str!("../../../bench/picogpt_numpy.py");

/// The 11-token prompt of the peer figures: picoGPT's seed sentence and " The".
const PROMPT: [u32; 11] = [36235, 39141, 18765, 1143, 326, 9061, 561, 530, 1110, 1716, 464];

#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint folder to benchmark; synthesized (GPT-2 124M shape, seed 1) when missing.
    #[arg(long, default_value = "out/bench/124M")]
    model_dir: PathBuf,
    /// Tokens generated per run (the prompt's pass yields the first; at least 2).
    #[arg(short = 'n', long, default_value_t = 21, value_parser = tokens_to_time)]
    n: usize,
    /// Runs per configuration; the median is reported.
    #[arg(long, default_value_t = 3, value_parser = super::at_least_one)]
    repeats: usize,
    /// Also time picoGPT-style NumPy (bench/picogpt_numpy.py, one thread) on the checkpoint:
    /// needs python3 with numpy and safetensors (`pip install numpy safetensors`).
    #[arg(long)]
    numpy: bool,
    /// Guest instructions per generated token measured under Cortex-M33 emulation (see the
    /// firmware's instruction count), for the Pico 2 estimate.
    #[arg(long)]
    m33_instructions: Option<u64>,
    /// Instead of timing the host: the timing model of an SD board (pico2, esp32c6) for the
    /// int8 pack of `--model-dir` (see host_tools::board_model).
    #[arg(long, value_parser = ["pico2", "esp32c6"])]
    board: Option<String>,
    /// SD commands per token for `--board` (measured on qemu-rv32's emulated card).
    #[arg(long, default_value_t = 22)]
    sd_commands: u64,
}

pub fn main(args: Args) -> Result<()> {
    if args.numpy {
        check_numpy()?;
    }
    guard::check_outputs(&[Output::folder("--model-dir", &args.model_dir)], &[])?;
    let config = ensure_checkpoint(&args.model_dir)?;
    if let Some(board) = &args.board {
        return board_table(&args.model_dir, board, args.sd_commands);
    }
    let configs = [
        ("f32", MatrixFormat::F32, Activations::F32),
        ("f16", MatrixFormat::F16, Activations::F32),
        ("int8", MatrixFormat::Int8 { block: INT8_BLOCK }, Activations::F32),
        ("int8", MatrixFormat::Int8 { block: INT8_BLOCK }, Activations::Int8),
    ];
    let mut rows = Vec::new();
    for (quant, matrices, activations) in configs {
        let pack = args.model_dir.join(format!("model-{quant}.pgpt"));
        if !pack.exists() {
            println!("packing {}", pack.display());
            pack_folder(&args.model_dir, &pack, &PackOptions::new(matrices, true), true)?;
        }
        rows.push(bench_pack(&pack, &PROMPT, args.n, activations, args.repeats)?);
    }
    print_table(&rows, &config);
    if args.numpy {
        let ms = numpy_ms_per_token(&args.model_dir, args.n)?;
        let best = rows.iter().map(|r| r.ms_per_token).fold(f64::INFINITY, f64::min);
        println!(
            "\npicoGPT-style NumPy (recomputes every position, 1 thread): {ms:.1} ms/token, {:.0}x the fastest row",
            ms / best
        );
    }
    if let Some(instructions) = args.m33_instructions {
        print_pico2(&rows, instructions, &config);
    }
    Ok(())
}

/// Prints `host_tools::board_model`'s table for `board` over the int8 pack of `dir`.
fn board_table(dir: &Path, board: &str, commands: u64) -> Result<()> {
    let pack = dir.join("model-int8.pgpt");
    if !pack.exists() {
        println!("packing {}", pack.display());
        let opts = PackOptions::new(MatrixFormat::Int8 { block: INT8_BLOCK }, true);
        pack_folder(dir, &pack, &opts, true)?;
    }
    let storage = FileStorage::open(&pack).map_err(|e| anyhow!("{}: {e}", pack.display()))?;
    let model = Model::open(storage).map_err(|e| anyhow!("{}: {e}", pack.display()))?;
    let board = if board == "pico2" { &board_model::PICO2 } else { &board_model::ESP32C6 };
    let assumptions = board_model::Assumptions::default();
    print!("{}", board_model::report(model.layout(), board, commands, &assumptions));
    Ok(())
}

/// Synthesizes the 124M-shape checkpoint into `dir` unless one is there.
fn ensure_checkpoint(dir: &Path) -> Result<ModelConfig> {
    if !dir.join("config.json").exists() {
        std::fs::create_dir_all(dir).map_err(|e| anyhow!("creating {}: {e}", dir.display()))?;
        println!("synthesizing GPT-2 124M-shape weights (seed 1) into {}", dir.display());
        let weights = synth::synthesize(ModelConfig::GPT2_124M, 1)?;
        checkpoint::write(dir, &weights, &WriteOptions::default())?;
        Tokenizer::gpt2()?.write_hf_files(dir)?;
    }
    Ok(checkpoint::load(dir)?.config)
}

fn print_table(rows: &[BenchRow], config: &ModelConfig) {
    println!(
        "\n| weights | activations | ms/token | ms/token, pack in RAM | 11-token prompt, ms | bytes read/token | working RAM (board: batch 1, 4 KiB) | working RAM (host) |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:?} | {:.1} | {:.1} | {:.0} | {} | {} | {} |",
            r.quant,
            r.activations,
            r.ms_per_token,
            r.compute_ms_per_token,
            r.prompt_ms,
            r.bytes_per_token,
            r.board_working_bytes,
            r.host_working_bytes
        );
    }
    let kv: Vec<String> = kv_bytes(config).iter().map(|(f, b)| format!("{f:?} {b}")).collect();
    println!("\nKV cache bytes per position: {}", kv.join(", "));
}

fn print_pico2(rows: &[BenchRow], instructions: u64, config: &ModelConfig) {
    let floor = config.weight_macs_per_token() / 2;
    println!(
        "\nCortex-M33: {instructions} guest instructions per token; floor (multiply-adds / 2) {floor}, ratio {:.2}",
        instructions as f64 / floor as f64
    );
    println!("\n| weights | storage | s/token (read, then compute) | s/token (overlapped) |");
    println!("|---|---|---:|---:|");
    for r in rows.iter().filter(|r| r.activations == Activations::Int8) {
        for mb in [3.0, 15.0, 25.0] {
            let (serial, overlapped) = pico2_seconds(r.bytes_per_token, instructions, mb * 1e6);
            println!("| {} | {mb} MB/s | {serial:.1} | {overlapped:.1} |", r.quant);
        }
    }
}

/// `-n`: the first token comes from the prompt's pass, so timing needs a second.
fn tokens_to_time(text: &str) -> Result<usize, String> {
    match super::at_least_one(text)? {
        1 => Err("bench times the tokens after the prompt's pass: give 2 or more".to_owned()),
        n => Ok(n),
    }
}

/// Fails before any work when `--numpy` could not run: python3 with numpy and safetensors.
fn check_numpy() -> Result<()> {
    let out = Command::new("python3")
        .args(["-c", "import numpy, safetensors.numpy"])
        .output()
        .map_err(|e| anyhow!("bench --numpy runs python3, which could not start: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!(
            "bench --numpy needs python3 with numpy and safetensors (`pip install numpy \
             safetensors`): {}",
            stderr.trim().lines().last().unwrap_or("the import failed")
        );
    }
    Ok(())
}

/// Runs bench/picogpt_numpy.py (built in, so from any folder) on one thread and returns its
/// ms per token.
fn numpy_ms_per_token(model_dir: &Path, n: usize) -> Result<f64> {
    let tokens: Vec<String> = PROMPT.iter().map(u32::to_string).collect();
    let out = Command::new("python3")
        .args(["-c", NUMPY_SCRIPT])
        .arg(model_dir)
        .args(["--tokens", &tokens.join(","), "-n", &n.to_string()])
        .env("OPENBLAS_NUM_THREADS", "1")
        .env("OMP_NUM_THREADS", "1")
        .output()
        .map_err(|e| anyhow!("running python3 bench/picogpt_numpy.py: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("ms_per_token: "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            anyhow!("bench/picogpt_numpy.py failed: {}", String::from_utf8_lossy(&out.stderr))
        })
}
