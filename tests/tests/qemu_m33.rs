//! The firmware of `firmware/qemu-m33` on an emulated Cortex-M33 (QEMU `mps2-an505`) prints
//! what `host-tools run` prints for the same pack and prompt (token ids, or text it encodes
//! itself), logit bits included, also when its KV cache spills beyond the RAM to a host file,
//! and meets bad input with one `error:` line and a non-zero exit.
//!
//! Needs `qemu-system-arm` and the `thumbv8m.main-none-eabihf` target. Without QEMU the tests
//! say so and pass, unless `CI` is set: then a missing QEMU fails them.
//!
//! ```text
//! cargo test --release -p picogpt-tests --test qemu_m33 -- --nocapture
//! ```

mod common;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use host_tools::report::StepReport;
use host_tools::run::{Prompt, RunOptions, run};
use picogpt_core::display::{PyRepr, write_candidate};
use picogpt_core::{Activations, Candidate, MatrixFormat, ModelConfig};

/// Longest a single emulator run may take before it counts as hung.
const QEMU_TIMEOUT: Duration = Duration::from_secs(300);

/// The firmware crate.
fn crate_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware/qemu-m33")
}

/// Whether CI asked for every test to really run.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The firmware ELF, built once; `None` (with a message saying the test is skipped) when
/// QEMU is not installed outside CI.
fn firmware() -> Option<&'static Path> {
    static ELF: OnceLock<Option<PathBuf>> = OnceLock::new();
    ELF.get_or_init(|| {
        let qemu = Command::new("qemu-system-arm").arg("--version").output();
        if !qemu.is_ok_and(|out| out.status.success()) {
            assert!(
                !in_ci(),
                "qemu-system-arm is not installed, and CI is set: the firmware test must run"
            );
            // Straight to stderr: the test harness would swallow `eprintln!`.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED (qemu_m33): qemu-system-arm not found; install it (Debian: apt-get \
                 install qemu-system-arm) to run the firmware on an emulated Cortex-M33"
            );
            return None;
        }
        Some(build_firmware())
    })
    .as_deref()
}

/// `cargo build --release` in the firmware crate, with its own target and flags.
fn build_firmware() -> PathBuf {
    let dir = crate_dir();
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "--release", "--quiet"]).current_dir(&dir);
    // The crate's .cargo/config.toml sets the target, CPU and linker; the host build's
    // settings must not override them or share its target directory.
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        cargo.env_remove(var);
    }
    let status = cargo.status().expect("cargo runs");
    assert!(status.success(), "building {} failed", dir.display());
    dir.join("target/thumbv8m.main-none-eabihf/release/picogpt-qemu-m33")
}

/// What one emulator run printed, and how it ended.
struct Run {
    code: Option<i32>,
    stdout: String,
}

/// Runs the firmware through the crate's cargo runner (`qemu-run.sh`) with `args`.
fn qemu(elf: &Path, args: &[&str]) -> Run {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu_m33");
    std::fs::create_dir_all(&out_dir).unwrap();
    let k = RUNS.fetch_add(1, Ordering::Relaxed);
    let (out_path, err_path) =
        (out_dir.join(format!("run{k}.out")), out_dir.join(format!("run{k}.err")));
    let mut child = Command::new("sh")
        .arg(crate_dir().join("qemu-run.sh"))
        .arg(elf)
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .expect("qemu-run.sh starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > QEMU_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the firmware ran longer than {QEMU_TIMEOUT:?} with {args:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    assert!(stderr.is_empty(), "qemu wrote to stderr with {args:?}: {stderr}");
    Run { code: status.code(), stdout: std::fs::read_to_string(&out_path).unwrap() }
}

/// The lines `host-tools run` prints for each step, then `generated:` and the text.
fn host_lines(pack: &Path, opts: &RunOptions) -> (Vec<String>, Vec<StepReport>) {
    let report = run(pack, opts, |_| {}).unwrap();
    let mut lines = Vec::new();
    for (i, step) in report.steps.iter().enumerate() {
        lines.push(match &step.text {
            Some(text) => format!("step {}: token {} ({})", i + 1, step.token, PyRepr(text)),
            None => format!("step {}: token {}", i + 1, step.token),
        });
        for (rank, entry) in step.top.iter().enumerate() {
            let candidate =
                Candidate { token: entry.id, logit: entry.logit, prob: entry.prob as f32 };
            let mut line = String::new();
            write_candidate(&mut line, rank + 1, &candidate, entry.text.as_deref()).unwrap();
            lines.push(line);
        }
    }
    let ids: Vec<String> = report.tokens().iter().map(u32::to_string).collect();
    lines.push(format!("generated: {}", ids.join(",")));
    lines.extend(report.text.clone());
    (lines, report.steps)
}

/// The tiny model every firmware test runs, packed int8.
fn tiny_pack() -> &'static Path {
    static PACK: OnceLock<PathBuf> = OnceLock::new();
    PACK.get_or_init(|| {
        Fixture::new("qemu_m33", TINY, 11).pack("int8", MatrixFormat::Int8 { block: 32 }, true)
    })
}

/// 8 blocks of width 256 and a 512-token vocabulary (so no tokenizer): 16 KiB per position
/// of an f32 KV cache, so the emulated board's RAM holds only 29 of its 128.
fn deep_pack() -> &'static Path {
    static PACK: OnceLock<PathBuf> = OnceLock::new();
    PACK.get_or_init(|| {
        let deep = ModelConfig {
            n_layer: 8,
            n_embd: 256,
            n_head: 4,
            n_ctx: 128,
            vocab_size: 512,
            layer_norm_epsilon: 1e-5,
        };
        Fixture::new("qemu_m33_deep", deep, 4).pack("int8", MatrixFormat::Int8 { block: 32 }, true)
    })
}

/// The lines from the first `step` line on, without the `bits:` lines, and those.
fn step_lines(stdout: &str) -> (Vec<&str>, Vec<&str>) {
    let lines: Vec<&str> = stdout.lines().collect();
    let first = lines.iter().position(|l| l.starts_with("step ")).expect("a step line");
    lines[first..].iter().partition(|l| !l.starts_with("bits: "))
}

/// Each step's `bits: …` line as the host's logits give it.
fn host_bits(steps: &[StepReport]) -> Vec<String> {
    steps
        .iter()
        .map(|step| {
            let bits: Vec<String> =
                step.top.iter().map(|e| format!("{:#010x}", e.logit.to_bits())).collect();
            format!("bits: {}", bits.join(" "))
        })
        .collect()
}

fn ids(tokens: &[u32]) -> String {
    tokens.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

#[test]
fn the_emulated_m33_prints_what_the_host_prints_bit_for_bit() {
    let Some(elf) = firmware() else { return };
    // The tiny model (one pair of blocks per row: the odd-pair path, every row a chunk's
    // whole row) and the deep one (rows of 4 and 16 pairs, cut by the 4 KiB reads).
    let deep_prompt: Vec<u32> = PROMPT.iter().map(|t| t % 512).collect();
    for (pack, prompt, shape) in [
        (tiny_pack(), &PROMPT[..], "2 layers x 64"),
        (deep_pack(), &deep_prompt[..], "8 layers x 256"),
    ] {
        let (path, tokens, n) = (pack.to_str().unwrap(), ids(prompt), 8);
        for activations in Activations::ALL {
            let name = activations.name();
            let opts = RunOptions { activations, ..RunOptions::new(prompt.to_vec(), n) };
            let (expected, steps) = host_lines(pack, &opts);
            let args =
                [path, "--tokens", &tokens, "-n", "8", "--activations", name, "--bits", "--icount"];
            let out = qemu(elf, &args);
            assert_eq!(out.code, Some(0), "{}", out.stdout);

            let (printed, bits) = step_lines(&out.stdout);
            assert_eq!(
                printed[..expected.len()],
                expected,
                "{shape}, {name} activations:\n{}",
                out.stdout
            );
            // The three best logits of every step have the host's exact bits.
            assert_eq!(bits, host_bits(&steps), "{shape}, {name} activations");

            let instructions = out
                .stdout
                .lines()
                .find_map(|l| l.strip_prefix("instructions per token: "))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no instruction count in:\n{}", out.stdout));
            assert!(instructions > 0);
            println!(
                "qemu-m33, {shape}, {name} activations: instructions per token: {instructions}"
            );
        }
    }
}

#[test]
fn the_emulated_m33_kernels_match_their_plain_twins() {
    let Some(elf) = firmware() else { return };
    let out = qemu(elf, &["--check-kernels"]);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    let line = out.stdout.lines().find(|l| l.starts_with("kernels: ")).expect("a kernels line");
    assert!(line.starts_with("kernels: cortex-m33 dsp match the plain ones in "), "{line}");
    println!("qemu-m33: {line}");
}

/// Runs the firmware expecting failure: exit code 1 and an `error:` line containing `needle`,
/// which is returned.
fn assert_fails(elf: &Path, args: &[&str], needle: &str) -> String {
    let out = qemu(elf, args);
    assert_eq!(out.code, Some(1), "{args:?}:\n{}", out.stdout);
    let errors: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{}", out.stdout);
    assert!(errors[0].contains(needle), "expected '{needle}' in: {}", errors[0]);
    assert!(!out.stdout.contains("panic"), "{}", out.stdout);
    errors[0].to_owned()
}

#[test]
fn a_missing_file_is_one_error_line() {
    let Some(elf) = firmware() else { return };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let missing = dir.join("qemu_m33_no_such.pgpt");
    let missing = missing.to_str().unwrap();
    assert_fails(elf, &[missing, "--tokens", "1"], "no such file or directory");
}

#[test]
fn a_corrupt_header_is_one_error_line() {
    let Some(elf) = firmware() else { return };
    let bytes = std::fs::read(tiny_pack()).unwrap();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu_m33");
    std::fs::create_dir_all(&dir).unwrap();
    let cases: [(&str, usize, &str); 2] = [
        ("bad-magic.pgpt", 0, "not a picogpt pack"),
        ("bad-manifest.pgpt", 20, "manifest CRC mismatch"),
    ];
    for (name, offset, needle) in cases {
        let mut bad = bytes.clone();
        bad[offset] ^= 0x5a;
        let path = dir.join(name);
        std::fs::write(&path, &bad).unwrap();
        assert_fails(elf, &[path.to_str().unwrap(), "--tokens", "1", "-n", "1"], needle);
    }
    let truncated = dir.join("truncated.pgpt");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert_fails(elf, &[truncated.to_str().unwrap(), "-n", "1"], "pack is truncated");
}

#[test]
fn a_text_prompt_is_encoded_on_the_board_as_the_host_encodes_it() {
    let Some(elf) = firmware() else { return };
    let pack = tiny_pack();
    let text = "Alan Turing theorized that computers would one day become";
    let opts = RunOptions::with_prompt(Prompt::Text(text.into()), 6);
    let (expected, steps) = host_lines(pack, &opts);
    let prompt = run(pack, &opts, |_| {}).unwrap().prompt;
    // QEMU's command line cannot carry a space inside an argument: one word each.
    let mut args = vec![pack.to_str().unwrap()];
    args.extend(text.split(' '));
    args.extend(["-n", "6", "--bits"]);
    let out = qemu(elf, &args);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    let (printed, bits) = step_lines(&out.stdout);
    assert_eq!(printed[..expected.len()], expected, "{}", out.stdout);
    assert_eq!(bits, host_bits(&steps));
    assert!(out.stdout.contains(&format!("\nprompt: {}\n", ids(&prompt))), "{}", out.stdout);

    // No prompt at all starts from <|endoftext|>, as on the host.
    let (expected, _) = host_lines(pack, &RunOptions::with_prompt(Prompt::Text(String::new()), 2));
    let out = qemu(elf, &[pack.to_str().unwrap(), "-n", "2"]);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    assert_eq!(step_lines(&out.stdout).0[..expected.len()], expected, "{}", out.stdout);
}

#[test]
fn a_pack_without_a_tokenizer_takes_token_ids_only() {
    let Some(elf) = firmware() else { return };
    let pack = deep_pack().to_str().unwrap();
    let args = [pack, "Alan", "Turing", "-n", "2"];
    assert_fails(elf, &args, "this pack has no tokenizer sections: give token ids instead of text");
}

#[test]
fn a_context_beyond_the_ram_spills_to_a_host_file() {
    let Some(elf) = firmware() else { return };
    let pack = deep_pack();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu_m33");
    std::fs::create_dir_all(&dir).unwrap();
    let kv_file = dir.join("kv-spill.bin");
    let _ = std::fs::remove_file(&kv_file);
    let (path, kv_path) = (pack.to_str().unwrap(), kv_file.to_str().unwrap());

    // 3 + 60 - 1 = 62 positions; the RAM holds 29 of them.
    let opts = RunOptions::new(vec![1, 2, 3], 60);
    let (expected, steps) = host_lines(pack, &opts);
    let args = [path, "--tokens", "1,2,3", "-n", "60", "--kv-file", kv_path, "--bits"];
    let out = qemu(elf, &args);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    let kv_line = out.stdout.lines().find(|l| l.starts_with("kv: ")).expect("a kv line");
    let spilled = format!("positions ({kv_path})");
    assert!(kv_line.contains(" + host ") && kv_line.ends_with(&spilled), "{kv_line}");
    let (printed, bits) = step_lines(&out.stdout);
    assert_eq!(printed[..expected.len()], expected, "{}", out.stdout);
    assert_eq!(bits, host_bits(&steps));
    // The host spilling to its own file under a RAM budget prints the same.
    let budget = RunOptions { ram_budget: Some(256 * 1024), ..opts };
    let (spilled_on_host, _) = host_lines(pack, &budget);
    assert_eq!(spilled_on_host, expected);
    let plan = run(pack, &budget, |_| {}).unwrap().kv.unwrap();
    assert!(plan.spilled_positions > 0, "{plan:?}");
    // 62 - 29 positions of 8 × 2 × 256 f32 values.
    let spill_bytes = std::fs::metadata(&kv_file).unwrap().len();
    assert_eq!(spill_bytes % (8 * 2 * 256 * 4), 0, "{spill_bytes}");

    // Without --kv-file the same request is one error naming the positions.
    let args = [path, "--tokens", "1,2,3", "-n", "60"];
    let error = assert_fails(elf, &args, "62 positions needed, the KV cache in RAM holds");
    assert!(error.contains("give --kv-file PATH"), "{error}");

    // A context that fits never touches the file.
    std::fs::remove_file(&kv_file).unwrap();
    let out = qemu(elf, &[path, "--tokens", "1,2,3", "-n", "4", "--kv-file", kv_path]);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    assert!(!kv_file.exists());
}

#[test]
fn a_model_larger_than_the_ram_is_one_error_line() {
    let Some(elf) = firmware() else { return };
    // Wider than GPT-2 124M: its working memory exceeds the static workspace.
    let wide = ModelConfig {
        n_layer: 1,
        n_embd: 1024,
        n_head: 16,
        n_ctx: 32,
        vocab_size: 512,
        layer_norm_epsilon: 1e-5,
    };
    let pack =
        Fixture::new("qemu_m33_wide", wide, 3).pack("int8", MatrixFormat::Int8 { block: 32 }, true);
    let args = [pack.to_str().unwrap(), "--tokens", "1,2", "-n", "2"];
    assert_fails(elf, &args, "model too large for this board's RAM");
}

#[test]
fn bad_arguments_are_a_usage_error() {
    let Some(elf) = firmware() else { return };
    let pack = tiny_pack().to_str().unwrap();
    let cases = [
        &[pack, "-n", "x"][..],
        &[pack, "--kv", "f64"],
        &[pack, "--tokens", "1,x"],
        &[pack, "--tokens", "1", "Alan"],
        &[pack, "--kv-file"],
        &[pack, "--unknown"],
        &[],
    ];
    for args in cases {
        let out = qemu(elf, args);
        assert_eq!(out.code, Some(2), "{args:?}:\n{}", out.stdout);
        assert!(out.stdout.starts_with("error: "), "{}", out.stdout);
        assert!(out.stdout.contains("usage: picogpt FILE"), "{}", out.stdout);
    }
}
