//! Files on the card read straight from the block device: `MODEL.PGP` and `KV.BIN`, each
//! mapped once into extents ([`FileMap`]) and read through a window of blocks of its own.
//!
//! A read that continues the previous one (or that core announced with
//! [`Storage::prefetch`]) fills the whole window with one multi-block read and announces the
//! window after it to the device ([`BlockDevice::read_ahead`]), so the next window's transfer
//! runs while core computes on this one; any other read fetches only the blocks it covers.
//! Writes (`KV.BIN`) read the blocks they cut into first, then write them back.
//!
//! embedded-sdmmc still finds the files and grows `KV.BIN`: it reaches the card through
//! [`SdmmcView`], a block at a time, only while a file is opened.

use core::cell::RefCell;
use core::fmt;

use embedded_sdmmc::{Block, BlockCount, BlockIdx};
use picogpt_core::{Storage, StorageMut};

use crate::block::{BLOCK_BYTES, BlockDevice};
use crate::fat::{Fat, FatError, FileMap, MapError};
use crate::meter::{Metered, Traffic};

/// Which window a file reads through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// The pack: a large window, for whole passes over the weights.
    Pack,
    /// `KV.BIN`: a small one, for KV records.
    Kv,
}

impl Slot {
    fn index(self) -> usize {
        match self {
            Self::Pack => 0,
            Self::Kv => 1,
        }
    }
}

/// Blocks of a file held in RAM.
struct Window<'b> {
    buf: &'b mut [u8],
    /// File offset of the first block (a multiple of 512).
    start: u64,
    /// Card block of the first block.
    first: u32,
    /// Valid blocks.
    blocks: usize,
}

impl Window<'_> {
    fn capacity(&self) -> usize {
        self.buf.len() / BLOCK_BYTES
    }

    /// The end of the window as a file offset.
    fn end(&self) -> u64 {
        self.start + (self.blocks * BLOCK_BYTES) as u64
    }

    fn contains(&self, offset: u64) -> bool {
        (self.start..self.end()).contains(&offset)
    }
}

/// The card, shared by its open files and by embedded-sdmmc.
pub struct Card<'b, D> {
    io: RefCell<Io<'b, D>>,
}

struct Io<'b, D> {
    device: D,
    windows: [Window<'b>; 2],
    /// The read-ahead announced to the device and not yet claimed: (block, count).
    ahead: Option<(u32, usize)>,
}

impl<D> Io<'_, D> {
    /// Forgets every window holding a block in `first..first + count` (written behind them).
    fn invalidate(&mut self, first: u32, count: u32) {
        for w in &mut self.windows {
            if w.blocks > 0 && first < w.first + w.blocks as u32 && w.first < first + count {
                w.blocks = 0;
            }
        }
    }
}

/// Why a file on the card could not be read or written.
#[derive(Debug)]
pub enum CardFileError<E> {
    /// The card failed.
    Device(E),
    /// A write past the end of the file (which is grown beforehand).
    BeyondEnd {
        /// Offset of the write.
        offset: u64,
        /// The file's length.
        len: u64,
    },
    /// The file is not in the card's root directory.
    NotFound,
    /// embedded-sdmmc failed to find, create or grow the file: what went wrong.
    Fs(&'static str),
    /// The volume or the file's cluster chain is not as it should be.
    Fat(FatError),
}

impl<E> From<MapError<E>> for CardFileError<E> {
    fn from(e: MapError<E>) -> Self {
        match e {
            MapError::Read(e) => Self::Device(e),
            MapError::Fat(e) => Self::Fat(e),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> fmt::Display for CardFileError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Device(e) => write!(f, "SD card: {e}"),
            Self::BeyondEnd { offset, len } => {
                write!(f, "a write at offset {offset} is past the file's {len} bytes")
            }
            Self::NotFound => write!(f, "not in the card's root directory"),
            Self::Fs(what) => write!(f, "FAT volume: {what}"),
            Self::Fat(e) => write!(f, "{e}"),
        }
    }
}

impl<E> From<embedded_sdmmc::Error<DeviceError<E>>> for CardFileError<E>
where
    DeviceError<E>: core::error::Error,
{
    fn from(e: embedded_sdmmc::Error<DeviceError<E>>) -> Self {
        use embedded_sdmmc::Error as Fs;
        match e {
            Fs::DeviceError(DeviceError(e)) => Self::Device(e),
            Fs::NotFound => Self::NotFound,
            Fs::FormatError(what) => Self::Fs(what),
            Fs::DiskFull | Fs::NotEnoughSpace => Self::Fs("the card is full"),
            Fs::FilenameError(_) => Self::Fs("bad file name"),
            Fs::NoSuchVolume => Self::Fs("no FAT partition"),
            Fs::BadBlockSize(_) => Self::Fs("sectors are not 512 bytes"),
            Fs::OpenedDirAsFile => Self::Fs("a directory has the file's name"),
            Fs::ReadOnly => Self::Fs("the file is read-only"),
            Fs::BadCluster | Fs::UnterminatedFatChain | Fs::AllocationError => {
                Self::Fs("a broken cluster chain: check the card (fsck.vfat)")
            }
            _ => Self::Fs("file system error"),
        }
    }
}

impl<'b, D: BlockDevice> Card<'b, D> {
    /// The card behind `device`, reading the pack through `pack_window` and `KV.BIN` through
    /// `kv_window` (each a whole number of blocks: the pack's as large as the RAM allows, 16
    /// KiB on the boards; `KV.BIN`'s a few KiB).
    pub fn new(device: D, pack_window: &'b mut [u8], kv_window: &'b mut [u8]) -> Self {
        let window = |buf| Window { buf, start: 0, first: 0, blocks: 0 };
        let windows = [window(pack_window), window(kv_window)];
        Self { io: RefCell::new(Io { device, windows, ahead: None }) }
    }

    /// Gives the device back.
    pub fn into_device(self) -> D {
        self.io.into_inner().device
    }

    /// Runs `f` on the device (a board reading its counters, say).
    pub fn with_device<R>(&self, f: impl FnOnce(&mut D) -> R) -> R {
        f(&mut self.io.borrow_mut().device)
    }

    /// Reads blocks past the windows (FAT metadata).
    pub fn read_raw(&self, first: u32, buf: &mut [u8]) -> Result<(), D::Error> {
        let mut io = self.io.borrow_mut();
        io.ahead = None;
        io.device.read_blocks(first, buf)
    }

    /// Writes blocks past the windows (FAT metadata, `KV.BIN` while it grows); windows
    /// holding them are forgotten.
    pub fn write_raw(&self, first: u32, data: &[u8]) -> Result<(), D::Error> {
        let mut io = self.io.borrow_mut();
        io.ahead = None;
        io.invalidate(first, (data.len() / BLOCK_BYTES) as u32);
        io.device.write_blocks(first, data)
    }

    /// The layout of the card's FAT volume.
    pub fn fat(&self) -> Result<Fat, CardFileError<D::Error>> {
        Ok(Fat::read(&mut |block, buf| self.read_raw(block, buf))?)
    }

    /// Maps the file whose directory entry is at `entry_offset` in card block `entry_block`
    /// (as embedded-sdmmc found it), reading the FAT through `slot`'s window; the file then
    /// reads through that window.
    pub fn open(
        &self,
        fat: &Fat,
        (entry_block, entry_offset): (u32, u32),
        (name, hint): (&'static str, &'static str),
        slot: Slot,
    ) -> Result<CardFile<'_, 'b, D>, CardFileError<D::Error>> {
        let mut block = [0u8; BLOCK_BYTES];
        self.read_raw(entry_block, &mut block).map_err(CardFileError::Device)?;
        let at = (entry_offset as usize).min(BLOCK_BYTES - 32);
        let (cluster, len) = fat.entry_start(&block[at..at + 32]);
        let mut io = self.io.borrow_mut();
        let Io { device, windows, ahead } = &mut *io;
        *ahead = None;
        let window = &mut windows[slot.index()];
        window.blocks = 0;
        let mut read = |first, buf: &mut [u8]| device.read_blocks(first, buf);
        let map = fat.map(name, hint, cluster, u64::from(len), window.buf, &mut read)?;
        Ok(CardFile { card: self, slot, map, last_end: None, hint: None })
    }
}

/// A file on the card as core's [`Storage`] (and, for `KV.BIN`, [`StorageMut`]).
pub struct CardFile<'c, 'b, D> {
    card: &'c Card<'b, D>,
    slot: Slot,
    map: FileMap,
    /// Where the last read ended.
    last_end: Option<u64>,
    /// Where core said the next read will be.
    hint: Option<u64>,
}

impl<D: BlockDevice> CardFile<'_, '_, D> {
    /// Where the file is on the card.
    pub fn map(&self) -> &FileMap {
        &self.map
    }

    /// Fills the window with the blocks from the one holding `offset`: all it holds when the
    /// read streams on, else the ones `len` bytes cover.
    fn fill(
        &self,
        io: &mut Io<'_, D>,
        offset: u64,
        len: usize,
        streaming: bool,
    ) -> Result<(), D::Error> {
        let Some((block, contiguous)) = self.map.locate(offset) else { return Ok(()) };
        let Io { device, windows, ahead } = io;
        let window = &mut windows[self.slot.index()];
        let start = offset - offset % BLOCK_BYTES as u64;
        let covered = ((offset - start) as usize + len).div_ceil(BLOCK_BYTES);
        let wanted =
            if streaming { window.capacity() } else { covered.clamp(1, window.capacity()) };
        let count = wanted.min(contiguous as usize);
        window.blocks = 0;
        *ahead = None;
        device.read_blocks(block, &mut window.buf[..count * BLOCK_BYTES])?;
        (window.start, window.first, window.blocks) = (start, block, count);
        Ok(())
    }

    /// Announces the window that follows the one holding `offset` (or, outside the window,
    /// the one from `offset`) to the device.
    fn announce(&self, io: &mut Io<'_, D>, offset: u64) {
        let window = &io.windows[self.slot.index()];
        let next = if window.contains(offset) { window.end() } else { offset };
        let Some((block, contiguous)) = self.map.locate(next) else { return };
        let count = window.capacity().min(contiguous as usize);
        if io.ahead.is_none() && count > 0 && !(window.contains(next)) {
            io.device.read_ahead(block, count);
            io.ahead = Some((block, count));
        }
    }

    /// Reads or writes within one window's worth of blocks for a write at `offset`.
    fn write_piece(&self, offset: u64, data: &[u8]) -> Result<usize, CardFileError<D::Error>> {
        let device_error = CardFileError::Device;
        let mut io = self.card.io.borrow_mut();
        let (block, contiguous) = self
            .map
            .locate(offset)
            .ok_or(CardFileError::BeyondEnd { offset, len: self.map.len() })?;
        let capacity = io.windows[self.slot.index()].capacity();
        let start = offset - offset % BLOCK_BYTES as u64;
        let head = (offset - start) as usize;
        let blocks =
            (head + data.len()).div_ceil(BLOCK_BYTES).min(capacity).min(contiguous as usize);
        let n = (blocks * BLOCK_BYTES - head).min(data.len());
        let window = &io.windows[self.slot.index()];
        let cached = window.start == start && window.blocks >= blocks && window.first == block;
        if !cached {
            if head == 0 && n.is_multiple_of(BLOCK_BYTES) {
                // Whole blocks: nothing of them survives, nothing to read first.
                let w = &mut io.windows[self.slot.index()];
                (w.start, w.first, w.blocks) = (start, block, blocks);
            } else {
                self.fill(&mut io, offset, n, false).map_err(device_error)?;
            }
        }
        let Io { device, windows, ahead } = &mut *io;
        *ahead = None;
        let window = &mut windows[self.slot.index()];
        window.buf[head..head + n].copy_from_slice(&data[..n]);
        device.write_blocks(block, &window.buf[..blocks * BLOCK_BYTES]).map_err(device_error)?;
        Ok(n)
    }
}

impl<D: BlockDevice> Storage for CardFile<'_, '_, D> {
    type Error = CardFileError<D::Error>;

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let len = self.map.len();
        if offset >= len || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min((len - offset) as usize);
        let streaming = self.hint == Some(offset) || self.last_end == Some(offset);
        let card = self.card;
        let mut io = card.io.borrow_mut();
        if !io.windows[self.slot.index()].contains(offset) {
            self.fill(&mut io, offset, want, streaming).map_err(CardFileError::Device)?;
            if streaming {
                self.announce(&mut io, offset);
            }
        }
        let window = &io.windows[self.slot.index()];
        if !window.contains(offset) {
            return Ok(0);
        }
        let at = (offset - window.start) as usize;
        let n = want.min(window.blocks * BLOCK_BYTES - at);
        buf[..n].copy_from_slice(&window.buf[at..at + n]);
        self.last_end = Some(offset + n as u64);
        Ok(n)
    }

    fn size(&mut self) -> Result<u64, Self::Error> {
        Ok(self.map.len())
    }

    fn prefetch(&mut self, offset: u64, _len: usize) {
        self.hint = Some(offset);
        let mut io = self.card.io.borrow_mut();
        self.announce(&mut io, offset);
    }
}

impl<D: BlockDevice> StorageMut for CardFile<'_, '_, D> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Self::Error> {
        let end = offset + data.len() as u64;
        if end > self.map.len() {
            return Err(CardFileError::BeyondEnd { offset, len: self.map.len() });
        }
        let mut done = 0;
        while done < data.len() {
            done += self.write_piece(offset + done as u64, &data[done..])?;
        }
        Ok(())
    }
}

impl<D: BlockDevice + Metered> Metered for CardFile<'_, '_, D> {
    fn traffic(&self) -> Traffic {
        self.card.io.borrow().device.traffic()
    }
}

/// The card's error, as embedded-sdmmc wants a device's error to be.
#[derive(Debug)]
pub struct DeviceError<E>(pub E);

impl<E: fmt::Display> fmt::Display for DeviceError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for DeviceError<E> {}

/// The card as embedded-sdmmc's block device, a block per call (consecutive blocks continue
/// the same multi-block read).
pub struct SdmmcView<'c, 'b, D> {
    card: &'c Card<'b, D>,
}

impl<'c, 'b, D> SdmmcView<'c, 'b, D> {
    /// embedded-sdmmc's view of `card`.
    pub fn new(card: &'c Card<'b, D>) -> Self {
        Self { card }
    }
}

impl<D: BlockDevice> embedded_sdmmc::BlockDevice for SdmmcView<'_, '_, D> {
    type Error = DeviceError<D::Error>;

    fn read(&self, blocks: &mut [Block], start: BlockIdx) -> Result<(), Self::Error> {
        for (i, block) in blocks.iter_mut().enumerate() {
            self.card.read_raw(start.0 + i as u32, &mut block.contents).map_err(DeviceError)?;
        }
        Ok(())
    }

    fn write(&self, blocks: &[Block], start: BlockIdx) -> Result<(), Self::Error> {
        for (i, block) in blocks.iter().enumerate() {
            self.card.write_raw(start.0 + i as u32, &block.contents).map_err(DeviceError)?;
        }
        Ok(())
    }

    fn num_blocks(&self) -> Result<BlockCount, Self::Error> {
        self.card.with_device(|d| d.block_count()).map(BlockCount).map_err(DeviceError)
    }
}
