//! `host-tools bench`: the speed table of the README.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, anyhow, bail};
use host_tools::bench::{
    BenchCase, BenchRow, InstructionCount, bench, board_seconds, compute_seconds, kv_bytes,
};
use host_tools::board_model;
use host_tools::checkpoint::{self, WriteOptions};
use host_tools::file_storage::FileStorage;
use host_tools::guard::{self, Output};
use host_tools::memory_rate;
use host_tools::pack::PackOptions;
use host_tools::synth;
use host_tools::threads::ThreadPool;
use host_tools::tokenizer::Tokenizer;
use picogpt_core::{Activations, MatrixFormat, Model, ModelConfig};

use super::pack::{INT8_BLOCK, QuantArg, pack_folder};

/// NumPy GPT-2 with a KV cache, the peer `--numpy` times (built in, so `bench` runs from any
/// folder).
const NUMPY_KV_SCRIPT: &str = include_str!("../../../bench/gpt2_numpy_kv.py");

/// picoGPT's own NumPy loop, which recomputes every position.
const PICOGPT_SCRIPT: &str = include_str!("../../../bench/picogpt_numpy.py");

/// The 11-token prompt of the peer figures: picoGPT's seed sentence and " The".
const PROMPT: [u32; 11] = [36235, 39141, 18765, 1143, 326, 9061, 561, 530, 1110, 1716, 464];

/// The Pico 2's clock.
const PICO2_HZ: f64 = 150e6;

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
    /// Threads of the multi-threaded column (default: every core available).
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    threads: usize,
    /// Also time NumPy GPT-2 with a KV cache (bench/gpt2_numpy_kv.py) and picoGPT's own loop
    /// (bench/picogpt_numpy.py) on the checkpoint, f32, one BLAS thread: needs a Python with
    /// numpy and safetensors (`pip install numpy safetensors`).
    #[arg(long)]
    numpy: bool,
    /// The Python with NumPy and safetensors for `--numpy`.
    #[arg(long, default_value = "python3")]
    python: PathBuf,
    /// Guest instructions per generated token measured under Cortex-M33 emulation, for the
    /// Pico 2 estimate: `TOTAL` or `TOTAL:IN_ROW_JOBS` (see firmware/README.md).
    #[arg(long, value_parser = parse_count)]
    m33_instructions: Option<InstructionCount>,
    /// Instead of timing the host: the timing model of an SD board (pico2, esp32c6) for the
    /// int8 pack of `--model-dir` (see host_tools::board_model).
    #[arg(long, value_parser = ["pico2", "esp32c6"])]
    board: Option<String>,
    /// SD commands per token for `--board` (measured on qemu-rv32's emulated card).
    #[arg(long, default_value_t = 22)]
    sd_commands: u64,
    /// The pack `--board` models: `model-<quant>.pgpt` of `--model-dir` (made when missing).
    #[arg(long, value_enum, default_value_t = QuantArg::Int8, requires = "board")]
    quant: QuantArg,
}

/// `TOTAL` or `TOTAL:IN_ROW_JOBS` (a count without a split is all serial).
fn parse_count(text: &str) -> Result<InstructionCount, String> {
    let number = |s: &str| s.trim().parse::<u64>().map_err(|_| format!("{s:?} is not a count"));
    match text.split_once(':') {
        Some((total, jobs)) => {
            Ok(InstructionCount { total: number(total)?, in_row_jobs: number(jobs)? })
        }
        None => Ok(InstructionCount { total: number(text)?, in_row_jobs: 0 }),
    }
}

pub fn main(args: Args) -> Result<()> {
    if args.numpy {
        check_numpy(&args.python)?;
    }
    guard::check_outputs(&[Output::folder("--model-dir", &args.model_dir)], &[])?;
    let config = ensure_checkpoint(&args.model_dir)?;
    if let Some(board) = &args.board {
        return board_table(&args.model_dir, board, args.sd_commands, args.quant);
    }
    let packs = [
        ("f32", MatrixFormat::F32, &[Activations::F32][..]),
        ("f16", MatrixFormat::F16, &[Activations::F32][..]),
        ("int8", MatrixFormat::Int8 { block: INT8_BLOCK }, &Activations::ALL[..]),
    ];
    let threads = if args.threads == 0 { ThreadPool::available() } else { args.threads };
    let mut cases = Vec::new();
    for (quant, matrices, paths) in packs {
        let pack = args.model_dir.join(format!("model-{quant}.pgpt"));
        if !pack.exists() {
            println!("packing {}", pack.display());
            pack_folder(&args.model_dir, &pack, &PackOptions::new(matrices, true), true)?;
        }
        for &activations in paths {
            for t in [1, threads] {
                cases.push(BenchCase { pack: pack.clone(), activations, threads: t });
            }
        }
    }
    let rows = bench(&cases, &PROMPT, args.n, args.repeats)?;
    println!(
        "\nCPU features: {}; kernels: {}",
        host_tools::cpu::features(),
        rows.first().map_or("", |r| r.kernels.as_str())
    );
    print_table(&rows, threads, &config);
    print_memory_floor(&rows, threads);
    if args.numpy {
        let best = |quant: &str| {
            rows.iter()
                .filter(|r| r.quant == quant && r.case.threads == 1)
                .map(|r| r.ms_per_token)
                .fold(f64::INFINITY, f64::min)
        };
        println!("\nNumPy on the same weights (f32, OpenBLAS on one thread):");
        for (script, name, what) in [
            (NUMPY_KV_SCRIPT, "bench/gpt2_numpy_kv.py", "GPT-2 with a KV cache"),
            (
                PICOGPT_SCRIPT,
                "bench/picogpt_numpy.py",
                "picoGPT's loop (recomputes every position)",
            ),
        ] {
            let ms = numpy_ms_per_token(&args.python, (script, name), &args.model_dir, args.n)?;
            println!(
                "- {what}: {ms:.1} ms/token; ours, 1 thread: {:.1}x faster (f32), {:.1}x (int8)",
                ms / best("f32"),
                ms / best("int8")
            );
        }
    }
    if let Some(count) = args.m33_instructions {
        print_pico2(&rows, count, &config);
    }
    Ok(())
}

/// Prints `host_tools::board_model`'s table for `board` over the `quant` pack of `dir`.
fn board_table(dir: &Path, board: &str, commands: u64, quant: QuantArg) -> Result<()> {
    let pack = dir.join(format!("model-{}.pgpt", quant.name()));
    if !pack.exists() {
        println!("packing {}", pack.display());
        pack_folder(dir, &pack, &quant.options(INT8_BLOCK), true)?;
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
        println!("synthesizing GPT-2 124M-shape weights (seed 1) into {}", dir.display());
        std::fs::create_dir_all(dir).map_err(|e| anyhow!("creating {}: {e}", dir.display()))?;
        let weights = synth::synthesize(ModelConfig::GPT2_124M, 1)?;
        checkpoint::write(dir, &weights, &WriteOptions::default())?;
        Tokenizer::gpt2()?.write_hf_files(dir)?;
    }
    Ok(checkpoint::load(dir)?.config)
}

fn print_table(rows: &[BenchRow], threads: usize, config: &ModelConfig) {
    println!(
        "\n| weights | activations | ms/token, 1 thread | ms/token, {threads} threads | speed-up | ms/token, chunked reads, 1 thread | prompt ms, 1 thread | prompt ms, {threads} threads | bytes read/token | working RAM (board: batch 1, 16 KiB) | working RAM (host) |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for pair in rows.chunks(2) {
        let [one, many] = pair else { continue };
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.2}x | {:.1} | {:.0} | {:.0} | {} | {} | {} |",
            one.quant,
            one.case.activations.name(),
            one.ms_per_token,
            many.ms_per_token,
            one.ms_per_token / many.ms_per_token,
            one.read_ms_per_token,
            one.prompt_ms,
            many.prompt_ms,
            one.bytes_per_token,
            one.board_working_bytes,
            one.host_working_bytes
        );
    }
    let kv: Vec<String> = kv_bytes(config).iter().map(|(f, b)| format!("{f:?} {b}")).collect();
    println!("\nKV cache bytes per position: {}", kv.join(", "));
}

/// The machine's streaming read rate on 1 and `threads` threads, and what it makes the
/// fastest possible decode token of each pack (every weight byte is read once per token).
fn print_memory_floor(rows: &[BenchRow], threads: usize) {
    let one = memory_rate::streaming_read_rate(memory_rate::PROBE_BYTES, 1, 3);
    let many = memory_rate::streaming_read_rate(memory_rate::PROBE_BYTES, threads, 3);
    println!(
        "\nMemory: a plain read loop over {} MiB streams {:.1} GB/s on 1 thread, {:.1} GB/s on \
         {threads} threads (best of 3). A decode token reads every weight once, so none can take \
         less than (1 / {threads} threads):",
        memory_rate::PROBE_BYTES >> 20,
        one / 1e9,
        many / 1e9
    );
    for pack in rows.chunk_by(|a, b| a.quant == b.quant) {
        let bytes = pack[0].bytes_per_token as f64;
        println!("- {}: {:.1} / {:.1} ms", pack[0].quant, bytes / one * 1e3, bytes / many * 1e3);
    }
}

fn print_pico2(rows: &[BenchRow], count: InstructionCount, config: &ModelConfig) {
    let macs = config.weight_macs_per_token();
    println!(
        "\nCortex-M33: {} guest instructions per token ({:.2} per multiply-add), {} in row jobs",
        count.total,
        count.total as f64 / macs as f64,
        count.in_row_jobs
    );
    let one = compute_seconds(count, 1, PICO2_HZ);
    let two = compute_seconds(count, 2, PICO2_HZ);
    println!("Pico 2 at 150 MHz: {one:.2} s of compute per token on one core, {two:.2} s on both");
    println!("\n| storage | s/token (read, then compute) | s/token (overlapped) |");
    println!("|---|---:|---:|");
    let bytes = rows.iter().find(|r| r.quant == "int8").map_or(0, |r| r.bytes_per_token);
    for mb in [3.0, 15.0, 25.0] {
        let (serial, overlapped) = board_seconds(bytes, two, mb * 1e6);
        println!("| {mb} MB/s | {serial:.1} | {overlapped:.1} |");
    }
}

/// `-n`: the first token comes from the prompt's pass, so timing needs a second.
fn tokens_to_time(text: &str) -> Result<usize, String> {
    match super::at_least_one(text)? {
        1 => Err("bench times the tokens after the prompt's pass: give 2 or more".to_owned()),
        n => Ok(n),
    }
}

/// Fails before any work when `--numpy` could not run: `python` with numpy and safetensors.
fn check_numpy(python: &Path) -> Result<()> {
    let out =
        Command::new(python).args(["-c", "import numpy, safetensors.numpy"]).output().map_err(
            |e| anyhow!("bench --numpy runs {}, which could not start: {e}", python.display()),
        )?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!(
            "bench --numpy needs {} with numpy and safetensors (`pip install numpy \
             safetensors`, or --python for another Python): {}",
            python.display(),
            stderr.trim().lines().last().unwrap_or("the import failed")
        );
    }
    Ok(())
}

/// Runs a built-in NumPy benchmark script on one BLAS thread and returns its ms per token.
fn numpy_ms_per_token(
    python: &Path,
    (script, name): (&str, &str),
    model_dir: &Path,
    n: usize,
) -> Result<f64> {
    let tokens: Vec<String> = PROMPT.iter().map(u32::to_string).collect();
    let out = Command::new(python)
        .args(["-c", script])
        .arg(model_dir)
        .args(["--tokens", &tokens.join(","), "-n", &n.to_string()])
        .env("OPENBLAS_NUM_THREADS", "1")
        .env("OMP_NUM_THREADS", "1")
        .output()
        .map_err(|e| anyhow!("running {}: {e}", python.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("ms_per_token: "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow!("{name} failed: {}", String::from_utf8_lossy(&out.stderr)))
}
