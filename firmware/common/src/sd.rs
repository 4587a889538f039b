//! Boards with an SD card: the pack is `MODEL.PGP` in the root of a FAT volume, read through
//! embedded-sdmmc, and each console line is answered from it (feature `sd`).

use core::fmt::{self, Write};

use embedded_sdmmc::{BlockDevice, File, Mode, TimeSource, Timestamp, VolumeIdx, VolumeManager};
use picogpt_core::{Model, Storage};

use crate::options::{Options, parse_line};
use crate::prompt::DEFAULT_PROMPT;
use crate::session::{Clock, Failure, Memory, generate, write_timing};
use crate::{CHUNK_BYTES, MAX_PROMPT};

/// The pack, in the card's root directory (an 8.3 name: embedded-sdmmc reads no long names).
pub const MODEL_FILE: &str = "MODEL.PGP";

/// Open directories, files and volumes the board needs: the root, the pack, one volume.
type Volumes<D> = VolumeManager<D, NoClock, 1, 1, 1>;

/// The file system's error over a card whose own error is `E`.
pub type FsError<E> = embedded_sdmmc::Error<E>;

/// Files are only read: every timestamp is the FAT epoch.
pub struct NoClock;

impl TimeSource for NoClock {
    fn get_timestamp(&self) -> Timestamp {
        Timestamp::from_fat(0, 0)
    }
}

/// A file on the card as core's [`Storage`]: seeks where core reads, reads what it asks.
pub struct CardFile<'a, D: BlockDevice> {
    file: File<'a, D, NoClock, 1, 1, 1>,
    len: u64,
    /// The file's position, to skip needless seeks.
    pos: u64,
}

impl<'a, D: BlockDevice> CardFile<'a, D> {
    /// Wraps an open file.
    pub fn new(file: File<'a, D, NoClock, 1, 1, 1>) -> Self {
        let len = u64::from(file.length());
        Self { file, len, pos: 0 }
    }
}

impl<D: BlockDevice> Storage for CardFile<'_, D> {
    type Error = FsError<D::Error>;

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, Self::Error> {
        if offset >= self.len {
            return Ok(0);
        }
        if offset != self.pos {
            let at = u32::try_from(offset).map_err(|_| embedded_sdmmc::Error::InvalidOffset)?;
            self.file.seek_from_start(at)?;
            self.pos = offset;
        }
        let n = self.file.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }

    fn size(&mut self) -> Result<u64, Self::Error> {
        Ok(self.len)
    }
}

/// Why a console line got no answer.
#[derive(Debug)]
pub enum Problem<E: core::error::Error> {
    /// The card does not answer.
    Card(E),
    /// The file system, or the pack's file on it.
    File(&'static str, FsError<E>),
    /// Core, the model or the board's RAM.
    Generate(Failure<FsError<E>>),
}

impl<E: core::error::Error> fmt::Display for Problem<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Card(e) => write!(f, "SD card: {e} (is a card in the slot?)"),
            Self::File(what, e) => write!(f, "{what}: {e}"),
            Self::Generate(e) => write!(f, "{MODEL_FILE}: {e}"),
        }
    }
}

/// What a board brings to answer a line.
pub struct Board<'m, W, C> {
    /// Core's workspace and the KV cache.
    pub memory: Memory<'m>,
    /// The console.
    pub out: W,
    /// The clock the timing lines are measured with.
    pub clock: C,
    /// Clock ticks per millisecond.
    pub ticks_per_ms: u64,
    /// Flags not given on the line (the board's `-n`, `--kv`, `--activations`).
    pub defaults: Options<'static>,
}

/// Answers one console line from the card: token ids and flags (empty: picoGPT's prompt),
/// `restart` (re)starts the card, then the lines of [`generate`] and the timing follow, or
/// one `error:` line. Gives the card back for the next line.
pub fn answer_line<D: BlockDevice, W: Write, C: Clock>(
    line: &str,
    card: D,
    restart: impl FnOnce(&D) -> Result<u64, D::Error>,
    board: &mut Board<'_, W, C>,
) -> D {
    let options = match parse_line(line, board.defaults.clone(), &DEFAULT_PROMPT) {
        Ok(options) => options,
        Err(e) => {
            let _ = writeln!(board.out, "error: {e}");
            return card;
        }
    };
    if let Err(e) = restart(&card) {
        let _ = writeln!(board.out, "error: {}", Problem::Card(e));
        return card;
    }
    let volumes = Volumes::new_with_limits(card, NoClock, 5000);
    if let Err(problem) = answer(&options, &volumes, board) {
        let _ = writeln!(board.out, "error: {problem}");
    }
    volumes.free().0
}

/// Opens the pack on the card and generates what `options` ask.
fn answer<D: BlockDevice, W: Write, C: Clock>(
    options: &Options<'_>,
    volumes: &Volumes<D>,
    board: &mut Board<'_, W, C>,
) -> Result<(), Problem<D::Error>> {
    let volume = volumes.open_volume(VolumeIdx(0)).map_err(|e| Problem::File("FAT volume", e))?;
    let root = volume.open_root_dir().map_err(|e| Problem::File("root directory", e))?;
    let file = root
        .open_file_in_dir(MODEL_FILE, Mode::ReadOnly)
        .map_err(|e| Problem::File(MODEL_FILE, e))?;
    let mut model = Model::open(CardFile::new(file)).map_err(|e| Problem::Generate(e.into()))?;
    let request = options.request(CHUNK_BYTES, MAX_PROMPT);
    let memory = Memory { workspace: &mut *board.memory.workspace, kv: &mut *board.memory.kv };
    let stats = generate(&mut model, memory, &request, &mut board.out, &mut board.clock)
        .map_err(Problem::Generate)?;
    let _ = write_timing(&mut board.out, &stats, board.ticks_per_ms, "");
    Ok(())
}
