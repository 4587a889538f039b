//! Running a firmware crate under QEMU and comparing what it prints with `host-tools run`:
//! shared by the emulated boards' tests (`qemu_m33`, `qemu_rv32`).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use host_tools::report::StepReport;
use host_tools::run::{RunOptions, run};
use picogpt_core::Candidate;
use picogpt_core::display::write_candidate;

/// Longest a single emulator run may take before it counts as hung: ten minutes, or the
/// seconds in `PICOGPT_QEMU_TIMEOUT` (the 124M-shape runs take longer).
fn qemu_timeout() -> Duration {
    let seconds = std::env::var("PICOGPT_QEMU_TIMEOUT").ok().and_then(|s| s.parse().ok());
    Duration::from_secs(seconds.unwrap_or(600))
}

/// Whether CI asked for every test to really run.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Whether `program` is installed (`program --help` starts); when it is not, says the test
/// is skipped (and fails it under CI, where everything must run).
pub fn have(program: &str, test: &str, install: &str) -> bool {
    let ok = Command::new(program).arg("--help").output().is_ok();
    if !ok {
        assert!(!in_ci(), "{program} is not installed, and CI is set: {test} must run");
        // Straight to stderr: the test harness would swallow `eprintln!`.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED ({test}): {program} not found; install it ({install}) to run it"
        );
    }
    ok
}

/// Whether the toolchain the firmware crate `dir` builds with has the standard library for
/// `target`; when it has not, says the test is skipped (and fails it under CI).
pub fn have_target(dir: &Path, target: &str, test: &str) -> bool {
    let out = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", target])
        .current_dir(dir)
        .output();
    let libdir = out
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_owned()));
    let ok = libdir.and_then(|d| std::fs::read_dir(d).ok()).is_some_and(|mut entries| {
        entries.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libcore-")))
    });
    if !ok {
        assert!(!in_ci(), "the {target} target is not installed, and CI is set: {test} must run");
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED ({test}): the {target} target is not installed; add it (rustup target add \
             {target}) to run it"
        );
    }
    ok
}

/// `cargo build --release` in the firmware crate `dir`, with its own target and flags;
/// returns the path of `bin` built for `target`.
pub fn build_firmware(dir: &Path, target: &str, bin: &str) -> PathBuf {
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "--release", "--quiet"]).current_dir(dir);
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
    dir.join("target").join(target).join("release").join(bin)
}

/// What one emulator run printed, and how it ended.
pub struct Run {
    /// QEMU's exit status (the firmware's).
    pub code: Option<i32>,
    /// The console.
    pub stdout: String,
    /// QEMU's own messages (and its traces).
    pub stderr: String,
}

/// Runs `runner ELF ARGS…` (a crate's QEMU runner script) with `env` set, in files under
/// `CARGO_TARGET_TMPDIR/<name>`, killing it after [`qemu_timeout`].
pub fn run_runner(
    name: &str,
    runner: &Path,
    elf: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Run {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&out_dir).unwrap();
    let k = RUNS.fetch_add(1, Ordering::Relaxed);
    let (out_path, err_path) =
        (out_dir.join(format!("run{k}.out")), out_dir.join(format!("run{k}.err")));
    let mut command = Command::new("sh");
    command.arg(runner).arg(elf).args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .expect("the runner starts");
    let started = Instant::now();
    let timeout = qemu_timeout();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the firmware ran longer than {timeout:?} with {args:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: std::fs::read_to_string(&out_path).unwrap(),
        stderr: std::fs::read_to_string(&err_path).unwrap(),
    }
}

/// The lines `host-tools run` prints for each step, then `generated:`, the text and, when a
/// pass verified a draft (`opts.speculate`), the passes line; and the steps themselves.
pub fn host_lines(pack: &Path, opts: &RunOptions) -> (Vec<String>, Vec<StepReport>) {
    let report = run(pack, opts, |_| {}).unwrap();
    let mut lines = Vec::new();
    for (i, step) in report.steps.iter().enumerate() {
        lines.push(match &step.text {
            Some(text) => {
                format!(
                    "step {}: token {} ({})",
                    i + 1,
                    step.token,
                    picogpt_core::display::PyRepr(text)
                )
            }
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
    let mut passes = String::new();
    report.passes.unwrap_or_default().write_summary(&mut passes, report.steps.len()).unwrap();
    lines.extend((!passes.is_empty()).then_some(passes));
    (lines, report.steps)
}

/// The lines from the first `step` line on, without the `bits:` lines, and those.
pub fn step_lines(stdout: &str) -> (Vec<&str>, Vec<&str>) {
    let lines: Vec<&str> = stdout.lines().collect();
    let first = lines.iter().position(|l| l.starts_with("step ")).expect("a step line");
    lines[first..].iter().partition(|l| !l.starts_with("bits: "))
}

/// Each step's `bits: …` line as the host's logits give it.
pub fn host_bits(steps: &[StepReport]) -> Vec<String> {
    steps
        .iter()
        .map(|step| {
            let bits: Vec<String> =
                step.top.iter().map(|e| format!("{:#010x}", e.logit.to_bits())).collect();
            format!("bits: {}", bits.join(" "))
        })
        .collect()
}

/// `1,2,3`.
pub fn ids(tokens: &[u32]) -> String {
    tokens.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// The number on the line starting with `prefix`, if any.
pub fn number_after(stdout: &str, prefix: &str) -> Option<u64> {
    stdout.lines().find_map(|l| l.strip_prefix(prefix)).and_then(|n| n.trim().parse().ok())
}
