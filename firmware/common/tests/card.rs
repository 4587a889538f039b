//! Files on the card read straight from the block device: the pack mapped once into extents
//! and read through its window with read-ahead, a fragmented file mapped (or refused when in
//! too many pieces), `KV.BIN` created, grown, written and read back, on FAT16 and FAT32 RAM
//! disks and over the simulated SPI card; and a console line answered without a card.
#![cfg(feature = "sd")]

mod support;

use std::fmt;

use embedded_sdmmc::{Block, Mode, VolumeIdx, VolumeManager};
use picogpt_board::block::{BlockDevice, FromSdmmc};
use picogpt_board::board::Board;
use picogpt_board::card::{Card, CardFile, SdmmcView, Slot};
use picogpt_board::fat::{Extent, MAX_EXTENTS};
use picogpt_board::sd::{CardSpill, KV_FILE, NoClock, Volumes, Windows, answer_line};
use picogpt_board::sdspi::{FRAME_BYTES, SdCard};
use picogpt_board::{BPE_SCRATCH_WORDS, Clock, MAX_PROMPT, Memory, Options, Spill};
use picogpt_core::{Activations, KvFormat, OneWorker, Storage, StorageMut};
use support::sim::Behaviour;
use support::{RamDisk, SimCard, SimDelay};

/// The bytes of a test file: position-dependent, so a misplaced block shows.
fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2] ^ seed).collect()
}

/// Writes `files` through embedded-sdmmc, `piece` bytes of each in turn (so that they
/// interleave on the disk when `piece` is a cluster or less).
fn write_interleaved(disk: &RamDisk, files: &[(&str, &[u8])], piece: usize) {
    let volumes = VolumeManager::<_, _, 1, 4, 1>::new_with_limits(disk.clone(), NoClock, 5000);
    let volume = volumes.open_volume(VolumeIdx(0)).unwrap();
    let root = volume.open_root_dir().unwrap();
    let handles: Vec<_> = files
        .iter()
        .map(|(name, _)| root.open_file_in_dir(*name, Mode::ReadWriteCreateOrTruncate).unwrap())
        .collect();
    let longest = files.iter().map(|(_, d)| d.len()).max().unwrap_or(0);
    for at in (0..longest).step_by(piece) {
        for ((_, data), file) in files.iter().zip(&handles) {
            if at < data.len() {
                file.write(&data[at..(at + piece).min(data.len())]).unwrap();
            }
        }
    }
    for file in handles {
        file.close().unwrap();
    }
}

/// A RAM disk as the read path's block device (embedded-sdmmc's trait, adapted).
fn device<'s>(disk: &RamDisk, scratch: &'s mut [Block]) -> FromSdmmc<'s, RamDisk> {
    FromSdmmc::new(disk.clone(), scratch)
}

/// Opens `name` on `card` as the read path does.
fn open<'c, 'b, D: BlockDevice>(
    card: &'c Card<'b, D>,
    name: &'static str,
    slot: Slot,
) -> Result<CardFile<'c, 'b, D>, String> {
    let fat = card.fat().map_err(|e| e.to_string())?;
    let volumes: Volumes<'_, '_, D> =
        VolumeManager::new_with_limits(SdmmcView::new(card), NoClock, 5000);
    let volume = volumes.open_volume(VolumeIdx(0)).unwrap();
    let root = volume.open_root_dir().unwrap();
    let entry = root.find_directory_entry(name).unwrap();
    card.open(&fat, (entry.entry_block.0, entry.entry_offset), (name, "copy it again"), slot)
        .map_err(|e| e.to_string())
}

/// Reads all of `file` the way core streams a tensor: `chunk` bytes at a time, announcing
/// each next read.
fn stream<S: Storage>(file: &mut S, chunk: usize) -> Vec<u8>
where
    S::Error: fmt::Debug,
{
    let len = file.size().unwrap() as usize;
    let mut out = vec![0u8; len];
    let mut at = 0;
    while at < len {
        let n = file.read_at(at as u64, &mut out[at..(at + chunk).min(len)]).unwrap();
        assert!(n > 0);
        at += n;
        file.prefetch(at as u64, chunk);
    }
    out
}

#[test]
fn a_contiguous_pack_is_one_extent_read_in_whole_windows() {
    let disk = RamDisk::fat32();
    let pack = content(300_000, 1);
    write_interleaved(&disk, &[("MODEL.PGP", &pack)], 300_000);
    let mut scratch = vec![Block::new(); 32];
    let (mut pack_window, mut kv_window) = (vec![0u8; 16 * 1024], vec![0u8; 4096]);
    let card = Card::new(device(&disk, &mut scratch), &mut pack_window, &mut kv_window);
    let mut file = open(&card, "MODEL.PGP", Slot::Pack).unwrap();
    assert_eq!(file.map().extents().len(), 1);
    assert_eq!(stream(&mut file, 4096), pack);
    // Random reads (a row, a token's bytes) anywhere, the window refilled as needed.
    for (at, len) in [(123_457usize, 816usize), (7, 3), (299_990, 10), (150_000, 5000)] {
        let mut buf = vec![0u8; len];
        let mut done = 0;
        while done < len {
            done += file.read_at((at + done) as u64, &mut buf[done..]).unwrap();
        }
        assert_eq!(buf, pack[at..at + len], "{len} bytes at {at}");
    }
    let mut past = [0u8; 4];
    assert_eq!(file.read_at(300_000, &mut past).unwrap(), 0);
}

#[test]
fn a_fragmented_file_reads_right_across_its_pieces() {
    let disk = RamDisk::fat16();
    let (a, b) = (content(20 * 512, 2), content(20 * 512, 3));
    // Two blocks of each in turn: ten pieces each.
    write_interleaved(&disk, &[("A.BIN", &a), ("B.BIN", &b)], 1024);
    let mut scratch = vec![Block::new(); 8];
    let (mut pack_window, mut kv_window) = (vec![0u8; 4096], vec![0u8; 2048]);
    let card = Card::new(device(&disk, &mut scratch), &mut pack_window, &mut kv_window);
    let mut file = open(&card, "B.BIN", Slot::Pack).unwrap();
    let extents = file.map().extents().to_vec();
    assert_eq!(extents.len(), 10, "{extents:?}");
    assert!(extents.iter().all(|e: &Extent| e.blocks == 2));
    assert_eq!(stream(&mut file, 700), b);
}

#[test]
fn a_file_in_too_many_pieces_is_refused_with_the_fix() {
    let disk = RamDisk::fat16();
    let pieces = MAX_EXTENTS + 1;
    let (a, b) = (content(pieces * 512, 4), content(pieces * 512, 5));
    write_interleaved(&disk, &[("A.BIN", &a), ("MODEL.PGP", &b)], 512);
    let mut scratch = vec![Block::new(); 8];
    let (mut pack_window, mut kv_window) = (vec![0u8; 4096], vec![0u8; 2048]);
    let card = Card::new(device(&disk, &mut scratch), &mut pack_window, &mut kv_window);
    let Err(error) = open(&card, "MODEL.PGP", Slot::Pack) else {
        panic!("a file in {pieces} pieces was mapped");
    };
    assert_eq!(
        error,
        format!("MODEL.PGP is stored in more than {MAX_EXTENTS} pieces on the card: copy it again")
    );
}

#[test]
fn kv_bin_is_created_grown_written_and_read_back_over_the_spi_card() {
    let disk = RamDisk::fat32();
    let sim = SimCard::new(disk.image.clone(), Behaviour::default());
    let (bus, cs) = sim.parts(32 * FRAME_BYTES);
    let mut sd = SdCard::new(bus, cs, SimDelay::default(), 25_000_000);
    sd.init().unwrap();
    let (mut pack_window, mut kv_window) = (vec![0u8; 16 * 1024], vec![0u8; 4096]);
    let card = Card::new(&mut sd, &mut pack_window, &mut kv_window);
    let fat = card.fat().unwrap();
    let volumes: Volumes<'_, '_, _> =
        VolumeManager::new_with_limits(SdmmcView::new(&card), NoClock, 5000);
    let volume = volumes.open_volume(VolumeIdx(0)).unwrap();
    let root = volume.open_root_dir().unwrap();
    let record = content(3000, 6);
    {
        let mut spill = CardSpill::new(&root, &card, fat);
        assert_eq!((spill.medium(), spill.name(), spill.available()), ("sd", KV_FILE, Ok(())));
        let mut file = spill.open(20_000).unwrap();
        assert_eq!(file.size().unwrap(), 20_000);
        file.write_at(5_000, &record).unwrap();
        file.write_at(100, &record[..10]).unwrap();
        file.write_at(1024, &record[..1024]).unwrap();
        let mut back = vec![0u8; record.len()];
        let mut done = 0;
        while done < back.len() {
            done += file.read_at(5_000 + done as u64, &mut back[done..]).unwrap();
        }
        assert_eq!(back, record);
        assert!(file.write_at(19_999, &[1, 2]).is_err(), "a write past the end");
    }
    // Reopened for a shorter context: kept as it is; for a longer one: grown, data intact.
    let mut spill = CardSpill::new(&root, &card, fat);
    assert_eq!(spill.open(10_000).unwrap().size().unwrap(), 20_000);
    let mut file = spill.open(30_000).unwrap();
    assert_eq!(file.size().unwrap(), 30_000);
    let mut back = vec![0u8; 10];
    assert_eq!(file.read_at(100, &mut back).unwrap(), 10);
    assert_eq!(back, record[..10]);
    let mut whole = vec![0u8; 1024];
    assert_eq!(file.read_at(1024, &mut whole).unwrap(), 1024);
    assert_eq!(whole, record[..1024]);
    let mut tail = vec![1u8; 512];
    assert_eq!(file.read_at(29_488, &mut tail).unwrap(), 512);
    assert!(tail.iter().all(|&b| b == 0));
    assert_eq!(sim.log().count(17), 0, "no single-block reads");
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
    let mut ram = vec![0.0f32; 2048];
    let (mut tokens, mut bpe) = (vec![0u32; MAX_PROMPT], vec![0u32; BPE_SCRATCH_WORDS]);
    let memory = Memory { ram: &mut ram, tokens: &mut tokens, bpe: &mut bpe };
    let mut board = Board {
        memory,
        out: Transcript(String::new()),
        clock: Zero,
        ticks_per_ms: 1,
        defaults: Options::new(8, KvFormat::Int8, Activations::F32),
        workers: &mut OneWorker,
    };
    let absent = RamDisk { absent: true, ..RamDisk::fat16() };
    let mut scratch = vec![Block::new(); 1];
    let mut device = device(&absent, &mut scratch);
    let (mut pack, mut kv) = (vec![0u8; 4096], vec![0u8; 1024]);
    let windows = Windows { pack: &mut pack, kv: &mut kv };
    let restart = |d: &mut FromSdmmc<'_, RamDisk>| d.block_count().map(u64::from);
    let flash = flash.map(picogpt_core::SliceStorage::new);
    answer_line(line, &mut device, restart, windows, flash, &mut board);
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
