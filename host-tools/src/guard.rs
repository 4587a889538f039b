//! The paths a command is given, checked before it does any work.
//!
//! [`check_outputs`] is the one guard every command that writes runs first: an output must not
//! be any of the command's inputs (by any name: the same path, a symlink or a hard link), must
//! not replace a pack or a checkpoint's weights with something else, must not be a folder (or,
//! for a folder output, a file), and must be in a folder that exists and takes new files. The
//! input checks ([`pack_file`], [`checkpoint_folder`], [`tokenizer_folder`]) turn the usual
//! mix-ups — a folder given as a pack, a pack given as a folder, a path that is not there —
//! into errors that say what to type instead. Each error names the path, and for an output the
//! flag that gave it.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::checkpoint::{CONFIG_FILE, MODEL_FILE};
use crate::partial::{PartialFile, folder_of};
use crate::tokenizer::{MERGES_FILE, VOCAB_FILE};

/// What is wrong with a path a command was given.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// An output is one of the command's inputs.
    #[error(
        "{flag} {} is {}: writing there would destroy it{}",
        .output.display(), same_as(.output, .input), suffix(.instead)
    )]
    OutputIsInput {
        /// The flag that named the output.
        flag: String,
        /// The output.
        output: PathBuf,
        /// The input it is.
        input: PathBuf,
        /// What to type instead, if known.
        instead: Option<String>,
    },
    /// An output would replace a pack or a checkpoint's weights with another kind of file.
    #[error(
        "{flag} {}: that is {what}, which this output would replace{}",
        .output.display(), suffix(.instead)
    )]
    WouldReplace {
        /// The flag that named the output.
        flag: String,
        /// The output.
        output: PathBuf,
        /// `a pack`, `a checkpoint's weights`.
        what: &'static str,
        /// What to type instead, if known.
        instead: Option<String>,
    },
    /// A file output names a folder.
    #[error("{flag} {} is a folder: give a file name{}", .output.display(), suffix(.instead))]
    OutputIsFolder {
        /// The flag that named the output.
        flag: String,
        /// The output.
        output: PathBuf,
        /// What to type instead, if known.
        instead: Option<String>,
    },
    /// A folder output names a file.
    #[error("{flag} {} is a file: this command writes a folder of files there", .output.display())]
    OutputIsFile {
        /// The flag that named the output.
        flag: String,
        /// The output.
        output: PathBuf,
    },
    /// The folder an output goes in does not exist.
    #[error(
        "{flag} {}: there is no folder {} (create it first: `mkdir -p {}`)",
        .output.display(), .folder.display(), .folder.display()
    )]
    NoFolder {
        /// The flag that named the output.
        flag: String,
        /// The output.
        output: PathBuf,
        /// The missing folder.
        folder: PathBuf,
    },
    /// The folder an output goes in does not take new files.
    #[error("{flag} {}: cannot write in {}: {source}", .output.display(), .folder.display())]
    Unwritable {
        /// The flag that named the output.
        flag: String,
        /// The output.
        output: PathBuf,
        /// Its folder.
        folder: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// An input path cannot be looked at.
    #[error("{}: {source}", .path.display())]
    Unreadable {
        /// The path.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// An input path is not there.
    #[error("{}: no such {what}{}", .path.display(), suffix(.instead))]
    Missing {
        /// The path.
        path: PathBuf,
        /// `file`, `folder`.
        what: &'static str,
        /// What to type instead, if known.
        instead: Option<String>,
    },
    /// An input is the wrong kind of thing: a folder for a pack, a pack for a folder, ….
    #[error("{} {problem}{}", .path.display(), suffix(.instead))]
    WrongKind {
        /// The path.
        path: PathBuf,
        /// What it is, and what was wanted.
        problem: String,
        /// What to type instead, if known.
        instead: Option<String>,
    },
}

/// `one of the files this command reads`, naming the file when the output names it otherwise.
fn same_as(output: &Path, input: &Path) -> String {
    if output == input {
        "one of the files this command reads".to_owned()
    } else {
        format!("the same file as {}, which this command reads", input.display())
    }
}

/// `: <hint>`, or nothing.
fn suffix(hint: &Option<String>) -> String {
    hint.as_ref().map_or(String::new(), |s| format!(": {s}"))
}

/// `did you mean `<what>`?`: the hint for a mistake with an obvious intended meaning.
pub fn did_you_mean(what: impl std::fmt::Display) -> String {
    format!("did you mean `{what}`?")
}

/// An output path as a command was given it.
#[derive(Clone, Debug)]
pub struct Output<'a> {
    flag: &'a str,
    path: &'a Path,
    folder: bool,
    makes_pack: bool,
    instead: Option<String>,
}

impl<'a> Output<'a> {
    /// A file that is not a pack (a JSON report, a UF2), given with `flag`.
    pub fn file(flag: &'a str, path: &'a Path) -> Self {
        Self { flag, path, folder: false, makes_pack: false, instead: None }
    }

    /// A pack file (it may replace an older pack).
    pub fn pack(flag: &'a str, path: &'a Path) -> Self {
        Self { makes_pack: true, ..Self::file(flag, path) }
    }

    /// A folder the command writes files into (created if missing).
    pub fn folder(flag: &'a str, path: &'a Path) -> Self {
        Self { folder: true, ..Self::file(flag, path) }
    }

    /// The hint the error ends with (what to type instead).
    pub fn instead(mut self, hint: String) -> Self {
        self.instead = Some(hint);
        self
    }
}

/// Checks every output against every input and the file system; see the module doc.
pub fn check_outputs(outputs: &[Output<'_>], inputs: &[PathBuf]) -> Result<(), GuardError> {
    for out in outputs {
        let flag = out.flag.to_owned();
        let output = out.path.to_owned();
        if let Some(input) = inputs.iter().find(|input| same_file(out.path, input)) {
            let input = input.clone();
            return Err(GuardError::OutputIsInput {
                flag,
                output,
                input,
                instead: out.instead.clone(),
            });
        }
        let meta = fs::metadata(out.path).ok();
        if out.folder {
            if meta.is_some_and(|m| !m.is_dir()) {
                return Err(GuardError::OutputIsFile { flag, output });
            }
            continue;
        }
        if meta.as_ref().is_some_and(fs::Metadata::is_dir) {
            return Err(GuardError::OutputIsFolder { flag, output, instead: out.instead.clone() });
        }
        if meta.is_some() {
            let what = if is_pack(out.path) && !out.makes_pack {
                Some("a pack")
            } else if out.path.extension().is_some_and(|e| e == "safetensors") {
                Some("a checkpoint's weights")
            } else {
                None
            };
            if let Some(what) = what {
                return Err(GuardError::WouldReplace {
                    flag,
                    output,
                    what,
                    instead: out.instead.clone(),
                });
            }
        }
        let folder = folder_of(out.path).to_owned();
        if !folder.is_dir() {
            return Err(GuardError::NoFolder { flag, output, folder });
        }
        // The probe is the same hidden partial file the real write will use, removed at once.
        PartialFile::create(out.path).map_err(|source| GuardError::Unwritable {
            flag,
            output,
            folder,
            source,
        })?;
    }
    Ok(())
}

/// Whether two paths name one existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(x), Ok(y)) = (fs::metadata(a), fs::metadata(b)) else { return false };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        x.dev() == y.dev() && x.ino() == y.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (x, y);
        fs::canonicalize(a).ok() == fs::canonicalize(b).ok()
    }
}

/// Whether `path` is a file that starts with a pack's magic.
pub fn is_pack(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok()
        && magic == picogpt_core::format::MAGIC
}

/// The files of a checkpoint folder that commands read: its inputs, for [`check_outputs`].
pub fn checkpoint_files(dir: &Path) -> Vec<PathBuf> {
    [CONFIG_FILE, MODEL_FILE, VOCAB_FILE, MERGES_FILE].iter().map(|f| dir.join(f)).collect()
}

/// The hint for a checkpoint folder given where a pack is needed.
fn pack_first(dir: &Path) -> String {
    let pack = dir.join("model-int8.pgpt");
    format!("pack it first: `host-tools pack {} -o {}`", dir.display(), pack.display())
}

/// A pack file to read: there, a file, and not a checkpoint's file or folder.
pub fn pack_file(path: &Path) -> Result<(), GuardError> {
    let wrong = |problem: String, instead: Option<String>| GuardError::WrongKind {
        path: path.to_owned(),
        problem,
        instead,
    };
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(GuardError::Missing { path: path.to_owned(), what: "file", instead: None });
        }
        Err(source) => return Err(GuardError::Unreadable { path: path.to_owned(), source }),
    };
    if meta.is_dir() {
        if path.join(CONFIG_FILE).exists() {
            let problem = "is a checkpoint folder, not a pack".to_owned();
            return Err(wrong(problem, Some(pack_first(path))));
        }
        let pack = fs::read_dir(path).ok().and_then(|entries| {
            let mut packs: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "pgpt"))
                .collect();
            packs.sort();
            packs.into_iter().next()
        });
        let instead = pack.map(|p| did_you_mean(p.display()));
        return Err(wrong("is a folder, not a pack file".to_owned(), instead));
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let is_checkpoint_file = [CONFIG_FILE, VOCAB_FILE, MERGES_FILE].contains(&name)
        || path.extension().is_some_and(|e| e == "safetensors");
    if is_checkpoint_file && !is_pack(path) {
        let problem = "is a checkpoint's file, not a pack".to_owned();
        return Err(wrong(problem, Some(pack_first(folder_of(path)))));
    }
    Ok(())
}

/// A folder to read, or what it is instead.
fn folder(path: &Path, wanted: &str) -> Result<(), GuardError> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) if is_pack(path) => Err(GuardError::WrongKind {
            path: path.to_owned(),
            problem: format!("is a pack; this needs {wanted}"),
            instead: None,
        }),
        Ok(_) => Err(GuardError::WrongKind {
            path: path.to_owned(),
            problem: format!("is a file; this needs {wanted}"),
            instead: Some(folder_of(path))
                .filter(|dir| dir.join(CONFIG_FILE).exists())
                .map(|dir| did_you_mean(dir.display())),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(GuardError::Missing { path: path.to_owned(), what: "folder", instead: None })
        }
        Err(source) => Err(GuardError::Unreadable { path: path.to_owned(), source }),
    }
}

/// A Hugging Face checkpoint folder to read: there, a folder, with a `config.json`.
pub fn checkpoint_folder(path: &Path) -> Result<(), GuardError> {
    let wanted = "the checkpoint folder (config.json, model.safetensors)";
    folder(path, wanted)?;
    if !path.join(CONFIG_FILE).exists() {
        return Err(GuardError::WrongKind {
            path: path.to_owned(),
            problem: format!("has no {CONFIG_FILE}: this needs {wanted}"),
            instead: None,
        });
    }
    Ok(())
}

/// A folder whose `vocab.json` + `merges.txt` to use as the tokenizer.
pub fn tokenizer_folder(path: &Path) -> Result<(), GuardError> {
    folder(path, "a folder with vocab.json and merges.txt")?;
    if !path.join(VOCAB_FILE).exists() || !path.join(MERGES_FILE).exists() {
        return Err(GuardError::WrongKind {
            path: path.to_owned(),
            problem: format!(
                "has no {VOCAB_FILE} and {MERGES_FILE}; leave out --model-dir to use GPT-2's \
                 tokenizer"
            ),
            instead: None,
        });
    }
    Ok(())
}
