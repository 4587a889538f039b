//! `host-tools download`, and `run --model_size`'s first use: GPT-2 from the Hugging Face
//! hub into `<models_dir>/<size>/`, then packed when the pack is missing or out of date.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Result, anyhow};
use host_tools::checkpoint::{CONFIG_FILE, MODEL_FILE};
use host_tools::download::{DownloadError, Event, download_files};
use host_tools::guard::{self, Output};
use host_tools::hub::{DEFAULT_ENDPOINT, ENDPOINT_ENV, Hub, HubError, HubOptions};
use host_tools::tokenizer::{MERGES_FILE, VOCAB_FILE};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

use host_tools::pack::PackOptions;

use super::pack::{INT8_BLOCK, QuantArg, pack_folder};
use super::run::ModelSize;

/// The files of a checkpoint folder that `pack` reads.
const FILES: [&str; 4] = [CONFIG_FILE, MODEL_FILE, VOCAB_FILE, MERGES_FILE];

/// `download`'s arguments.
#[derive(clap::Args)]
pub struct Args {
    /// GPT-2 size: 124M, 355M, 774M or 1558M.
    #[arg(long, visible_alias = "model_size", ignore_case = true)]
    model_size: ModelSize,
    /// The files go to `<models_dir>/<size>/`, where `run --model_size` looks.
    #[arg(long, visible_alias = "models_dir", default_value = "models")]
    models_dir: PathBuf,
    #[command(flatten)]
    hub: HubArgs,
}

/// Where the hub is and how long to wait for it (shared by `download` and `run`).
#[derive(clap::Args)]
pub struct HubArgs {
    /// The hub's address: a mirror, or a local server.
    #[arg(long, env = ENDPOINT_ENV, default_value = DEFAULT_ENDPOINT, value_parser = endpoint)]
    endpoint: String,
    /// Seconds to wait for a connection to the hub.
    #[arg(long, value_parser = seconds, default_value = "30")]
    connect_timeout: Duration,
    /// Seconds without data after which a transfer counts as stalled.
    #[arg(long, value_parser = seconds, default_value = "60")]
    read_timeout: Duration,
    /// Times a transfer that broke off or stalled is resumed before giving up.
    #[arg(long, default_value_t = 3)]
    retries: u32,
}

/// Downloads the checkpoint and says how to run it.
pub fn main(args: Args) -> Result<()> {
    let dir = args.models_dir.join(args.model_size.name());
    check_models_dir(&args.models_dir, &dir)?;
    download(args.model_size, &dir, &args.hub)?;
    println!(
        "GPT-2 {} is in {}: run it with `host-tools run \"prompt\" --model_size {} --models_dir {}`",
        args.model_size.name(),
        dir.display(),
        args.model_size.name(),
        args.models_dir.display()
    );
    Ok(())
}

/// `run --model_size`'s first use: the pack `<models_dir>/<size>/model-<quant>.pgpt`, made
/// when it is missing or older than the checkpoint's `model.safetensors`, after downloading
/// whatever of the checkpoint is missing. A pack with no checkpoint beside it is used as is.
/// Says what it does, and how big things are, on stderr.
pub fn first_use(
    size: ModelSize,
    models_dir: &Path,
    quant: QuantArg,
    hub: &HubArgs,
) -> Result<PathBuf> {
    let dir = models_dir.join(size.name());
    check_models_dir(models_dir, &dir)?;
    let pack = pack_path(size, models_dir, quant);
    let checkpoint = dir.join(MODEL_FILE);
    let reason = match (modified(&pack)?, modified(&checkpoint)?) {
        (None, _) => "there is no pack yet",
        (Some(packed), Some(changed)) if packed < changed => {
            "the pack is older than the checkpoint"
        }
        (Some(_), _) => return Ok(pack),
    };
    let missing: Vec<&str> = FILES.into_iter().filter(|f| !dir.join(f).exists()).collect();
    if !missing.is_empty() {
        eprintln!(
            "GPT-2 {} is not in {} (missing {}): downloading it",
            size.name(),
            dir.display(),
            missing.join(", ")
        );
        download(size, &dir, hub)?;
    }
    let bytes = fs::metadata(&checkpoint).map_err(|e| anyhow!("{}: {e}", checkpoint.display()))?;
    eprintln!(
        "packing {} ({}) as {} into {}: {reason}",
        checkpoint.display(),
        HumanBytes(bytes.len()),
        quant.name(),
        pack.display()
    );
    let opts = PackOptions::new(quant.matrices(INT8_BLOCK), true);
    let summary = pack_folder(&dir, &pack, &opts, true)?;
    eprintln!("packed {} ({})", pack.display(), HumanBytes(summary.file_bytes));
    Ok(pack)
}

/// Where `run --model_size` finds (or makes) its pack: `<models_dir>/<size>/model-<quant>.pgpt`.
pub fn pack_path(size: ModelSize, models_dir: &Path, quant: QuantArg) -> PathBuf {
    models_dir.join(size.name()).join(format!("model-{}.pgpt", quant.name()))
}

/// `--models_dir` and its `<size>` folder must be folders (or not exist yet).
fn check_models_dir(models_dir: &Path, dir: &Path) -> Result<()> {
    let outputs = [Output::folder("--models_dir", models_dir), Output::folder("--models_dir", dir)];
    Ok(guard::check_outputs(&outputs, &[])?)
}

/// Downloads GPT-2 `size`'s checkpoint into `dir`, with a progress bar per file.
fn download(size: ModelSize, dir: &Path, args: &HubArgs) -> Result<()> {
    let hub = Hub::new(HubOptions {
        endpoint: args.endpoint.clone(),
        connect_timeout: args.connect_timeout,
        read_timeout: args.read_timeout,
    });
    let repo = repo(size);
    eprintln!("GPT-2 {}: {} -> {}", size.name(), hub.repo_url(repo), dir.display());
    let style = ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {wide_msg}",
    )?;
    let mut bar: Option<ProgressBar> = None;
    download_files(&hub, repo, &FILES, dir, args.retries, |event| match event {
        Event::Present { file, bytes } => {
            eprintln!("{file}: already there ({}), skipped", HumanBytes(bytes));
        }
        Event::Start { file, size, from } => {
            if from > 0 {
                eprintln!("{file}: resuming after {} of {}", HumanBytes(from), HumanBytes(size));
            }
            let new =
                ProgressBar::new(size).with_style(style.clone()).with_message(file.to_owned());
            new.set_position(from);
            bar = Some(new);
        }
        Event::Progress { done, .. } => {
            if let Some(bar) = &bar {
                bar.set_position(done);
            }
        }
        Event::Retry { file, reason, attempt, of } => {
            if let Some(bar) = bar.take() {
                bar.abandon();
            }
            eprintln!("{file}: {reason}; resuming (retry {attempt} of {of})");
        }
        Event::Done { file, bytes, fetched, sha256_checked } => {
            if let Some(bar) = bar.take() {
                bar.finish_and_clear();
            }
            let check = if sha256_checked { "size and sha256" } else { "size" };
            let resumed = if fetched < bytes {
                format!(" ({} fetched now)", HumanBytes(fetched))
            } else {
                String::new()
            };
            eprintln!("{file}: {}{resumed}, {check} as announced", HumanBytes(bytes));
        }
    })
    .map_err(|e| unreachable_hint(e, dir, &args.endpoint))
}

/// A hub that cannot be reached at all (no network, a wrong address) gets the ways around it.
fn unreachable_hint(error: DownloadError, dir: &Path, endpoint: &str) -> anyhow::Error {
    match error {
        DownloadError::Hub(HubError::Request { .. } | HubError::Timeout { .. }) => anyhow!(
            "{error}\n  the hub at {endpoint} cannot be reached: check the connection, or point \
             --endpoint (or {ENDPOINT_ENV}) at a mirror; without a network, put {} into {} \
             yourself (--models_dir chooses the folder), or a pack made elsewhere at {}",
            FILES.join(", "),
            dir.display(),
            dir.join("model-int8.pgpt").display()
        ),
        other => other.into(),
    }
}

/// The hub repository of each GPT-2 size.
fn repo(size: ModelSize) -> &'static str {
    match size {
        ModelSize::M124 => "openai-community/gpt2",
        ModelSize::M355 => "openai-community/gpt2-medium",
        ModelSize::M774 => "openai-community/gpt2-large",
        ModelSize::M1558 => "openai-community/gpt2-xl",
    }
}

/// A file's modification time, `None` if it does not exist.
fn modified(path: &Path) -> Result<Option<SystemTime>> {
    match fs::metadata(path).and_then(|m| m.modified()) {
        Ok(time) => Ok(Some(time)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!("{}: {e}", path.display())),
    }
}

/// An `http://` or `https://` address.
fn endpoint(text: &str) -> Result<String, String> {
    if text.starts_with("https://") || text.starts_with("http://") {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not an http:// or https:// address (unset {ENDPOINT_ENV} for the hub, \
             {DEFAULT_ENDPOINT})"
        ))
    }
}

/// A duration given in (possibly fractional) seconds.
fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("expected a positive number of seconds, found {text:?}"))
}
