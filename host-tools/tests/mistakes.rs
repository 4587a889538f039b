//! Mistakes a user makes, each answered by one clear error (and, where the meaning is plain,
//! what to type instead) and by no change to any file: the exit code, the message and a
//! snapshot of the folder before and after are checked for every one. Also: Ctrl-C and SIGTERM
//! leave no unfinished file, and a full stdout is an error, not a panic.

#![cfg(unix)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use host_tools::report::RunReport;

/// A 1-block model with GPT-2's vocabulary in `m/` (packed int8 inside, f32 beside it) and one
/// of another shape in `other/`, made once per test run.
fn fixture() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mistakes");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let shape = ["--n-layer", "1", "--n-head", "2", "--n-ctx", "64"];
        succeeds(
            &dir,
            &[&["synth", "--out", "m", "--seed", "3", "--n-embd", "32"][..], &shape].concat(),
        );
        succeeds(&dir, &["pack", "m", "-o", "m/model-int8.pgpt"]);
        succeeds(&dir, &["pack", "m", "-o", "f32.pgpt", "--quant", "f32"]);
        succeeds(
            &dir,
            &[&["synth", "--out", "other", "--seed", "4", "--n-embd", "64"][..], &shape].concat(),
        );
        succeeds(&dir, &["pack", "other", "-o", "other.pgpt"]);
        dir
    })
}

/// A fresh folder holding a copy of the fixture.
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(fixture(), dir.path());
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Every file under `dir` (hidden ones too) with its length and CRC.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, u32)> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(folder) = stack.pop() {
        for entry in fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.insert(path.strip_prefix(dir).unwrap().to_owned(), (0, 0));
                stack.push(path);
            } else {
                let bytes = fs::read(&path).unwrap();
                let key = path.strip_prefix(dir).unwrap().to_owned();
                files.insert(key, (bytes.len() as u64, crc32fast::hash(&bytes)));
            }
        }
    }
    files
}

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_host-tools"));
    command.args(args).current_dir(dir).env_remove("HF_ENDPOINT").stdin(Stdio::null());
    command
}

fn succeeds(dir: &Path, args: &[&str]) -> String {
    let out = command(dir, args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "host-tools {args:?} failed: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a mistake in `dir`: it must exit with `code`, print nothing on stdout, say every one
/// of `parts` on stderr, and leave every file in `dir` as it was.
fn refused(dir: &Path, args: &[&str], code: i32, parts: &[&str]) -> String {
    let before = snapshot(dir);
    let out = command(dir, args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(code), "host-tools {args:?}: {stderr}");
    assert!(stdout.is_empty(), "host-tools {args:?} printed before failing:\n{stdout}");
    for part in parts {
        assert!(stderr.contains(part), "host-tools {args:?} should say {part:?}:\n{stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(snapshot(dir), before, "host-tools {args:?} changed files");
    stderr
}

#[test]
fn no_output_replaces_an_input_or_lands_where_it_cannot() {
    let w = workspace();
    let d = w.path();
    refused(
        d,
        &["pack", "m", "-o", "m/model.safetensors"],
        1,
        &[
            "-o m/model.safetensors is one of the files this command reads: writing there would \
             destroy it",
            "did you mean `-o m/model-int8.pgpt`?",
        ],
    );
    std::os::unix::fs::symlink("model.safetensors", d.join("m/weights.pgpt")).unwrap();
    fs::hard_link(d.join("m/config.json"), d.join("config-link.json")).unwrap();
    refused(
        d,
        &["pack", "m", "-o", "m/weights.pgpt"],
        1,
        &["the same file as m/model.safetensors, which this command reads"],
    );
    refused(
        d,
        &["reference", "m", "--tokens", "1", "-n", "1", "--json", "config-link.json"],
        1,
        &["the same file as m/config.json", "did you mean `--json reference.json`?"],
    );
    refused(d, &["pack", "m", "-o", "m"], 1, &["-o m is a folder: give a file name"]);
    refused(
        d,
        &["pack", "m", "--quant", "f16"],
        1,
        &["give the pack's file name with -o: did you mean `-o m/model-f16.pgpt`?"],
    );
    refused(
        d,
        &["pack", "m", "-o", "nowhere/x.pgpt"],
        1,
        &["there is no folder nowhere (create it first: `mkdir -p nowhere`)"],
    );
    refused(
        d,
        &["run", "m/model-int8.pgpt", "hi", "-n", "1", "--json", "m/model-int8.pgpt"],
        1,
        &["--json m/model-int8.pgpt is one of the files", "did you mean `--json run.json`?"],
    );
    refused(
        d,
        &["run", "f32.pgpt", "hi", "-n", "1", "--json", "m/model.safetensors"],
        1,
        &[
            "--json m/model.safetensors: that is a checkpoint's weights, which this output would replace",
        ],
    );
    refused(
        d,
        &["run", "f32.pgpt", "hi", "-n", "1", "--json", "m/model-int8.pgpt"],
        1,
        &["--json m/model-int8.pgpt: that is a pack, which this output would replace"],
    );
    // Checked before generating, so nothing is printed first.
    refused(
        d,
        &["run", "m/model-int8.pgpt", "hi", "-n", "1", "--json", "no/such/dir/run.json"],
        1,
        &["there is no folder no/such/dir"],
    );
    refused(d, &["eval", "m", "f32.pgpt", "--json", "f32.pgpt"], 1, &["--json f32.pgpt is one of"]);
    refused(
        d,
        &["uf2", "--bin", "f32.pgpt", "-o", "f32.pgpt"],
        1,
        &["-o f32.pgpt is one of the files", "did you mean `-o firmware.uf2`?"],
    );
    refused(d, &["synth", "--out", "m/config.json"], 1, &["--out m/config.json is a file"]);
    refused(
        d,
        &["download", "--model_size", "124M", "--models_dir", "f32.pgpt"],
        1,
        &["--models_dir f32.pgpt is a file"],
    );
    // `--model_size` reads `<models_dir>/<size>/`: its pack is an input too.
    fs::create_dir_all(d.join("models/124M")).unwrap();
    fs::copy(d.join("m/model-int8.pgpt"), d.join("models/124M/model-int8.pgpt")).unwrap();
    refused(
        d,
        &["run", "hi", "--model_size", "124M", "--json", "models/124M/model-int8.pgpt"],
        1,
        &["--json models/124M/model-int8.pgpt is one of the files"],
    );
}

#[test]
fn run_says_which_command_was_meant() {
    let w = workspace();
    let d = w.path();
    let stderr = refused(
        d,
        &["run", "m/model-int8.pgpt", "hi", "--model_size", "124M"],
        1,
        &[
            "with --model_size the only argument is the prompt, but two were given",
            "did you mean `host-tools run hi --model_size 124M` (GPT-2 from models/124M) or \
             `host-tools run m/model-int8.pgpt hi` (the pack m/model-int8.pgpt)?",
        ],
    );
    assert!(!d.join("models").exists(), "{stderr}");
    refused(
        d,
        &["run", "Alan Turing theorized"],
        1,
        &[
            "'Alan Turing theorized' is not a file",
            "type `host-tools run 'Alan Turing theorized' --model_size 124M`",
            "`host-tools run FILE 'Alan Turing theorized'`",
        ],
    );
    refused(
        d,
        &["run", "Alan Turing", "m/model-int8.pgpt"],
        1,
        &["the pack comes first: did you mean `host-tools run m/model-int8.pgpt 'Alan Turing'`?"],
    );
    refused(
        d,
        &["run", "m/model-int8.pgpt", "--model_size", "124M"],
        1,
        &["m/model-int8.pgpt is a pack, but --model_size runs GPT-2 from models/124M"],
    );
    refused(
        d,
        &["run"],
        1,
        &["give a pack and a prompt (`host-tools run FILE \"prompt\"`), or a GPT-2 size"],
    );
    // The size is matched without regard to case.
    fs::create_dir_all(d.join("models/124M")).unwrap();
    fs::copy(d.join("m/model-int8.pgpt"), d.join("models/124M/model-int8.pgpt")).unwrap();
    let out = succeeds(d, &["run", "hi", "--model_size", "124m", "-n", "1", "--quiet"]);
    assert_eq!(out.lines().count(), 1, "{out}");
}

#[test]
fn a_pack_is_asked_for_and_something_else_is_given() {
    let w = workspace();
    let d = w.path();
    for command in ["run", "info", "verify"] {
        refused(
            d,
            &[command, "m"],
            1,
            &[
                "m is a checkpoint folder, not a pack: pack it first: `host-tools pack m -o m/model-int8.pgpt`",
            ],
        );
        refused(
            d,
            &[command, "m/model.safetensors"],
            1,
            &["m/model.safetensors is a checkpoint's file, not a pack: pack it first"],
        );
        refused(d, &[command, "missing.pgpt"], 1, &["missing.pgpt: no such file"]);
    }
    fs::create_dir(d.join("packs")).unwrap();
    fs::copy(d.join("f32.pgpt"), d.join("packs/f32.pgpt")).unwrap();
    refused(
        d,
        &["info", "packs"],
        1,
        &["packs is a folder, not a pack file: did you mean `packs/f32.pgpt`?"],
    );
    fs::write(d.join("notes.txt"), "hello\n").unwrap();
    refused(
        d,
        &["info", "notes.txt"],
        1,
        &["notes.txt: not a picogpt pack: it starts with \"hell\""],
    );
    refused(d, &["encode", "hi", "--pack", "m"], 1, &["m is a checkpoint folder, not a pack"]);
    refused(d, &["decode", "1", "--pack", "m/config.json"], 1, &["is a checkpoint's file"]);
    refused(
        d,
        &["uf2", "f32.pgpt", "-o", "x.uf2"],
        1,
        &["f32.pgpt is a pack, not a firmware ELF: did you mean `--bin f32.pgpt`?"],
    );
    // A checkpoint folder is asked for and a pack or a file in it is given.
    refused(
        d,
        &["pack", "f32.pgpt", "-o", "x.pgpt"],
        1,
        &["f32.pgpt is a pack; this needs the checkpoint folder"],
    );
    refused(
        d,
        &["reference", "m/model.safetensors", "hi"],
        1,
        &["m/model.safetensors is a file; this needs the checkpoint folder", "did you mean `m`?"],
    );
    refused(d, &["eval", "nothere", "f32.pgpt"], 1, &["nothere: no such folder"]);
}

#[test]
fn eval_checks_every_pack_before_the_long_reference_pass() {
    let w = workspace();
    let d = w.path();
    // Nothing on stdout: the reference's pass (which prints its perplexity) never started.
    refused(
        d,
        &["eval", "m", "f32.pgpt", "other.pgpt"],
        1,
        &["other.pgpt holds another model (1 layers, n_embd 64, 2 heads, n_ctx 64, vocab \
             50257) than the checkpoint (1 layers, n_embd 32, 2 heads, n_ctx 64, vocab 50257)"],
    );
    refused(d, &["eval", "m", "f32.pgpt", "gone.pgpt"], 1, &["gone.pgpt: no such file"]);
    refused(d, &["eval", "m", "m"], 1, &["m is a checkpoint folder, not a pack"]);
}

#[test]
fn flags_out_of_range_or_without_effect_are_refused() {
    let w = workspace();
    let d = w.path();
    let run = |extra: &[&'static str]| {
        [&["run", "m/model-int8.pgpt", "hi", "-n", "2"][..], extra].concat()
    };
    refused(d, &run(&["--top-k", "100"]), 2, &["at most 64: the sampler keeps the 64 most likely"]);
    refused(d, &run(&["--top-k", "0"]), 2, &["0 keeps no token: give 1 to 64"]);
    refused(d, &run(&["--batch", "0"]), 2, &["'0' for '--batch <BATCH>': must be at least 1"]);
    refused(d, &run(&["--chunk-bytes", "0"]), 2, &["must be at least 1"]);
    refused(d, &["run", "m/model-int8.pgpt", "hi", "-n", "0"], 2, &["must be at least 1"]);
    refused(
        d,
        &run(&["--temperature", "-1"]),
        1,
        &["--temperature must be a positive number, got -1"],
    );
    refused(d, &run(&["--top-p", "-0.5"]), 1, &["--top-p must be in (0, 1], got -0.5"]);
    refused(
        d,
        &run(&["--temperature", "0"]),
        1,
        &["for greedy decoding (what temperature 0 means elsewhere), leave out --temperature"],
    );
    refused(
        d,
        &["run", "f32.pgpt", "hi", "--activations", "int8"],
        1,
        &["--activations int8 changes only int8 and int4 matrices, and this pack's are f32"],
    );
    refused(d, &["info", "f32.pgpt", "--batch", "0"], 2, &["must be at least 1"]);
    refused(d, &["verify", "f32.pgpt", "--chunk-bytes", "0"], 2, &["must be at least 1"]);
    refused(d, &["reference", "m", "hi", "-n", "0"], 2, &["must be at least 1"]);
    refused(d, &["bench", "-n", "1"], 2, &["bench times the tokens after the prompt's pass"]);
    refused(d, &["bench", "--repeats", "0"], 2, &["must be at least 1"]);
    refused(
        d,
        &["pack", "m", "-o", "x.pgpt", "--quant", "f16", "--block", "64"],
        1,
        &["--block 64: a --quant f16 pack has no int8 matrices to block: leave --block out"],
    );
    refused(
        d,
        &["pack", "m", "-o", "x.pgpt", "--quant", "int4", "--keep-int8", "none", "--block", "64"],
        1,
        &["a --quant int4 pack that keeps nothing in int8 has no int8 matrices"],
    );
    refused(
        d,
        &["pack", "m", "-o", "x.pgpt", "--keep-int8", "mlp.c_fc"],
        1,
        &["--keep-int8 mlp.c_fc: only int4 packs keep matrices in int8", "add --quant int4"],
    );
    refused(
        d,
        &["pack", "m", "-o", "x.pgpt", "--quant", "f16", "--no-outliers"],
        1,
        &["--no-outliers changes only an int8 LM head"],
    );
    refused(
        d,
        &["run", "m/model-int8.pgpt", "hi there you", "-n", "70"],
        1,
        &["needs 72 positions, n_ctx is 64: -n 62 fits"],
    );
    let empty_endpoint =
        command(d, &["download", "--model_size", "124M"]).env("HF_ENDPOINT", "").output().unwrap();
    let stderr = String::from_utf8_lossy(&empty_endpoint.stderr);
    assert_eq!(empty_endpoint.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("\"\" is not an http:// or https:// address (unset HF_ENDPOINT"),
        "{stderr}"
    );
    assert!(!d.join("models").exists());
    // Sizes as people write them.
    for budget in ["400K", "400KB", "400KiB", "409600"] {
        let out =
            succeeds(d, &["run", "m/model-int8.pgpt", "hi", "-n", "1", "--ram-budget", budget]);
        assert!(out.contains("RAM budget 409600 bytes"), "{budget}: {out}");
    }
    // With int4, --block sizes the matrices kept in int8, and the summary shows it.
    let out = succeeds(d, &["pack", "m", "-o", "x.pgpt", "--quant", "int4", "--block", "0"]);
    assert!(out.contains("wte.weight kept as int8 (per row)"), "{out}");
}

#[test]
fn token_lists_take_spaces_and_reference_takes_text() {
    let w = workspace();
    let d = w.path();
    assert_eq!(succeeds(d, &["decode", "36235, 39141"]), "Alan Turing\n");
    assert_eq!(succeeds(d, &["decode", "36235,", "39141"]), "Alan Turing\n");
    assert_eq!(succeeds(d, &["decode", "36235 39141"]), "Alan Turing\n");
    refused(d, &["decode", ""], 2, &["no token ids: give ids such as 464,3290"]);
    refused(d, &["decode", "1,x"], 2, &["\"x\" is not a token id"]);

    // `reference` takes the prompt as text, as `run` does, and the same -n default.
    let out = succeeds(d, &["reference", "m", "Alan Turing", "--json", "ref.json"]);
    assert!(out.contains("step 40:") && !out.contains("step 41:"), "{out}");
    let report = RunReport::read(&d.join("ref.json")).unwrap();
    assert_eq!(report.prompt, [36235, 39141]);
    let run = succeeds(d, &["run", "f32.pgpt", "Alan Turing", "-n", "3", "--quiet"]);
    let reference_text = &report.text.unwrap();
    assert!(reference_text.starts_with(run.trim_end()), "{run:?} vs {reference_text:?}");
}

#[test]
fn tokenizer_folders_must_hold_a_tokenizer() {
    let w = workspace();
    let d = w.path();
    succeeds(d, &["pack", "m", "-o", "ids-only.pgpt", "--no-tokenizer"]);
    for command in [&["encode", "hi"][..], &["decode", "1,2"]] {
        refused(
            d,
            &[command, &["--pack", "ids-only.pgpt"]].concat(),
            1,
            &[
                "ids-only.pgpt has no tokenizer sections",
                "leave out --pack to use GPT-2's tokenizer",
            ],
        );
    }
    for command in [&["encode", "hi"][..], &["decode", "1,2"]] {
        let with = |dir: &'static str| [command, &["--model-dir", dir]].concat();
        refused(d, &with("nothere"), 1, &["nothere: no such folder"]);
        refused(
            d,
            &with("m/model.safetensors"),
            1,
            &[
                "m/model.safetensors is a file; this needs a folder with vocab.json and merges.txt",
                "did you mean `m`?",
            ],
        );
        fs::create_dir_all(d.join("empty")).unwrap();
        refused(
            d,
            &with("empty"),
            1,
            &["has no vocab.json and merges.txt; leave out --model-dir to use GPT-2's tokenizer"],
        );
    }
}

#[test]
fn an_unreachable_hub_says_what_to_do_and_leaves_no_folder() {
    let w = workspace();
    let d = w.path();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let endpoint = format!("http://127.0.0.1:{port}");
    for args in [&["run", "hi", "--model_size", "124M"][..], &["download", "--model_size", "124M"]]
    {
        let args = [args, &["--models_dir", "models", "--endpoint", &endpoint]].concat();
        let before = snapshot(d);
        let out = command(d, &args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        for part in [
            &format!("the hub at {endpoint} cannot be reached")[..],
            "point --endpoint (or HF_ENDPOINT) at a mirror",
            "put config.json, model.safetensors, vocab.json, merges.txt into models/124M",
            "(--models_dir chooses the folder)",
        ] {
            assert!(stderr.contains(part), "{args:?} should say {part:?}:\n{stderr}");
        }
        assert_eq!(snapshot(d), before, "{args:?} left something behind");
    }
}

#[test]
fn a_full_stdout_is_an_error_not_a_panic() {
    let w = workspace();
    let d = w.path();
    let full = Path::new("/dev/full");
    if !full.exists() {
        eprintln!("SKIPPED: no /dev/full");
        return;
    }
    for args in [
        &["run", "m/model-int8.pgpt", "hi", "-n", "2"][..],
        &["run", "m/model-int8.pgpt", "hi", "-n", "2", "--quiet"],
        &["encode", "hi"],
        &["decode", "1,2"],
        &["info", "f32.pgpt"],
        &["verify", "f32.pgpt"],
        &["reference", "m", "hi", "-n", "1"],
        &["--help"],
        &["--version"],
    ] {
        let before = snapshot(d);
        let out = command(d, args).stdout(fs::File::create(full).unwrap()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("error: writing to stdout: No space left on device"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(snapshot(d), before);
    }
}

#[test]
fn bench_numpy_checks_python_before_any_work() {
    let w = workspace();
    let d = w.path();
    // A python3 without numpy, first on the PATH.
    let bin = d.join("bin");
    fs::create_dir(&bin).unwrap();
    let python = bin.join("python3");
    let script = "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'numpy'\" >&2\nexit 1\n";
    fs::write(&python, script).unwrap();
    fs::set_permissions(&python, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let before = snapshot(d);
    let out = command(d, &["bench", "--numpy", "--model-dir", "bench/124M"])
        .env("PATH", path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "bench --numpy needs python3 with numpy and safetensors (`pip install numpy \
             safetensors`, or --python for another Python): ModuleNotFoundError: No module \
             named 'numpy'"
        ),
        "{stderr}"
    );
    assert!(out.stdout.is_empty() && !d.join("bench").exists());
    assert_eq!(snapshot(d), before);
}

/// A checkpoint big enough that packing it takes a moment (a 50257 × 512 `wte`), made once.
fn slow_checkpoint() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mistakes-signals");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let shape = ["--n-layer", "1", "--n-embd", "512", "--n-head", "8", "--n-ctx", "32"];
        succeeds(&dir, &[&["synth", "--out", "124M", "--seed", "1"][..], &shape].concat());
        dir
    })
}

/// Starts `args` in `dir`, waits until a partial file appears in `watched`, sends `signal`
/// and returns what the process printed on stderr; `None` if it finished first.
fn interrupt(dir: &Path, args: &[&str], watched: &Path, signal: i32) -> Option<String> {
    let mut child =
        command(dir, args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    // Not empty: the output guard's own probe is an empty partial file, removed at once.
    let has_partial = || {
        fs::read_dir(watched).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                e.file_name().to_string_lossy().ends_with(".partial")
                    && e.metadata().is_ok_and(|m| m.len() > 0)
            })
        })
    };
    while !has_partial() {
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "no partial file appeared");
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.signal(), Some(signal), "the process should end by the signal");
    Some(String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn ctrl_c_and_sigterm_leave_no_unfinished_file() {
    let models = tempfile::tempdir().unwrap();
    let d = models.path();
    copy_tree(slow_checkpoint(), d);
    let before = snapshot(d);
    let cases: [(&[&str], &str, i32); 3] = [
        (&["pack", "124M", "-o", "124M/model-int8.pgpt"], "124M", libc::SIGINT),
        (&["pack", "124M", "-o", "packed.pgpt", "--quant", "f16"], ".", libc::SIGTERM),
        // `run --model_size`'s first use packs before it runs.
        (&["run", "hi", "--model_size", "124M", "--models_dir", "."], "124M", libc::SIGTERM),
    ];
    for (args, watched, signal) in cases {
        let mut tries = 0;
        let stderr = loop {
            tries += 1;
            match interrupt(d, args, &d.join(watched), signal) {
                Some(stderr) => break stderr,
                // The machine was quick: the pack finished before it could be interrupted.
                None if tries < 5 => {
                    for made in ["124M/model-int8.pgpt", "packed.pgpt"] {
                        let _ = fs::remove_file(d.join(made));
                    }
                }
                None => panic!("{args:?} always finished before a signal could reach it"),
            }
        };
        assert!(stderr.contains("removed the unfinished"), "{args:?}: {stderr}");
        assert_eq!(snapshot(d), before, "{args:?} left something behind:\n{stderr}");
    }

    // A partial file whose process was killed outright is removed by the next pack.
    let stale = d.join(format!("124M/.model-int8.pgpt.{}-0.partial", i32::MAX));
    fs::write(&stale, b"left by a process killed with SIGKILL").unwrap();
    succeeds(d, &["pack", "124M", "-o", "124M/model-int8.pgpt", "--quant", "f32"]);
    assert!(!stale.exists());
}
