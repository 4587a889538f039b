//! Files being written, and what is left of them when a command stops early.
//!
//! Every file a command writes (a pack, a checkpoint, a JSON report, a UF2) goes first to a
//! hidden name beside its destination, `.NAME.PID-N.partial`, and is renamed over the
//! destination only when it is complete, so a destination is always either what it was or
//! whole. A partial file is removed when its write fails or is dropped unfinished, and
//! [`remove_all`] removes every one still open: the CLI calls it on Ctrl-C, SIGTERM or SIGHUP
//! and when stdout fails, where no destructor runs. A partial file whose process was killed
//! outright (SIGKILL, a power cut) is removed by the next write to the same destination.
//!
//! Downloads are the exception: their `<file>.partial` is kept on purpose for the next run to
//! resume; [`Resumable`] only lets [`remove_all`] say where it is.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A file or folder being written, and what to do with it if the process stops.
#[derive(Debug)]
enum Entry {
    /// An unfinished file, removed.
    File(PathBuf),
    /// An unfinished folder, removed with its contents.
    Folder(PathBuf),
    /// A download kept for the next run to resume.
    Resumable(PathBuf),
}

impl Entry {
    fn path(&self) -> &Path {
        match self {
            Self::File(path) | Self::Folder(path) | Self::Resumable(path) => path,
        }
    }
}

/// Everything being written now.
static OPEN: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
/// Numbers the partial files of this process.
static NEXT: AtomicU64 = AtomicU64::new(0);

fn open_entries() -> MutexGuard<'static, Vec<Entry>> {
    OPEN.lock().unwrap_or_else(PoisonError::into_inner)
}

fn forget(path: &Path) {
    open_entries().retain(|e| e.path() != path);
}

/// What [`remove_all`] did.
#[derive(Debug, Default)]
pub struct Removed {
    /// Unfinished files and folders that were removed.
    pub removed: Vec<PathBuf>,
    /// Downloads kept for the next run to resume.
    pub kept: Vec<PathBuf>,
    _held: Option<MutexGuard<'static, Vec<Entry>>>,
}

/// Removes every unfinished file and folder of this process, for a process about to end
/// without running destructors (a signal, a failed stdout). The registry stays locked while
/// the result lives, so no new partial file can start in the meantime.
pub fn remove_all() -> Removed {
    let mut open = open_entries();
    let mut done = Removed::default();
    for entry in open.drain(..) {
        match entry {
            Entry::File(path) => {
                if fs::remove_file(&path).is_ok() {
                    done.removed.push(path);
                }
            }
            Entry::Folder(path) => {
                if fs::remove_dir_all(&path).is_ok() {
                    done.removed.push(path);
                }
            }
            Entry::Resumable(path) => done.kept.push(path),
        }
    }
    done._held = Some(open);
    done
}

/// The hidden name of a partial file or folder for `dest`, unique within this process.
fn partial_name(dest: &Path) -> io::Result<PathBuf> {
    let name = dest.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{} names no file", dest.display()))
    })?;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut hidden = std::ffi::OsString::from(".");
    hidden.push(name);
    hidden.push(format!(".{}-{n}.partial", std::process::id()));
    Ok(folder_of(dest).join(hidden))
}

/// The folder `path` is in (`.` for a bare name).
pub fn folder_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Removes partial files for `dest` whose process is gone (killed before it could clean up).
fn sweep_stale(dest: &Path) {
    let Some(name) = dest.file_name().and_then(|n| n.to_str()) else { return };
    let Ok(entries) = fs::read_dir(folder_of(dest)) else { return };
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let Some(pid) = rest
            .strip_suffix(".partial")
            .and_then(|r| r.split_once('-'))
            .and_then(|(pid, n)| n.parse::<u64>().ok().and(pid.parse::<u32>().ok()))
        else {
            continue;
        };
        if pid != std::process::id() && !process_exists(pid) {
            let path = entry.path();
            let _ = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
        }
    }
}

/// Whether a process with this id is running (then its partial files are left alone).
fn process_exists(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else { return true };
        // SAFETY: signal 0 only checks whether the process exists; nothing is sent.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        alive || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// A file written under a hidden name beside `dest`, renamed to `dest` by [`Self::finish`]
/// and removed if dropped before.
#[derive(Debug)]
pub struct PartialFile {
    path: PathBuf,
    dest: PathBuf,
    file: File,
}

impl PartialFile {
    /// Creates the partial file for `dest` (whose folder must exist).
    pub fn create(dest: &Path) -> io::Result<Self> {
        sweep_stale(dest);
        let path = partial_name(dest)?;
        let mut open = open_entries();
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
        open.push(Entry::File(path.clone()));
        Ok(Self { path, dest: dest.to_owned(), file })
    }

    /// The open file, to write (and seek) through: `&File` is `Write + Seek`.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The hidden name it is written under.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes the file to disk and renames it over the destination.
    pub fn finish(self) -> io::Result<()> {
        self.file.sync_all()?;
        let open = open_entries();
        fs::rename(&self.path, &self.dest)?;
        drop(open);
        forget(&self.path);
        std::mem::forget(self);
        Ok(())
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        forget(&self.path);
    }
}

/// Writes `bytes` to `dest` through a [`PartialFile`]: `dest` is replaced whole or not at all.
pub fn write(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let partial = PartialFile::create(dest)?;
    partial.file().write_all(bytes)?;
    partial.finish()
}

/// A hidden folder beside `dest` to assemble several files in, removed (with whatever is in
/// it) when dropped: the caller moves the finished files out of it first.
#[derive(Debug)]
pub struct PartialFolder {
    path: PathBuf,
}

impl PartialFolder {
    /// Creates the folder for `dest`, a name inside an existing folder.
    pub fn create(dest: &Path) -> io::Result<Self> {
        sweep_stale(dest);
        let path = partial_name(dest)?;
        let mut open = open_entries();
        fs::create_dir(&path)?;
        open.push(Entry::Folder(path.clone()));
        Ok(Self { path })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves `name`, finished inside this folder, to `dest`, readable by all as a file meant
    /// to be shared (whatever wrote it may have made it owner-only).
    pub fn move_out(&self, name: &str, dest: &Path) -> io::Result<()> {
        let from = self.path.join(name);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&from, fs::Permissions::from_mode(0o644))?;
        }
        let open = open_entries();
        fs::rename(&from, dest)?;
        drop(open);
        Ok(())
    }
}

impl Drop for PartialFolder {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
        forget(&self.path);
    }
}

/// A download's `.partial` file, kept when the process stops so the next run resumes it; while
/// this lives, [`remove_all`] reports where it is.
#[derive(Debug)]
pub struct Resumable {
    path: PathBuf,
}

impl Resumable {
    /// Registers `path` until the returned value is dropped.
    pub fn register(path: &Path) -> Self {
        open_entries().push(Entry::Resumable(path.to_owned()));
        Self { path: path.to_owned() }
    }
}

impl Drop for Resumable {
    fn drop(&mut self) {
        forget(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_finished_file_replaces_its_destination_and_an_unfinished_one_vanishes() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        fs::write(&dest, b"old").unwrap();
        let partial = PartialFile::create(&dest).unwrap();
        partial.file().write_all(b"half").unwrap();
        assert_eq!(names(dir.path()).len(), 2);
        drop(partial);
        assert_eq!(fs::read(&dest).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["out.bin"]);

        write(&dest, b"new").unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"new");
        assert_eq!(names(dir.path()), ["out.bin"]);
    }

    // `remove_all` empties the registry of the whole process, so it would race the other
    // tests here: host-tools/tests/mistakes.rs checks it through the CLI, under SIGINT.

    #[test]
    fn partial_files_of_dead_processes_are_swept_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("model.pgpt");
        // No process has the largest id (Linux stops at 2^22); this one is alive.
        let dead = dir.path().join(format!(".model.pgpt.{}-0.partial", i32::MAX));
        let alive = dir.path().join(format!(".model.pgpt.{}-999.partial", std::process::id()));
        let other = dir.path().join(format!(".other.pgpt.{}-0.partial", i32::MAX));
        for path in [&dead, &alive, &other] {
            fs::write(path, b"x").unwrap();
        }
        write(&dest, b"new").unwrap();
        assert!(!dead.exists() && alive.exists() && other.exists());
    }
}
