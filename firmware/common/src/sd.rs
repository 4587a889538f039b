//! Boards with an SD card: the pack is `MODEL.PGP` in the root of a FAT volume, read through
//! embedded-sdmmc, KV positions beyond the RAM go to `KV.BIN` beside it, and each console
//! line is answered from them (feature `sd`). Without a card, a pack in flash may answer.

use core::convert::Infallible;
use core::fmt::{self, Write};

use embedded_sdmmc::{
    BlockDevice, Directory, File, Mode, TimeSource, Timestamp, VolumeIdx, VolumeManager,
};
use picogpt_core::{Model, Storage, StorageMut};

use crate::board::{Board, answer, answer_from_memory, is_pack};
use crate::failure::Failure;
use crate::kv::{Spill, SpillError};
use crate::options::{MAX_LINE, parse_line};
use crate::prompt::DEFAULT_PROMPT;
use crate::session::Clock;

/// The pack, in the card's root directory (an 8.3 name: embedded-sdmmc reads no long names).
pub const MODEL_FILE: &str = "MODEL.PGP";

/// The spilled part of the KV cache, beside the pack: created when a context first needs it,
/// grown when a longer one does, never shrunk (delete it to get the space back).
pub const KV_FILE: &str = "KV.BIN";

/// Bytes written per call while `KV.BIN` grows: one sector.
const SECTOR: usize = 512;

/// The card's file system, with as many open directories, files and volumes as the board
/// needs: the root; the pack and `KV.BIN`; one volume.
pub type Volumes<D> = VolumeManager<D, NoClock, 1, 2, 1>;

/// An open file on the card.
type CardFileHandle<'a, D> = File<'a, D, NoClock, 1, 2, 1>;

/// The card's root directory.
pub type Root<'a, D> = Directory<'a, D, NoClock, 1, 2, 1>;

/// The file system's error over a card whose own error is `E`.
pub type FsError<E> = embedded_sdmmc::Error<E>;

/// The board keeps no time: every timestamp is the FAT epoch.
pub struct NoClock;

impl TimeSource for NoClock {
    fn get_timestamp(&self) -> Timestamp {
        Timestamp::from_fat(0, 0)
    }
}

/// A file on the card as core's [`Storage`] (and [`StorageMut`] when opened for writing):
/// seeks where core reads or writes, then reads or writes what it asks.
pub struct CardFile<'a, D: BlockDevice> {
    file: CardFileHandle<'a, D>,
    len: u64,
    /// The file's position, to skip needless seeks.
    pos: u64,
}

impl<'a, D: BlockDevice> CardFile<'a, D> {
    /// Wraps an open file.
    fn new(file: CardFileHandle<'a, D>) -> Self {
        let len = u64::from(file.length());
        let pos = u64::from(file.offset());
        Self { file, len, pos }
    }

    /// Moves the file's position to `offset`, unless it is there.
    fn seek(&mut self, offset: u64) -> Result<(), FsError<D::Error>> {
        if offset != self.pos {
            let at = u32::try_from(offset).map_err(|_| embedded_sdmmc::Error::InvalidOffset)?;
            self.file.seek_from_start(at)?;
            self.pos = offset;
        }
        Ok(())
    }
}

impl<D: BlockDevice> Storage for CardFile<'_, D> {
    type Error = FsError<D::Error>;

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, Self::Error> {
        if offset >= self.len {
            return Ok(0);
        }
        self.seek(offset)?;
        let n = self.file.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }

    fn size(&mut self) -> Result<u64, Self::Error> {
        Ok(self.len)
    }
}

impl<D: BlockDevice> StorageMut for CardFile<'_, D> {
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), Self::Error> {
        self.seek(offset)?;
        self.file.write(buf)?;
        self.pos += buf.len() as u64;
        self.len = self.len.max(self.pos);
        Ok(())
    }
}

/// `KV.BIN` in the card's root, opened read-write (created or grown) when a generation
/// needs it.
pub struct CardSpill<'r, 'a, D: BlockDevice> {
    root: &'r Root<'a, D>,
}

impl<'r, 'a, D: BlockDevice> CardSpill<'r, 'a, D> {
    /// `KV.BIN` in `root`.
    pub fn new(root: &'r Root<'a, D>) -> Self {
        Self { root }
    }
}

impl<'a, D: BlockDevice> Spill for CardSpill<'_, 'a, D> {
    type Storage = CardFile<'a, D>;

    fn medium(&self) -> &'static str {
        "sd"
    }

    fn name(&self) -> &str {
        KV_FILE
    }

    fn open(&mut self, bytes: u64) -> Result<CardFile<'a, D>, SpillError<FsError<D::Error>>> {
        let at_most =
            u32::try_from(bytes).map_err(|_| SpillError::TooLarge { what: KV_FILE, bytes })?;
        let fail = |error| SpillError::Storage { what: KV_FILE, error };
        let file =
            self.root.open_file_in_dir(KV_FILE, Mode::ReadWriteCreateOrAppend).map_err(fail)?;
        // Opened for appending: each write extends the file from its end.
        let zeros = [0u8; SECTOR];
        while file.length() < at_most {
            let before = file.length();
            let n = (at_most - before).min(SECTOR as u32) as usize;
            file.write(zeros.get(..n).unwrap_or_default()).map_err(fail)?;
            if file.length() <= before {
                return Err(SpillError::TooLarge { what: KV_FILE, bytes });
            }
        }
        file.flush().map_err(fail)?;
        Ok(CardFile::new(file))
    }
}

/// Why a console line got no answer.
#[derive(Debug)]
pub enum Problem<E: core::error::Error> {
    /// The card does not answer.
    Card(E),
    /// The file system, or the pack's file on it.
    File(&'static str, FsError<E>),
    /// Core, the model or the board's RAM, with the pack on the card.
    Generate(Failure<FsError<E>>),
    /// The same, with the pack in flash.
    Flash(Failure<Infallible>),
}

impl<E: core::error::Error> fmt::Display for Problem<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Card(e) => write!(f, "SD card: {e} (is a card in the slot?)"),
            Self::File(what, e) => write!(f, "{what}: {e}"),
            Self::Generate(e @ Failure::Spill(_)) => write!(f, "{e}"),
            Self::Generate(e) => write!(f, "{MODEL_FILE}: {e}"),
            Self::Flash(e) => write!(f, "the pack in flash: {e}"),
        }
    }
}

/// Answers one console line: a prompt (token ids or text) and flags (empty: picoGPT's
/// prompt). `restart` (re)starts the card; the lines of [`crate::session::generate`] and the
/// timing follow, or one `error:` line. Without a card, a pack in `flash` (XIP-mapped, its
/// magic checked here) answers instead. Gives the card back for the next line.
pub fn answer_line<D: BlockDevice, W: Write, C: Clock>(
    line: &[u8],
    card: D,
    restart: impl FnOnce(&D) -> Result<u64, D::Error>,
    flash: Option<&[u8]>,
    board: &mut Board<'_, W, C>,
) -> D {
    let mut text = [0u8; MAX_LINE];
    let options = match parse_line(line, board.defaults.clone(), &DEFAULT_PROMPT, &mut text) {
        Ok(options) => options,
        Err(e) => {
            let _ = writeln!(board.out, "error: {e}");
            return card;
        }
    };
    if let Err(e) = restart(&card) {
        let problem = match flash.filter(|pack| is_pack(pack)) {
            Some(pack) => answer_from_memory(pack, &options, board).err().map(Problem::Flash),
            None => Some(Problem::Card(e)),
        };
        if let Some(problem) = problem {
            let _ = writeln!(board.out, "error: {problem}");
        }
        return card;
    }
    let volumes = Volumes::new_with_limits(card, NoClock, 5000);
    if let Err(problem) = answer_from_card(&options, &volumes, board) {
        let _ = writeln!(board.out, "error: {problem}");
    }
    volumes.free().0
}

/// Opens the pack on the card and generates what `options` ask, spilling to `KV.BIN`.
fn answer_from_card<D: BlockDevice, W: Write, C: Clock>(
    options: &crate::Options<'_>,
    volumes: &Volumes<D>,
    board: &mut Board<'_, W, C>,
) -> Result<(), Problem<D::Error>> {
    let volume = volumes.open_volume(VolumeIdx(0)).map_err(|e| Problem::File("FAT volume", e))?;
    let root = volume.open_root_dir().map_err(|e| Problem::File("root directory", e))?;
    let file = root
        .open_file_in_dir(MODEL_FILE, Mode::ReadOnly)
        .map_err(|e| Problem::File(MODEL_FILE, e))?;
    let mut model = Model::open(CardFile::new(file)).map_err(|e| Problem::Generate(e.into()))?;
    let mut spill = CardSpill::new(&root);
    answer(&mut model, options, &mut spill, board).map_err(Problem::Generate)
}
