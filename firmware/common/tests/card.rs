//! The SD-card side on a FAT16 RAM disk: `KV.BIN` created, grown and read back through
//! embedded-sdmmc, and a console line answered without a card (a pack in flash, or the card's
//! error).
#![cfg(feature = "sd")]

use std::cell::RefCell;
use std::fmt;

use embedded_sdmmc::{Block, BlockCount, BlockDevice, BlockIdx, VolumeIdx};
use picogpt_board::board::Board;
use picogpt_board::sd::{CardSpill, KV_FILE, NoClock, Volumes, answer_line};
use picogpt_board::{BPE_SCRATCH_WORDS, Clock, MAX_PROMPT, Memory, Options, Spill};
use picogpt_core::{Activations, KvFormat, Storage, StorageMut};

/// Blocks of the RAM disk: 4 MiB.
const DISK_BLOCKS: u32 = 8192;

/// A disk in a vector, formatted FAT16 in one MBR partition from block 1.
struct RamDisk(RefCell<Vec<u8>>);

#[derive(Debug)]
struct NoCard;

impl fmt::Display for NoCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "card did not answer")
    }
}

impl std::error::Error for NoCard {}

impl RamDisk {
    fn fat16() -> Self {
        let mut disk = vec![0u8; DISK_BLOCKS as usize * 512];
        let put16 =
            |d: &mut [u8], at: usize, v: u16| d[at..at + 2].copy_from_slice(&v.to_le_bytes());
        let put32 =
            |d: &mut [u8], at: usize, v: u32| d[at..at + 4].copy_from_slice(&v.to_le_bytes());
        // MBR: partition 1 is FAT16 (type 0x06) from block 1 to the end.
        disk[0x1be + 4] = 0x06;
        put32(&mut disk, 0x1be + 8, 1);
        put32(&mut disk, 0x1be + 12, DISK_BLOCKS - 1);
        put16(&mut disk, 510, 0xaa55);
        // Boot sector: 512-byte blocks, 1 per cluster, 1 reserved, 2 FATs of 32 blocks, 512
        // root entries: 8094 clusters, FAT16.
        let bpb = 512;
        put16(&mut disk, bpb + 11, 512);
        disk[bpb + 13] = 1;
        put16(&mut disk, bpb + 14, 1);
        disk[bpb + 16] = 2;
        put16(&mut disk, bpb + 17, 512);
        put16(&mut disk, bpb + 19, (DISK_BLOCKS - 1) as u16);
        disk[bpb + 21] = 0xf8;
        put16(&mut disk, bpb + 22, 32);
        put16(&mut disk, bpb + 510, 0xaa55);
        // Both FATs: the two reserved entries.
        for fat in [2, 34] {
            let at = fat * 512;
            put16(&mut disk, at, 0xfff8);
            put16(&mut disk, at + 2, 0xffff);
        }
        Self(RefCell::new(disk))
    }
}

impl BlockDevice for RamDisk {
    type Error = NoCard;

    fn read(&self, blocks: &mut [Block], start: BlockIdx) -> Result<(), NoCard> {
        let disk = self.0.borrow();
        for (i, block) in blocks.iter_mut().enumerate() {
            let at = (start.0 as usize + i) * 512;
            block.contents.copy_from_slice(&disk[at..at + 512]);
        }
        Ok(())
    }

    fn write(&self, blocks: &[Block], start: BlockIdx) -> Result<(), NoCard> {
        let mut disk = self.0.borrow_mut();
        for (i, block) in blocks.iter().enumerate() {
            let at = (start.0 as usize + i) * 512;
            disk[at..at + 512].copy_from_slice(&block.contents);
        }
        Ok(())
    }

    fn num_blocks(&self) -> Result<BlockCount, NoCard> {
        Ok(BlockCount(DISK_BLOCKS))
    }
}

#[test]
fn kv_bin_is_created_grown_and_read_back() {
    let volumes = Volumes::new_with_limits(RamDisk::fat16(), NoClock, 5000);
    let volume = volumes.open_volume(VolumeIdx(0)).unwrap();
    let root = volume.open_root_dir().unwrap();
    let record: Vec<u8> = (0..3000u32).map(|i| (i * 13 + 5) as u8).collect();
    {
        let mut spill = CardSpill::new(&root);
        assert_eq!((spill.medium(), spill.name()), ("sd", KV_FILE));
        let mut file = spill.open(20_000).unwrap();
        assert_eq!(file.size().unwrap(), 20_000);
        file.write_at(5_000, &record).unwrap();
        file.write_at(100, &record[..10]).unwrap();
        let mut back = vec![0u8; record.len()];
        let mut done = 0;
        while done < back.len() {
            done += file.read_at(5_000 + done as u64, &mut back[done..]).unwrap();
        }
        assert_eq!(back, record);
    }
    // Reopened for a shorter context: kept as it is; for a longer one: grown, data intact.
    let mut spill = CardSpill::new(&root);
    assert_eq!(spill.open(10_000).unwrap().size().unwrap(), 20_000);
    let mut file = spill.open(30_000).unwrap();
    assert_eq!(file.size().unwrap(), 30_000);
    let mut back = vec![0u8; 10];
    assert_eq!(file.read_at(100, &mut back).unwrap(), 10);
    assert_eq!(back, record[..10]);
    let mut tail = vec![1u8; 512];
    assert_eq!(file.read_at(29_488, &mut tail).unwrap(), 512);
    assert!(tail.iter().all(|&b| b == 0));
}

/// A console that keeps what is written.
struct Transcript(String);

impl fmt::Write for Transcript {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.push_str(s);
        Ok(())
    }
}

struct Zero;

impl Clock for Zero {
    fn now(&mut self) -> u64 {
        0
    }
}

/// The lines one console line gets with no card, and `flash` as the flash region.
fn answer_without_card(line: &[u8], flash: Option<&[u8]>) -> String {
    let (mut workspace, mut kv) = (vec![0.0f32; 1024], vec![0u8; 4096]);
    let (mut tokens, mut bpe) = (vec![0u32; MAX_PROMPT], vec![0u32; BPE_SCRATCH_WORDS]);
    let memory =
        Memory { workspace: &mut workspace, kv: &mut kv, tokens: &mut tokens, bpe: &mut bpe };
    let mut board = Board {
        memory,
        out: Transcript(String::new()),
        clock: Zero,
        ticks_per_ms: 1,
        defaults: Options::new(8, KvFormat::Int8, Activations::F32),
    };
    let _card = answer_line(line, RamDisk::fat16(), |_| Err(NoCard), flash, &mut board);
    board.out.0
}

#[test]
fn without_a_card_a_pack_in_flash_answers_instead() {
    let card_error = "error: SD card: card did not answer (is a card in the slot?)\n";
    assert_eq!(answer_without_card(b"Alan Turing", None), card_error);
    // Erased flash is no pack: the card's error stands.
    assert_eq!(answer_without_card(b"", Some(&[0xff; 64])), card_error);
    // A pack's magic: the flash answers, here that its header is cut short.
    let mut pack = b"PGPT".to_vec();
    pack.resize(12, 0);
    let out = answer_without_card(b"1,2 -n 2", Some(&pack));
    assert!(out.starts_with("error: the pack in flash: pack is truncated"), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
}

#[test]
fn a_bad_line_is_one_error_before_the_card_is_touched() {
    let out = answer_without_card(b"Al\xffan", None);
    assert_eq!(out, "error: the line is not valid UTF-8 (byte 2)\n");
    let out = answer_without_card(b"--tokens 1 Alan", None);
    assert_eq!(out, "error: give either --tokens or a prompt, not both\n");
}
