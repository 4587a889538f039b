//! Downloading GPT-2 from the hub, against a loopback stand-in for it (no internet needed):
//! a clean download, resume after a dropped connection, a missing repo or file, a sha256
//! mismatch, stalled servers, the `download` command with `HF_ENDPOINT`, and `run
//! --model_size`'s first use (download, pack, run, then neither again).

mod fake_hub;

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use fake_hub::{FakeHub, Fault};
use host_tools::checkpoint::{self, CONFIG_FILE, MODEL_FILE, WriteOptions};
use host_tools::download::{DownloadError, Event, download_files, partial_path};
use host_tools::hub::{Hub, HubError, HubOptions};
use host_tools::synth;
use host_tools::tokenizer::{MERGES_FILE, Tokenizer, VOCAB_FILE};
use picogpt_core::ModelConfig;

/// The repository `--model_size 124M` downloads.
const REPO: &str = "openai-community/gpt2";
const FILES: [&str; 4] = [CONFIG_FILE, MODEL_FILE, VOCAB_FILE, MERGES_FILE];
/// Real vocabulary, 2 blocks of width 64: a 13 MB model.safetensors.
const TINY: ModelConfig = ModelConfig {
    n_layer: 2,
    n_embd: 64,
    n_head: 4,
    n_ctx: 64,
    vocab_size: 50257,
    layer_norm_epsilon: 1e-5,
};
/// Long enough never to trip on a loaded machine, short enough to fail fast if it hangs.
const PATIENT: Duration = Duration::from_secs(10);

/// The synthetic checkpoint's files as the hub would hold them, made once per test run.
fn checkpoint_files() -> &'static [(&'static str, Vec<u8>)] {
    static FILE_BYTES: OnceLock<Vec<(&str, Vec<u8>)>> = OnceLock::new();
    FILE_BYTES.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("download-checkpoint");
        fs::create_dir_all(&dir).unwrap();
        let weights = synth::synthesize(TINY, 3).unwrap();
        checkpoint::write(&dir, &weights, &WriteOptions::default()).unwrap();
        Tokenizer::gpt2().unwrap().write_hf_files(&dir).unwrap();
        FILES.iter().map(|&f| (f, fs::read(dir.join(f)).unwrap())).collect()
    })
}

fn model_len() -> u64 {
    checkpoint_files().iter().find(|(f, _)| *f == MODEL_FILE).unwrap().1.len() as u64
}

/// A fake hub serving the checkpoint as `openai-community/gpt2`, model.safetensors via LFS.
fn start_hub() -> FakeHub {
    let files = checkpoint_files().iter().map(|(f, b)| (*f, b.clone(), *f == MODEL_FILE));
    FakeHub::start(REPO, files.collect())
}

fn client(endpoint: &str, read_timeout: Duration) -> Hub {
    Hub::new(HubOptions { endpoint: endpoint.into(), connect_timeout: PATIENT, read_timeout })
}

/// Downloads the checkpoint's files into `dir`, returning the events other than progress.
fn download(
    server: &FakeHub,
    dir: &Path,
    retries: u32,
    read_timeout: Duration,
) -> (Result<(), DownloadError>, Vec<String>) {
    let mut events = Vec::new();
    let hub = client(server.url(), read_timeout);
    let result = download_files(&hub, REPO, &FILES, dir, retries, |event| match event {
        Event::Present { file, .. } => events.push(format!("present {file}")),
        Event::Start { file, from, .. } => events.push(format!("start {file} from {from}")),
        Event::Progress { .. } => {}
        Event::Retry { file, attempt, .. } => events.push(format!("retry {file} {attempt}")),
        Event::Done { file, fetched, sha256_checked, .. } => {
            events.push(format!("done {file} fetched {fetched} sha256 {sha256_checked}"))
        }
    });
    (result, events)
}

fn assert_complete(dir: &Path) {
    for (file, bytes) in checkpoint_files() {
        assert!(fs::read(dir.join(file)).unwrap() == *bytes, "{file} differs from the hub's");
        assert!(!partial_path(&dir.join(file)).exists(), "{file}.partial left behind");
    }
}

#[test]
fn downloads_and_verifies_then_skips_what_is_there() {
    let server = start_hub();
    let dir = tempfile::tempdir().unwrap();
    let (result, events) = download(&server, dir.path(), 0, PATIENT);
    result.unwrap();
    assert_complete(dir.path());
    let size = model_len();
    assert!(
        events.contains(&format!("done {MODEL_FILE} fetched {size} sha256 true")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e.starts_with("done config.json") && e.ends_with("sha256 false"))
    );

    // The hub's protocol: a HEAD on /resolve/ answered by a 302 carrying the announcement,
    // then the bytes from the CDN; small files straight from /resolve/.
    let log = server.log();
    let resolve = format!("/{REPO}/resolve/main/{MODEL_FILE}");
    assert!(log.iter().any(|l| l.method == "HEAD" && l.path == resolve && l.status == 302));
    let cdn: Vec<_> = log.iter().filter(|l| l.path.starts_with("/cdn/")).collect();
    assert_eq!(cdn.len(), 1, "{log:?}");
    assert_eq!((cdn[0].method.as_str(), cdn[0].range.as_deref()), ("GET", None));
    assert_eq!((cdn[0].status, cdn[0].served), (200, size));

    let before = server.log().len();
    let (result, events) = download(&server, dir.path(), 0, PATIENT);
    result.unwrap();
    let expected: Vec<String> = FILES.iter().map(|f| format!("present {f}")).collect();
    assert_eq!(events, expected);
    assert!(server.log()[before..].iter().all(|l| l.method == "HEAD"), "nothing fetched again");
}

#[test]
fn resumes_after_the_connection_drops_half_way() {
    let server = start_hub();
    let dir = tempfile::tempdir().unwrap();
    let (size, half) = (model_len(), model_len() / 2);
    server.fault(Fault::DropAfter(half));
    let (result, _) = download(&server, dir.path(), 0, PATIENT);
    let err = result.unwrap_err();
    let message = err.to_string();
    println!("dropped half way: {message}");
    match &err {
        DownloadError::Interrupted { done, size: announced, source, .. } => {
            assert!(matches!(**source, HubError::Lost { .. }), "{message}");
            assert_eq!((*done, *announced), (half, size), "{message}");
        }
        other => panic!("expected an interrupted download, got {other:?}"),
    }
    assert!(message.contains(&format!("{REPO}/{MODEL_FILE}")), "{message}");
    assert!(message.contains("run again to resume"), "{message}");
    let partial = partial_path(&dir.path().join(MODEL_FILE));
    assert_eq!(fs::metadata(&partial).unwrap().len(), half);
    assert!(!dir.path().join(MODEL_FILE).exists());

    let before = server.log().len();
    let (result, events) = download(&server, dir.path(), 0, PATIENT);
    result.unwrap();
    println!("resumed: {events:?}");
    assert_complete(dir.path());
    assert!(events.contains(&format!("present {CONFIG_FILE}")), "{events:?}");
    assert!(events.contains(&format!("start {MODEL_FILE} from {half}")), "{events:?}");
    let log = server.log();
    let cdn: Vec<_> = log[before..].iter().filter(|l| l.path.starts_with("/cdn/")).collect();
    assert_eq!(cdn.len(), 1, "{log:?}");
    assert_eq!(cdn[0].range.as_deref(), Some(format!("bytes={half}-").as_str()));
    assert_eq!((cdn[0].status, cdn[0].served), (206, size - half), "only the rest is sent");
}

#[test]
fn retries_resume_within_one_call() {
    let server = start_hub();
    let dir = tempfile::tempdir().unwrap();
    let (size, third) = (model_len(), model_len() / 3);
    server.fault(Fault::DropAfter(third));
    let (result, events) = download(&server, dir.path(), 2, PATIENT);
    result.unwrap();
    assert_complete(dir.path());
    let model_events: Vec<_> = events.iter().filter(|e| e.contains(MODEL_FILE)).collect();
    let expected = [
        format!("start {MODEL_FILE} from 0"),
        format!("retry {MODEL_FILE} 1"),
        format!("start {MODEL_FILE} from {third}"),
        format!("done {MODEL_FILE} fetched {size} sha256 true"),
    ];
    assert_eq!(model_events, expected.iter().collect::<Vec<_>>());
    let served: Vec<_> = server.log().into_iter().filter(|l| l.path.starts_with("/cdn/")).collect();
    assert_eq!(served.iter().map(|l| l.served).collect::<Vec<_>>(), [third, size - third]);
}

#[test]
fn a_missing_repo_or_file_is_a_clear_error() {
    let server = start_hub();
    let dir = tempfile::tempdir().unwrap();
    let hub = client(server.url(), PATIENT);
    for (repo, file) in [("openai-community/gpt3", CONFIG_FILE), (REPO, "pytorch_model.bin")] {
        let err = download_files(&hub, repo, &[file], dir.path(), 0, |_| {}).unwrap_err();
        assert!(
            matches!(&err, DownloadError::Hub(HubError::NotFound { status: 404, .. })),
            "{err:?}"
        );
        let message = err.to_string();
        println!("not found: {message}");
        let url = format!("{}/{repo}/resolve/main/{file}", server.url());
        for part in [repo, file, "404", &url] {
            assert!(message.contains(part), "{message:?} should name {part}");
        }
    }
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "nothing written");
}

#[test]
fn a_sha256_mismatch_is_an_error_and_leaves_nothing_behind() {
    let server = start_hub();
    server.announce_wrong_sha256(REPO, MODEL_FILE);
    let dir = tempfile::tempdir().unwrap();
    let (result, _) = download(&server, dir.path(), 0, PATIENT);
    let err = result.unwrap_err();
    let DownloadError::Sha256 { expected, found, .. } = &err else {
        panic!("expected a sha256 mismatch, got {err:?}")
    };
    assert_eq!(expected, &"0".repeat(64));
    let message = err.to_string();
    println!("sha256 mismatch: {message}");
    for part in [&format!("{REPO}/{MODEL_FILE}"), expected, found] {
        assert!(message.contains(part.as_str()), "{message:?} should name {part}");
    }
    let path = dir.path().join(MODEL_FILE);
    assert!(!path.exists() && !partial_path(&path).exists(), "a bad download is deleted");
}

#[test]
fn a_stalled_server_times_out_with_a_clear_message() {
    let server = start_hub();
    let dir = tempfile::tempdir().unwrap();
    let half = model_len() / 2;
    server.fault(Fault::StallAfter(half));
    let started = Instant::now();
    let (result, _) = download(&server, dir.path(), 0, Duration::from_millis(300));
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    let err = result.unwrap_err();
    let message = err.to_string();
    println!("stalled: {message}");
    assert!(
        matches!(&err, DownloadError::Interrupted { done, source, .. }
            if *done == half && matches!(**source, HubError::Timeout { .. })),
        "{err:?}"
    );
    assert!(message.contains("no answer within 0.3 s (read timed out)"), "{message}");
    assert!(message.contains("/cdn/"), "{message}");
    assert_eq!(fs::metadata(partial_path(&dir.path().join(MODEL_FILE))).unwrap().len(), half);

    // A server that accepts the connection and never answers at all.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            thread::spawn(move || while matches!(stream.read(&mut [0; 4096]), Ok(n) if n > 0) {});
        }
    });
    let started = Instant::now();
    let err = client(&url, Duration::from_millis(300)).remote_file(REPO, CONFIG_FILE).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    println!("silent: {err}");
    assert!(matches!(&err, HubError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("{url}/{REPO}/resolve/main/{CONFIG_FILE}")));
}

fn host_tools(args: &[&str], endpoint_env: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_host-tools"));
    command.args(args).env_remove("HF_ENDPOINT");
    if let Some(endpoint) = endpoint_env {
        command.env("HF_ENDPOINT", endpoint);
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "host-tools {args:?} failed: {stderr}");
    output
}

#[test]
fn the_download_command_takes_the_endpoint_from_hf_endpoint() {
    let server = start_hub();
    let models = tempfile::tempdir().unwrap();
    let models_dir = models.path().to_str().unwrap();
    let args = ["download", "--model_size", "124M", "--models_dir", models_dir];
    let output = host_tools(&args, Some(server.url()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("download, stderr:\n{}stdout: {stdout}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("GPT-2 124M is in"), "{stdout}");
    assert_complete(&models.path().join("124M"));

    let output = host_tools(&args, Some(server.url()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("download again, stderr:\n{stderr}");
    assert_eq!(stderr.matches("already there").count(), 4, "{stderr}");
}

#[test]
fn run_downloads_and_packs_on_first_use_and_reuses_both() {
    let server = start_hub();
    let models = tempfile::tempdir().unwrap();
    let models_dir = models.path().to_str().unwrap();
    let prompt = "Alan Turing theorized that computers would one day become";
    let args = [
        "run",
        prompt,
        "--model_size",
        "124M",
        "--models_dir",
        models_dir,
        "--endpoint",
        server.url(),
        "-n",
        "3",
    ];
    let first = host_tools(&args, None);
    let stderr = String::from_utf8_lossy(&first.stderr);
    println!("first use, stderr:\n{stderr}");
    for part in ["downloading", MODEL_FILE, "packing", "there is no pack yet", "packed"] {
        assert!(stderr.contains(part), "stderr should mention {part}:\n{stderr}");
    }
    let stdout = String::from_utf8_lossy(&first.stdout).into_owned();
    println!("first use, stdout:\n{stdout}");
    assert!(stdout.contains("generated: "), "{stdout}");
    assert_complete(&models.path().join("124M"));
    let pack = models.path().join("124M/model-int8.pgpt");
    assert!(pack.exists());

    let requests = server.log().len();
    let second = host_tools(&args, None);
    assert_eq!(server.log().len(), requests, "nothing downloaded again");
    assert_eq!(String::from_utf8_lossy(&second.stderr), "", "nothing packed again");
    assert_eq!(String::from_utf8_lossy(&second.stdout).lines().next(), stdout.lines().next());

    // A pack older than the checkpoint is rebuilt, without downloading.
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    fs::File::options().write(true).open(&pack).unwrap().set_modified(an_hour_ago).unwrap();
    let third = host_tools(&args, None);
    assert_eq!(server.log().len(), requests);
    let stderr = String::from_utf8_lossy(&third.stderr);
    println!("stale pack, stderr:\n{stderr}");
    assert!(stderr.contains("the pack is older than the checkpoint"), "{stderr}");

    // A pack without its checkpoint (copied from elsewhere) is used as it is.
    for file in FILES {
        fs::remove_file(models.path().join("124M").join(file)).unwrap();
    }
    let fourth = host_tools(&args, None);
    assert_eq!(server.log().len(), requests);
    assert_eq!(String::from_utf8_lossy(&fourth.stderr), "");
}

#[cfg(unix)]
#[test]
fn ctrl_c_mid_download_keeps_the_partial_file_and_says_how_to_resume() {
    use std::os::unix::process::ExitStatusExt;
    let server = start_hub();
    server.fault(Fault::StallAfter(model_len() / 2));
    let models = tempfile::tempdir().unwrap();
    let models_dir = models.path().to_str().unwrap();
    let args = ["download", "--model_size", "124M", "--models_dir", models_dir];
    let child = Command::new(env!("CARGO_BIN_EXE_host-tools"))
        .args(args)
        .env("HF_ENDPOINT", server.url())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let partial = partial_path(&models.path().join("124M").join(MODEL_FILE));
    let started = Instant::now();
    while fs::metadata(&partial).map_or(0, |m| m.len()) == 0 {
        assert!(started.elapsed() < PATIENT, "the download never wrote its partial file");
        thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: sending SIGINT to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("interrupted, stderr:\n{stderr}");
    assert_eq!(out.status.signal(), Some(libc::SIGINT), "{stderr}");
    // The transfer runs on while the signal is handled, so the bytes said may trail the file.
    let kept = fs::metadata(&partial).unwrap().len();
    let said = format!("kept {} (", partial.display());
    let line = stderr.lines().find(|l| l.starts_with(&said)).unwrap_or_else(|| panic!("{stderr}"));
    let bytes: u64 = line[said.len()..].split(' ').next().unwrap().parse().unwrap();
    assert!(bytes > 0 && bytes <= kept, "{stderr}");
    assert!(line.ends_with(" bytes): run the same command again to resume"), "{stderr}");

    let output = host_tools(&args, Some(server.url()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("model.safetensors: resuming after"), "{stderr}");
    assert_complete(&models.path().join("124M"));
}
