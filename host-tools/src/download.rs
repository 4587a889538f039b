//! Downloading a repository's files from the hub into a folder, as picoGPT's first run does:
//! files already there are kept, a download cut off half way resumes where it stopped, and
//! every file is checked against the size (and, for LFS files, the sha256) the hub announces.
//!
//! Bytes go to `<file>.partial` and are renamed to `<file>` only when complete and verified,
//! so a file under its own name is always whole. A partial file is kept when the connection
//! breaks or stalls (the next run resumes it with an HTTP `Range` request); a partial file
//! that is complete but fails verification (or grew past the announced size) is deleted,
//! since resuming cannot repair it, and the next run starts that file over.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::hub::{Hub, HubError, RemoteFile};

/// Suffix of a download in progress.
pub const PARTIAL_SUFFIX: &str = ".partial";
/// Bytes per read from the network.
const BUFFER_BYTES: usize = 256 * 1024;

/// What a download is doing, for progress display.
#[derive(Debug)]
pub enum Event<'a> {
    /// The file is already in the folder with the announced size; it is not fetched.
    Present {
        /// The file.
        file: &'a str,
        /// Its size.
        bytes: u64,
    },
    /// Fetching starts (or resumes at `from`).
    Start {
        /// The file.
        file: &'a str,
        /// Its announced size.
        size: u64,
        /// Bytes already in the partial file, not fetched again.
        from: u64,
    },
    /// `done` bytes of the file are on disk.
    Progress {
        /// The file.
        file: &'a str,
        /// Bytes on disk.
        done: u64,
    },
    /// The connection broke or stalled; the download resumes (attempt `attempt` of `of`).
    Retry {
        /// The file.
        file: &'a str,
        /// What went wrong.
        reason: &'a HubError,
        /// The retry about to start, from 1.
        attempt: u32,
        /// Retries allowed.
        of: u32,
    },
    /// The file is complete, verified and in place.
    Done {
        /// The file.
        file: &'a str,
        /// Its size.
        bytes: u64,
        /// Bytes fetched over the network for it in this call (less than `bytes` on resume).
        fetched: u64,
        /// Whether the sha256 was checked (the hub announces one for LFS files only).
        sha256_checked: bool,
    },
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The hub could not announce the file.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// A local file or folder could not be read, written or renamed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the OS reported.
        source: io::Error,
    },
    /// The transfer broke off; what arrived is kept for the next run to resume.
    #[error(
        "{source}; {done} of {size} bytes of {file} are kept in {}: run again to resume",
        .partial.display()
    )]
    Interrupted {
        /// The file, as `{repo}/{file}`.
        file: String,
        /// The partial file.
        partial: PathBuf,
        /// Bytes in it.
        done: u64,
        /// The announced size.
        size: u64,
        /// What broke.
        source: Box<HubError>,
    },
    /// The server sent more bytes than the hub announced; the partial file was deleted.
    #[error("{file}: {url} sent more than the {expected} bytes the hub announced")]
    TooLong {
        /// The file, as `{repo}/{file}`.
        file: String,
        /// Where the bytes came from.
        url: String,
        /// The announced size.
        expected: u64,
    },
    /// The download is complete but its sha256 differs; the partial file was deleted.
    #[error(
        "{file}: sha256 of the {size} bytes downloaded is {found}, the hub announced \
         {expected}; deleted {}: run again to download it anew",
        .partial.display()
    )]
    Sha256 {
        /// The file, as `{repo}/{file}`.
        file: String,
        /// The deleted partial file.
        partial: PathBuf,
        /// Its size.
        size: u64,
        /// The announced sha256.
        expected: String,
        /// The sha256 of what arrived.
        found: String,
    },
    /// A file already in the folder does not have the announced size (it is left alone).
    #[error(
        "{} is {found} bytes but the hub announces {expected} for {file}: delete it and run \
         again",
        .path.display()
    )]
    PresentSize {
        /// The file, as `{repo}/{file}`.
        file: String,
        /// The local file.
        path: PathBuf,
        /// The announced size.
        expected: u64,
        /// The local size.
        found: u64,
    },
}

/// Fetches `files` of `repo` into `dir` (created when the first bytes arrive, so a hub that
/// cannot be reached leaves no empty folder), one after the other. A transfer that breaks or
/// stalls is resumed up to `retries` times before the error is returned (its partial file
/// then stays for the next call to resume).
pub fn download_files(
    hub: &Hub,
    repo: &str,
    files: &[&str],
    dir: &Path,
    retries: u32,
    mut on_event: impl FnMut(Event<'_>),
) -> Result<(), DownloadError> {
    for file in files {
        let remote = hub.remote_file(repo, file)?;
        let path = dir.join(file);
        if let Ok(meta) = fs::metadata(&path) {
            if meta.len() != remote.size {
                return Err(DownloadError::PresentSize {
                    file: remote.name(),
                    path,
                    expected: remote.size,
                    found: meta.len(),
                });
            }
            on_event(Event::Present { file, bytes: meta.len() });
            continue;
        }
        let mut attempt = 0;
        let mut fetched = 0;
        loop {
            match fetch(hub, &remote, &path, &mut fetched, &mut on_event) {
                Err(DownloadError::Interrupted { source, .. }) if attempt < retries => {
                    let source = *source;
                    attempt += 1;
                    on_event(Event::Retry { file, reason: &source, attempt, of: retries });
                }
                result => break result?,
            }
        }
        let sha256_checked = remote.sha256.is_some();
        on_event(Event::Done { file, bytes: remote.size, fetched, sha256_checked });
    }
    Ok(())
}

/// `<path>.partial`.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(PARTIAL_SUFFIX);
    PathBuf::from(name)
}

/// One attempt at `remote`: resumes its partial file, verifies it when complete and renames
/// it to `path`. Adds the bytes received to `fetched`.
fn fetch(
    hub: &Hub,
    remote: &RemoteFile,
    path: &Path,
    fetched: &mut u64,
    on_event: &mut impl FnMut(Event<'_>),
) -> Result<(), DownloadError> {
    let partial = partial_path(path);
    let io = |source| DownloadError::Io { path: partial.clone(), source };
    let mut done = fs::metadata(&partial).map_or(0, |m| m.len());
    if done > remote.size {
        fs::remove_file(&partial).map_err(io)?;
        done = 0;
    }
    let mut hasher = Sha256::new();
    if done > 0 && remote.sha256.is_some() {
        let mut existing = File::open(&partial).map_err(io)?.take(done);
        io::copy(&mut existing, &mut HashWriter(&mut hasher)).map_err(io)?;
    }
    if done < remote.size || done == 0 {
        stream(hub, remote, &partial, done, &mut hasher, fetched, on_event)?;
    }
    if let Some(expected) = &remote.sha256 {
        let found = hex(&hasher.finalize());
        if &found != expected {
            fs::remove_file(&partial).map_err(io)?;
            return Err(DownloadError::Sha256 {
                file: remote.name(),
                partial,
                size: remote.size,
                expected: expected.clone(),
                found,
            });
        }
    }
    fs::rename(&partial, path).map_err(|source| DownloadError::Io { path: path.into(), source })
}

/// Appends the rest of `remote` from byte `done` to `partial` (from 0 if the server ignores
/// the range), hashing it when the hub announced a sha256, until the announced size.
fn stream(
    hub: &Hub,
    remote: &RemoteFile,
    partial: &Path,
    mut done: u64,
    hasher: &mut Sha256,
    fetched: &mut u64,
    on_event: &mut impl FnMut(Event<'_>),
) -> Result<(), DownloadError> {
    let io = |source| DownloadError::Io { path: partial.into(), source };
    let mut download = hub.open(remote, done)?;
    if download.start < done {
        // The server ignored the range and sends the whole file.
        done = 0;
        *hasher = Sha256::new();
    }
    let dir = crate::partial::folder_of(partial);
    fs::create_dir_all(dir).map_err(|source| DownloadError::Io { path: dir.into(), source })?;
    let _kept_on_interrupt = crate::partial::Resumable::register(partial);
    let mut file =
        OpenOptions::new().create(true).write(true).truncate(false).open(partial).map_err(io)?;
    file.set_len(done).map_err(io)?;
    file.seek(SeekFrom::Start(done)).map_err(io)?;
    let mut out = BufWriter::with_capacity(BUFFER_BYTES, file);
    on_event(Event::Start { file: &remote.file, size: remote.size, from: done });
    let interrupted = |done, source| DownloadError::Interrupted {
        file: remote.name(),
        partial: partial.into(),
        done,
        size: remote.size,
        source: Box::new(source),
    };
    let mut buf = vec![0; BUFFER_BYTES];
    while done < remote.size {
        let n = match download.read(&mut buf) {
            Ok(0) => {
                let source = HubError::Lost {
                    url: download.url().into(),
                    source: io::Error::new(io::ErrorKind::UnexpectedEof, "the body ended early"),
                };
                out.flush().map_err(io)?;
                return Err(interrupted(done, source));
            }
            Ok(n) => n,
            Err(source) => {
                out.flush().map_err(io)?;
                return Err(interrupted(done, source));
            }
        };
        if done + n as u64 > remote.size {
            drop(out);
            fs::remove_file(partial).map_err(io)?;
            let (file, url, expected) = (remote.name(), download.url().into(), remote.size);
            return Err(DownloadError::TooLong { file, url, expected });
        }
        out.write_all(&buf[..n]).map_err(io)?;
        if remote.sha256.is_some() {
            hasher.update(&buf[..n]);
        }
        done += n as u64;
        *fetched += n as u64;
        on_event(Event::Progress { file: &remote.file, done });
    }
    out.flush().map_err(io)
}

/// Feeds what is written to a hasher.
struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
