//! The FAT volume's layout, and a file's cluster chain walked once into a short table of block
//! extents, so that reading any offset of the file is arithmetic (no FAT walk per seek).
//!
//! A file copied onto a freshly formatted card is one extent; a file in more than
//! [`MAX_EXTENTS`] pieces is refused with a message saying how to fix it.

use core::fmt;

use crate::block::BLOCK_BYTES;

/// Most pieces a mapped file may be in.
pub const MAX_EXTENTS: usize = 32;

/// Partition types of FAT16 and FAT32 volumes (the ones embedded-sdmmc opens).
const FAT_PARTITIONS: [u8; 5] = [0x04, 0x06, 0x0b, 0x0c, 0x0e];

/// Bytes of a directory entry.
const DIR_ENTRY_BYTES: usize = 32;

/// Why a volume or a file could not be mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FatError {
    /// The first partition of the card is not FAT16 or FAT32.
    NoFatPartition {
        /// Its partition type.
        kind: u8,
    },
    /// The volume's boot sector is not one this reader handles.
    BootSector {
        /// What is wrong.
        what: &'static str,
    },
    /// The volume is FAT12 (a card smaller than a few MiB).
    Fat12,
    /// The file's cluster chain leaves the volume or ends early.
    BrokenChain {
        /// The file.
        file: &'static str,
        /// The offending cluster number.
        cluster: u32,
    },
    /// The file is in more pieces than [`MAX_EXTENTS`].
    Fragmented {
        /// The file.
        file: &'static str,
        /// What to do about it.
        hint: &'static str,
    },
}

impl fmt::Display for FatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoFatPartition { kind } => write!(
                f,
                "the card's first partition (type {kind:#04x}) is not FAT16 or FAT32: format the \
                 card FAT32"
            ),
            Self::BootSector { what } => write!(f, "the FAT boot sector {what}"),
            Self::Fat12 => write!(f, "the volume is FAT12: format the card FAT32"),
            Self::BrokenChain { file, cluster } => write!(
                f,
                "{file}'s cluster chain is broken at cluster {cluster}: check the card (fsck.vfat)"
            ),
            Self::Fragmented { file, hint } => {
                write!(f, "{file} is stored in more than {MAX_EXTENTS} pieces on the card: {hint}")
            }
        }
    }
}

/// A failure mapping a file: reading the card, or what was read.
#[derive(Debug)]
pub enum MapError<E> {
    /// The card failed to read.
    Read(E),
    /// The volume or the file is not as it should be.
    Fat(FatError),
}

impl<E> From<FatError> for MapError<E> {
    fn from(e: FatError) -> Self {
        Self::Fat(e)
    }
}

/// Where a FAT16 or FAT32 volume keeps its table and its clusters, in card blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fat {
    /// First block of the first FAT.
    fat_start: u32,
    /// Blocks of one FAT.
    fat_blocks: u32,
    /// Blocks per cluster.
    cluster_blocks: u32,
    /// Block of cluster 2, the first data cluster.
    data_start: u32,
    /// Data clusters on the volume.
    clusters: u32,
    /// FAT32 (4-byte entries) rather than FAT16.
    fat32: bool,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Fat {
    /// The layout of the FAT volume in the card's first partition (MBR), as embedded-sdmmc
    /// opens it.
    /// `read(block, buf)` reads blocks into `buf`.
    pub fn read<E>(
        read: &mut impl FnMut(u32, &mut [u8]) -> Result<(), E>,
    ) -> Result<Self, MapError<E>> {
        let mut block = [0u8; BLOCK_BYTES];
        read(0, &mut block).map_err(MapError::Read)?;
        if u16_at(&block, 510) != 0xaa55 {
            return Err(FatError::BootSector {
                what: "is missing: the card has no partition table",
            }
            .into());
        }
        let kind = block[0x1be + 4];
        if !FAT_PARTITIONS.contains(&kind) {
            return Err(FatError::NoFatPartition { kind }.into());
        }
        let start = u32_at(&block, 0x1be + 8);
        read(start, &mut block).map_err(MapError::Read)?;
        Ok(Self::parse(start, &block)?)
    }

    /// The layout described by the boot sector `bpb` of a volume starting at block `start`.
    fn parse(start: u32, bpb: &[u8]) -> Result<Self, FatError> {
        let bad = |what| FatError::BootSector { what };
        if u16_at(bpb, 510) != 0xaa55 {
            return Err(bad("has no boot signature"));
        }
        if usize::from(u16_at(bpb, 11)) != BLOCK_BYTES {
            return Err(bad("has sectors other than 512 bytes"));
        }
        let cluster_blocks = u32::from(bpb[13]);
        let reserved = u32::from(u16_at(bpb, 14));
        let fats = u32::from(bpb[16]);
        let root_blocks = (u32::from(u16_at(bpb, 17)) * DIR_ENTRY_BYTES as u32).div_ceil(512);
        let total = match u16_at(bpb, 19) {
            0 => u32_at(bpb, 32),
            n => u32::from(n),
        };
        let fat_blocks = match u16_at(bpb, 22) {
            0 => u32_at(bpb, 36),
            n => u32::from(n),
        };
        if cluster_blocks == 0 || !cluster_blocks.is_power_of_two() || fats == 0 || fat_blocks == 0
        {
            return Err(bad("has a zero or odd field"));
        }
        let meta = reserved + fats * fat_blocks + root_blocks;
        let clusters = total.checked_sub(meta).ok_or(bad("claims more metadata than blocks"))?
            / cluster_blocks;
        if clusters < 4085 {
            return Err(FatError::Fat12);
        }
        Ok(Self {
            fat_start: start + reserved,
            fat_blocks,
            cluster_blocks,
            data_start: start + meta,
            clusters,
            fat32: clusters >= 65525,
        })
    }

    /// Bytes per cluster.
    pub fn cluster_bytes(&self) -> u64 {
        u64::from(self.cluster_blocks) * BLOCK_BYTES as u64
    }

    /// The first cluster and the length of the file whose directory entry is the 32 bytes at
    /// `entry` (as found by embedded-sdmmc: its block and offset).
    pub fn entry_start(&self, entry: &[u8]) -> (u32, u32) {
        let high = if self.fat32 { u32::from(u16_at(entry, 20)) } else { 0 };
        ((high << 16) | u32::from(u16_at(entry, 26)), u32_at(entry, 28))
    }

    /// Walks `file`'s chain from `first_cluster` for `len` bytes into extents, reading the FAT
    /// in runs of up to `scratch.len()` bytes (one multi-block read per run).
    pub fn map<E>(
        &self,
        file: &'static str,
        hint: &'static str,
        first_cluster: u32,
        len: u64,
        scratch: &mut [u8],
        read: &mut impl FnMut(u32, &mut [u8]) -> Result<(), E>,
    ) -> Result<FileMap, MapError<E>> {
        let mut map = FileMap { extents: heapless::Vec::new(), len };
        let clusters = len.div_ceil(self.cluster_bytes());
        let broken = |cluster| MapError::Fat(FatError::BrokenChain { file, cluster });
        let mut table = FatRun { first: 0, blocks: 0 };
        let mut cluster = first_cluster;
        for i in 0..clusters {
            if cluster < 2 || cluster - 2 >= self.clusters {
                return Err(broken(cluster));
            }
            let first = self.data_start + (cluster - 2) * self.cluster_blocks;
            map.push(Extent { first, blocks: self.cluster_blocks })
                .map_err(|_| FatError::Fragmented { file, hint })?;
            if i + 1 < clusters {
                cluster = self.next(cluster, &mut table, scratch, read)?.ok_or(broken(cluster))?;
            }
        }
        Ok(map)
    }

    /// The cluster after `cluster` in its chain (`None` at the chain's end or a bad cluster).
    fn next<E>(
        &self,
        cluster: u32,
        table: &mut FatRun,
        scratch: &mut [u8],
        read: &mut impl FnMut(u32, &mut [u8]) -> Result<(), E>,
    ) -> Result<Option<u32>, MapError<E>> {
        let entry_bytes = if self.fat32 { 4 } else { 2 };
        let at = u64::from(cluster) * entry_bytes;
        let block = self.fat_start + (at / BLOCK_BYTES as u64) as u32;
        if !(table.first..table.first + table.blocks).contains(&block) {
            let run = (scratch.len() / BLOCK_BYTES).max(1) as u32;
            let blocks = run.min(self.fat_start + self.fat_blocks - block);
            let buf = scratch.get_mut(..blocks as usize * BLOCK_BYTES).unwrap_or_default();
            read(block, buf).map_err(MapError::Read)?;
            *table = FatRun { first: block, blocks };
        }
        let offset =
            (block - table.first) as usize * BLOCK_BYTES + (at % BLOCK_BYTES as u64) as usize;
        let (next, end) = if self.fat32 {
            (u32_at(scratch, offset) & 0x0fff_ffff, 0x0fff_fff7)
        } else {
            (u32::from(u16_at(scratch, offset)), 0xfff7)
        };
        Ok((next < end).then_some(next))
    }
}

/// The FAT blocks in the scratch buffer.
struct FatRun {
    first: u32,
    blocks: u32,
}

/// Consecutive card blocks holding consecutive bytes of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// The first block.
    pub first: u32,
    /// How many blocks.
    pub blocks: u32,
}

/// Where a file's bytes are on the card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMap {
    extents: heapless::Vec<Extent, MAX_EXTENTS>,
    len: u64,
}

impl FileMap {
    /// A map of `len` bytes in `extents`, in file order (for tests and RAM disks).
    pub fn from_extents(extents: &[Extent], len: u64) -> Option<Self> {
        let mut map = Self { extents: heapless::Vec::new(), len };
        for &e in extents {
            map.push(e).ok()?;
        }
        Some(map)
    }

    /// Appends an extent, merged into the last one when it continues it.
    fn push(&mut self, e: Extent) -> Result<(), Extent> {
        if let Some(last) = self.extents.last_mut()
            && last.first + last.blocks == e.first
        {
            last.blocks += e.blocks;
            return Ok(());
        }
        self.extents.push(e)
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pieces, in file order.
    pub fn extents(&self) -> &[Extent] {
        &self.extents
    }

    /// The card block holding byte `offset` of the file, and how many blocks from it on are
    /// consecutive on the card and still within the file; `None` past the end.
    pub fn locate(&self, offset: u64) -> Option<(u32, u32)> {
        if offset >= self.len {
            return None;
        }
        let index = offset / BLOCK_BYTES as u64;
        let file_blocks = self.len.div_ceil(BLOCK_BYTES as u64);
        let mut skip = index;
        for e in &self.extents {
            let blocks = u64::from(e.blocks);
            if skip < blocks {
                let left = (blocks - skip).min(file_blocks - index);
                return Some((e.first + skip as u32, left as u32));
            }
            skip -= blocks;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_offsets_across_extents_and_stops_at_the_end() {
        let extents = [Extent { first: 100, blocks: 4 }, Extent { first: 500, blocks: 8 }];
        let map = FileMap::from_extents(&extents, 10 * 512 + 1).unwrap();
        assert_eq!(map.locate(0), Some((100, 4)));
        assert_eq!(map.locate(3 * 512 + 7), Some((103, 1)));
        assert_eq!(map.locate(4 * 512), Some((500, 7)));
        assert_eq!(map.locate(10 * 512), Some((506, 1)));
        assert_eq!(map.locate(10 * 512 + 1), None);
    }

    #[test]
    fn adjacent_extents_merge() {
        let extents = [Extent { first: 8, blocks: 4 }, Extent { first: 12, blocks: 4 }];
        let map = FileMap::from_extents(&extents, 8 * 512).unwrap();
        assert_eq!(map.extents(), &[Extent { first: 8, blocks: 8 }]);
    }
}
