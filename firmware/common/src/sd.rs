//! Boards with an SD card: the pack is `MODEL.PGP` in the root of the card's FAT volume, KV
//! positions beyond the RAM go to `KV.BIN` beside it, and each console line is answered from
//! them. embedded-sdmmc finds the files (and grows `KV.BIN`); their bytes are then read and
//! written straight on the card through [`crate::card`], whatever carries the blocks
//! ([`BlockDevice`]). Without a card, a pack in flash may answer.

use core::fmt::{self, Write};

use embedded_sdmmc::{DirEntry, Directory, Mode, TimeSource, Timestamp, VolumeIdx, VolumeManager};
use picogpt_core::{Model, Storage};

use crate::block::{BLOCK_BYTES, BlockDevice};
use crate::board::{Board, answer, answer_from_flash, holds_pack};
use crate::card::{Card, CardFile, CardFileError, SdmmcView, Slot};
use crate::failure::Failure;
use crate::fat::Fat;
use crate::kv::{Spill, SpillError};
use crate::meter::Metered;
use crate::options::{MAX_LINE, Options, parse_line};
use crate::prompt::DEFAULT_PROMPT;
use crate::request::{Clock, Stats};

/// The pack, in the card's root directory (an 8.3 name: embedded-sdmmc reads no long names).
pub const MODEL_FILE: &str = "MODEL.PGP";

/// The spilled part of the KV cache, beside the pack: created when a context first needs it,
/// grown when a longer one does, never shrunk (delete it to get the space back).
pub const KV_FILE: &str = "KV.BIN";

/// What to do about a pack in too many pieces.
const PACK_FRAGMENTED: &str = "copy it again to a freshly formatted card";
/// What to do about a `KV.BIN` in too many pieces.
const KV_FRAGMENTED: &str = "delete KV.BIN so that it is made again in one piece";

/// Most blocks embedded-sdmmc may read while it looks for a file.
const FS_BLOCK_LIMIT: u32 = 5000;

/// The card's file system as embedded-sdmmc sees it, with as many open directories, files and
/// volumes as a line needs: the root; `KV.BIN` while it grows; one volume.
pub type Volumes<'c, 'b, D> = VolumeManager<SdmmcView<'c, 'b, D>, NoClock, 1, 2, 1>;

/// The card's root directory.
pub type Root<'v, 'c, 'b, D> = Directory<'v, SdmmcView<'c, 'b, D>, NoClock, 1, 2, 1>;

/// The board keeps no time: every timestamp is the FAT epoch.
pub struct NoClock;

impl TimeSource for NoClock {
    fn get_timestamp(&self) -> Timestamp {
        Timestamp::from_fat(0, 0)
    }
}

/// The RAM a board sets aside for reading the card: the pack's window (as large as the RAM
/// allows, whole blocks: 16 KiB on the boards) and `KV.BIN`'s (a few KiB).
pub struct Windows<'w> {
    /// The pack's window.
    pub pack: &'w mut [u8],
    /// `KV.BIN`'s window.
    pub kv: &'w mut [u8],
}

/// Where a directory entry sits on the card: its block and its offset there.
fn entry_at(entry: &DirEntry) -> (u32, u32) {
    (entry.entry_block.0, entry.entry_offset)
}

/// `KV.BIN` in the card's root, created or grown (through embedded-sdmmc) when a generation
/// needs it, then mapped and written straight on the card.
pub struct CardSpill<'r, 'v, 'c, 'b, D: BlockDevice> {
    root: &'r Root<'v, 'c, 'b, D>,
    card: &'c Card<'b, D>,
    fat: Fat,
    /// Whether `KV.BIN` was created or grown (the volume's free count changed).
    pub grew: bool,
}

impl<'r, 'v, 'c, 'b, D: BlockDevice> CardSpill<'r, 'v, 'c, 'b, D> {
    /// `KV.BIN` in `root` on `card`, whose volume is laid out as `fat`.
    pub fn new(root: &'r Root<'v, 'c, 'b, D>, card: &'c Card<'b, D>, fat: Fat) -> Self {
        Self { root, card, fat, grew: false }
    }
}

impl<'c, 'b, D: BlockDevice> Spill for CardSpill<'_, '_, 'c, 'b, D> {
    type Storage = CardFile<'c, 'b, D>;

    fn medium(&self) -> &'static str {
        "sd"
    }

    fn name(&self) -> &str {
        KV_FILE
    }

    fn available(&self) -> Result<(), &'static str> {
        Ok(())
    }

    fn open(
        &mut self,
        bytes: u64,
    ) -> Result<CardFile<'c, 'b, D>, SpillError<CardFileError<D::Error>>> {
        let at_most =
            u32::try_from(bytes).map_err(|_| SpillError::TooLarge { what: KV_FILE, bytes })?;
        let fail = |error| SpillError::Storage { what: KV_FILE, error };
        let fs = |e| fail(CardFileError::from(e));
        let file =
            self.root.open_file_in_dir(KV_FILE, Mode::ReadWriteCreateOrAppend).map_err(fs)?;
        // Opened for appending: each write extends the file from its end.
        let zeros = [0u8; BLOCK_BYTES];
        while file.length() < at_most {
            self.grew = true;
            let before = file.length();
            let n = (at_most - before).min(BLOCK_BYTES as u32) as usize;
            file.write(zeros.get(..n).unwrap_or_default()).map_err(fs)?;
            if file.length() <= before {
                return Err(SpillError::TooLarge { what: KV_FILE, bytes });
            }
        }
        file.close().map_err(fs)?;
        let entry = self.root.find_directory_entry(KV_FILE).map_err(fs)?;
        self.card
            .open(&self.fat, entry_at(&entry), (KV_FILE, KV_FRAGMENTED), Slot::Kv)
            .map_err(fail)
    }
}

/// Why a console line got no answer (`FE`: the flash's error).
#[derive(Debug)]
pub enum Problem<E, FE = core::convert::Infallible> {
    /// The card does not start.
    Card(E),
    /// The volume, or a file on it: what, and why.
    Open(&'static str, CardFileError<E>),
    /// Core, the model or the board's RAM, with the pack on the card.
    Generate(Failure<CardFileError<E>>),
    /// The same, with the pack in flash.
    Flash(Failure<FE, core::convert::Infallible>),
}

impl<E: fmt::Debug + fmt::Display, FE: fmt::Display> fmt::Display for Problem<E, FE> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Card(e) => write!(f, "SD card: {e} (is a card in the slot?)"),
            Self::Open(what, e) => write!(f, "{what}: {e}"),
            Self::Generate(e @ Failure::Spill(_)) => write!(f, "{e}"),
            Self::Generate(e) => write!(f, "{MODEL_FILE}: {e}"),
            Self::Flash(e) => write!(f, "the pack in flash: {e}"),
        }
    }
}

/// Answers one console line: a prompt (token ids or text) and flags (empty: picoGPT's
/// prompt). `restart` (re)starts the card behind `device`; the lines of
/// [`crate::session::generate`] and the timing follow, or one `error:` line. Without a card, a
/// pack in `flash` (its magic checked here) answers instead.
pub fn answer_line<D: BlockDevice + Metered, F: Storage + Metered, W: Write, C: Clock>(
    line: &[u8],
    device: &mut D,
    restart: impl FnOnce(&mut D) -> Result<u64, D::Error>,
    windows: Windows<'_>,
    flash: Option<F>,
    board: &mut Board<'_, W, C>,
) {
    let mut text = [0u8; MAX_LINE];
    let options = match parse_line(line, board.defaults.clone(), &DEFAULT_PROMPT, &mut text) {
        Ok(options) => options,
        Err(e) => {
            let _ = writeln!(board.out, "error: {e}");
            return;
        }
    };
    let answered = match restart(device) {
        Ok(_) => answer_from_card(&options, &Card::new(device, windows.pack, windows.kv), board),
        Err(e) => match flash {
            Some(mut pack) => {
                if holds_pack(&mut pack) {
                    answer_from_flash(pack, &options, board).map_err(Problem::Flash)
                } else {
                    Err(Problem::Card(e))
                }
            }
            None => Err(Problem::Card(e)),
        },
    };
    match answered {
        Ok(stats) => board.report(&stats),
        Err(problem) => {
            let _ = writeln!(board.out, "error: {problem}");
        }
    }
}

/// Opens the pack on the started `card` and generates what `options` ask, spilling to
/// `KV.BIN`; returns what it cost.
pub fn answer_from_card<D: BlockDevice + Metered, W: Write, C: Clock, FE>(
    options: &Options<'_>,
    card: &Card<'_, D>,
    board: &mut Board<'_, W, C>,
) -> Result<Stats, Problem<D::Error, FE>> {
    let volume_error = |e| Problem::Open("FAT volume", e);
    let fat = card.fat().map_err(volume_error)?;
    let volumes: Volumes<'_, '_, D> =
        VolumeManager::new_with_limits(SdmmcView::new(card), NoClock, FS_BLOCK_LIMIT);
    let fs = |what| move |e| Problem::Open(what, CardFileError::from(e));
    // A raw volume: closing one rewrites FAT32's info sector, which only a grown KV.BIN changes.
    let raw = volumes.open_raw_volume(VolumeIdx(0)).map_err(fs("FAT volume"))?;
    let root = volumes.open_root_dir(raw).map_err(fs("root directory"))?.to_directory(&volumes);
    let entry = root.find_directory_entry(MODEL_FILE).map_err(fs(MODEL_FILE))?;
    let pack = card
        .open(&fat, entry_at(&entry), (MODEL_FILE, PACK_FRAGMENTED), Slot::Pack)
        .map_err(|e| Problem::Open(MODEL_FILE, e))?;
    let mut model = Model::open(pack).map_err(|e| Problem::Generate(e.into()))?;
    let mut spill = CardSpill::new(&root, card, fat);
    let answered = answer(&mut model, options, &mut spill, board).map_err(Problem::Generate);
    let grew = spill.grew;
    drop(root);
    if grew {
        volumes.close_volume(raw).map_err(fs("FAT volume"))?;
    }
    answered
}
