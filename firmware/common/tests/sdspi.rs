//! The SD driver over a card that speaks SPI mode byte by byte: the start-up sequence (74
//! clocks first, a missing card found in milliseconds), multi-block reads only, the open read
//! continued by sequential reads and by background runs, CRC16 errors caught, writes, and a
//! card pulled and put back.
#![cfg(feature = "sd")]

mod support;

use picogpt_board::Metered;
use picogpt_board::block::BlockDevice;
use picogpt_board::sdspi::{CardError, FRAME_BYTES, FrameError, INIT_HZ, SdCard};
use support::sim::Behaviour;
use support::{RamDisk, SimBus, SimCard, SimCs, SimDelay};

type Card = SdCard<SimBus, SimCs, SimDelay>;

/// A started card over a 4 MiB image of numbered bytes, with runs of `run` bytes.
fn card(b: Behaviour, run: usize) -> (SimCard, Card, RamDisk) {
    let disk = RamDisk::fat16();
    for (i, byte) in disk.image.borrow_mut().iter_mut().enumerate().skip(512 * 1000) {
        *byte = (i * 31 + i / 512) as u8;
    }
    let sim = SimCard::new(disk.image.clone(), b);
    let (bus, cs) = sim.parts(run);
    let mut card = SdCard::new(bus, cs, SimDelay::default(), 25_000_000);
    assert_eq!(card.init().unwrap(), 8192 * 512);
    (sim, card, disk)
}

fn image(disk: &RamDisk, first: u32, blocks: usize) -> Vec<u8> {
    disk.image.borrow()[first as usize * 512..(first as usize + blocks) * 512].to_vec()
}

#[test]
fn starts_after_74_clocks_and_reads_sequential_runs_with_one_cmd18() {
    let (sim, mut card, disk) = card(Behaviour::default(), 64 * FRAME_BYTES);
    let log = sim.log();
    assert!(log.clocks_before_cmd0 * 8 >= 74, "{} bytes with CS high", log.clocks_before_cmd0);
    assert_eq!(&log.commands[..2], &[0, 8]);
    assert!(log.commands.contains(&59), "CRC checking turned on");
    assert_eq!(card.clock_hz(), 25_000_000);

    let mut buf = vec![0u8; 40 * 512];
    card.read_blocks(1000, &mut buf[..8 * 512]).unwrap();
    card.read_blocks(1008, &mut buf[8 * 512..]).unwrap();
    assert_eq!(buf, image(&disk, 1000, 40));
    let mut one = [0u8; 512];
    card.read_blocks(1040, &mut one).unwrap();
    assert_eq!(one.to_vec(), image(&disk, 1040, 1));

    let log = sim.log();
    assert_eq!((log.count(18), log.count(17), log.count(12)), (1, 0, 0), "{:?}", log.commands);
    // A read elsewhere stops the open one and starts another.
    card.read_blocks(2000, &mut one).unwrap();
    let log = sim.log();
    assert_eq!((log.count(18), log.count(12)), (2, 1));
    let t = card.traffic();
    assert_eq!((t.multi_reads, t.single_reads, t.blocks_read), (2, 0, 42));
}

#[test]
fn a_read_announced_ahead_is_claimed_and_a_different_one_is_not_lost() {
    let (sim, mut card, disk) =
        card(Behaviour { block_gap: 2, ..Behaviour::default() }, 32 * FRAME_BYTES);
    let mut buf = vec![0u8; 32 * 512];
    card.read_blocks(1000, &mut buf).unwrap();
    card.read_ahead(1032, 32);
    card.read_blocks(1032, &mut buf).unwrap();
    assert_eq!(buf, image(&disk, 1032, 32));
    assert_eq!(sim.log().count(18), 1);
    // Announced, then something else asked for: the run is dropped, the data is right.
    card.read_ahead(1064, 32);
    card.read_blocks(3000, &mut buf[..4 * 512]).unwrap();
    assert_eq!(buf[..4 * 512], image(&disk, 3000, 4)[..]);
    card.read_blocks(1064, &mut buf).unwrap();
    assert_eq!(buf, image(&disk, 1064, 32));
    let log = sim.log();
    assert_eq!((log.count(18), log.count(12)), (3, 2));
}

#[test]
fn a_corrupted_block_is_a_crc_error_and_the_next_read_is_clean() {
    let (sim, mut card, disk) = card(Behaviour::default(), 16 * FRAME_BYTES);
    sim.corrupt(3);
    let mut buf = vec![0u8; 8 * 512];
    match card.read_blocks(1000, &mut buf) {
        Err(CardError::Data(FrameError::Crc { block: 3, .. })) => {}
        other => panic!("corruption not caught: {other:?}"),
    }
    card.read_blocks(1000, &mut buf).unwrap();
    assert_eq!(buf, image(&disk, 1000, 8));
}

#[test]
fn writes_land_and_read_back() {
    let (sim, mut card, disk) = card(Behaviour::default(), 16 * FRAME_BYTES);
    let data: Vec<u8> = (0..5 * 512).map(|i| (i * 7) as u8).collect();
    let mut buf = vec![0u8; 8 * 512];
    card.read_blocks(1200, &mut buf).unwrap();
    card.write_blocks(1203, &data[..512]).unwrap();
    card.write_blocks(1204, &data).unwrap();
    assert_eq!(image(&disk, 1203, 1), data[..512]);
    assert_eq!(image(&disk, 1204, 5), data);
    card.read_blocks(1203, &mut buf[..6 * 512]).unwrap();
    assert_eq!(buf[..512], data[..512]);
    assert_eq!(buf[512..6 * 512], data[..]);
    let log = sim.log();
    assert_eq!((log.count(24), log.count(25), log.blocks_written), (1, 1, 6));
    assert_eq!(card.traffic().writes, 2);
}

#[test]
fn byte_addressed_cards_work_too() {
    let b = Behaviour { high_capacity: false, ..Behaviour::default() };
    let (sim, mut card, disk) = card(b, 16 * FRAME_BYTES);
    assert!(sim.log().commands.contains(&16), "block length set on a byte-addressed card");
    let mut buf = vec![0u8; 3 * 512];
    card.read_blocks(1234, &mut buf).unwrap();
    assert_eq!(buf, image(&disk, 1234, 3));
}

#[test]
fn an_empty_slot_fails_in_milliseconds() {
    let disk = RamDisk::fat16();
    let sim = SimCard::new(disk.image.clone(), Behaviour { absent: true, ..Behaviour::default() });
    let (bus, cs) = sim.parts(1024);
    let mut card = SdCard::new(bus, cs, SimDelay::default(), 25_000_000);
    assert_eq!(card.init(), Err(CardError::NoCard));
    // Every byte at the start-up clock: well under a second.
    let seconds = card.traffic().bus_bytes as f64 * 8.0 / f64::from(INIT_HZ);
    assert!(seconds < 0.05, "{seconds} s");
    let mut buf = [0u8; 512];
    assert_eq!(card.read_blocks(0, &mut buf), Err(CardError::NotStarted));
}

#[test]
fn a_card_pulled_mid_read_fails_and_works_again_once_back() {
    let (sim, mut card, disk) = card(Behaviour::default(), 16 * FRAME_BYTES);
    let mut buf = vec![0u8; 8 * 512];
    card.read_blocks(1000, &mut buf).unwrap();
    sim.set_absent(true);
    match card.read_blocks(1008, &mut buf) {
        Err(CardError::Data(FrameError::Timeout { block: 0 })) => {}
        other => panic!("a pulled card read: {other:?}"),
    }
    sim.set_absent(false);
    card.init().unwrap();
    card.read_blocks(1008, &mut buf).unwrap();
    assert_eq!(buf, image(&disk, 1008, 8));
}
