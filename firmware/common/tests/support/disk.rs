//! A disk in a vector with one MBR partition from block 1, formatted FAT16 or FAT32 the way
//! mkfs.vfat would (one block per cluster, two FATs), usable by embedded-sdmmc directly.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use embedded_sdmmc::{Block, BlockCount, BlockDevice, BlockIdx};

/// The image, shared with a simulated card that serves it.
pub type Image = Rc<RefCell<Vec<u8>>>;

/// A disk that cannot fail... unless told to.
#[derive(Clone)]
pub struct RamDisk {
    pub image: Image,
    /// Fail every access: a card that does not answer.
    pub absent: bool,
}

#[derive(Debug)]
pub struct NoCard;

impl fmt::Display for NoCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "card did not answer")
    }
}

impl std::error::Error for NoCard {}

fn put16(d: &mut [u8], at: usize, v: u16) {
    d[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(d: &mut [u8], at: usize, v: u32) {
    d[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

impl RamDisk {
    /// 4 MiB, FAT16: 8094 clusters of one block.
    pub fn fat16() -> Self {
        let blocks = 8192u32;
        let mut disk = vec![0u8; blocks as usize * 512];
        mbr(&mut disk, 0x06, blocks);
        let bpb = 512;
        put16(&mut disk, bpb + 11, 512);
        disk[bpb + 13] = 1;
        put16(&mut disk, bpb + 14, 1);
        disk[bpb + 16] = 2;
        put16(&mut disk, bpb + 17, 512);
        put16(&mut disk, bpb + 19, (blocks - 1) as u16);
        disk[bpb + 21] = 0xf8;
        put16(&mut disk, bpb + 22, 32);
        put16(&mut disk, bpb + 510, 0xaa55);
        for fat in [2, 34] {
            let at = fat * 512;
            put16(&mut disk, at, 0xfff8);
            put16(&mut disk, at + 2, 0xffff);
        }
        Self::from(disk)
    }

    /// 40 MiB, FAT32: 81,280 clusters of one block, the root directory in cluster 2.
    pub fn fat32() -> Self {
        let blocks = 81_920u32;
        let mut disk = vec![0u8; blocks as usize * 512];
        mbr(&mut disk, 0x0c, blocks);
        let (reserved, fat_blocks) = (32u32, 640u32);
        let bpb = 512;
        put16(&mut disk, bpb + 11, 512);
        disk[bpb + 13] = 1;
        put16(&mut disk, bpb + 14, reserved as u16);
        disk[bpb + 16] = 2;
        disk[bpb + 21] = 0xf8;
        put32(&mut disk, bpb + 32, blocks - 1);
        put32(&mut disk, bpb + 36, fat_blocks);
        put32(&mut disk, bpb + 44, 2);
        put16(&mut disk, bpb + 48, 1);
        disk[bpb + 66] = 0x29;
        disk[bpb + 82..bpb + 90].copy_from_slice(b"FAT32   ");
        put16(&mut disk, bpb + 510, 0xaa55);
        // FSInfo: counts unknown.
        let info = 2 * 512;
        put32(&mut disk, info, 0x4161_5252);
        put32(&mut disk, info + 484, 0x6141_7272);
        put32(&mut disk, info + 488, 0xffff_ffff);
        put32(&mut disk, info + 492, 0xffff_ffff);
        put32(&mut disk, info + 508, 0xaa55_0000);
        for fat in 0..2 {
            let at = (1 + reserved + fat * fat_blocks) as usize * 512;
            put32(&mut disk, at, 0x0fff_fff8);
            put32(&mut disk, at + 4, 0x0fff_ffff);
            // Cluster 2, the root directory: one cluster.
            put32(&mut disk, at + 8, 0x0fff_ffff);
        }
        Self::from(disk)
    }

    fn from(disk: Vec<u8>) -> Self {
        Self { image: Rc::new(RefCell::new(disk)), absent: false }
    }

    /// Blocks of the disk.
    pub fn blocks(&self) -> u32 {
        (self.image.borrow().len() / 512) as u32
    }
}

/// An MBR whose first partition, of `kind`, runs from block 1 to the end.
fn mbr(disk: &mut [u8], kind: u8, blocks: u32) {
    disk[0x1be + 4] = kind;
    put32(disk, 0x1be + 8, 1);
    put32(disk, 0x1be + 12, blocks - 1);
    put16(disk, 510, 0xaa55);
}

impl BlockDevice for RamDisk {
    type Error = NoCard;

    fn read(&self, blocks: &mut [Block], start: BlockIdx) -> Result<(), NoCard> {
        if self.absent {
            return Err(NoCard);
        }
        let disk = self.image.borrow();
        for (i, block) in blocks.iter_mut().enumerate() {
            let at = (start.0 as usize + i) * 512;
            block.contents.copy_from_slice(&disk[at..at + 512]);
        }
        Ok(())
    }

    fn write(&self, blocks: &[Block], start: BlockIdx) -> Result<(), NoCard> {
        if self.absent {
            return Err(NoCard);
        }
        let mut disk = self.image.borrow_mut();
        for (i, block) in blocks.iter().enumerate() {
            let at = (start.0 as usize + i) * 512;
            disk[at..at + 512].copy_from_slice(&block.contents);
        }
        Ok(())
    }

    fn num_blocks(&self) -> Result<BlockCount, NoCard> {
        if self.absent {
            return Err(NoCard);
        }
        Ok(BlockCount(self.blocks()))
    }
}
