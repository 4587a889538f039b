//! The protocol against a simulated card: identification of high- and standard-capacity
//! cards, high speed or not, multi-block reads and writes, and every fault the issue lists.

mod sim;

use picogpt_sdio::data::WriteToken;
use picogpt_sdio::programs::{Mode, Speed};
use picogpt_sdio::{Card, Error};
use sim::{Behaviour, SimCard};

/// A card image whose every byte says where it is.
fn image(blocks: usize) -> Vec<u8> {
    (0..blocks * 512).map(|i| ((i / 512) as u8) ^ ((i % 512) as u8).wrapping_mul(31)).collect()
}

fn card(behaviour: Behaviour) -> Card<SimCard> {
    Card::new(SimCard::new(behaviour, image(2048)))
}

fn block_at(n: usize) -> [u8; 512] {
    let mut block = [0u8; 512];
    block.copy_from_slice(&image(n + 1)[n * 512..]);
    block
}

#[test]
fn an_sdhc_card_is_identified_and_switched_to_high_speed() {
    let mut card = card(Behaviour::default());
    let info = card.init().expect("init");
    assert_eq!(info.blocks, 2048);
    assert!(info.high_capacity);
    assert_eq!(info.speed, Speed::High);
    assert_eq!(info.rca, 0x1234);
    let sim = card.state_machine();
    // CMD0, CMD8, (CMD55, ACMD41) x 3, CMD2, CMD3, CMD9, CMD7, CMD55, ACMD6, CMD6 x 2.
    assert_eq!(sim.log, [0, 8, 55, 141, 55, 141, 55, 141, 2, 3, 9, 7, 55, 106, 6, 6]);
    // Identification at 400 kHz until CMD3, default speed after it.
    assert!(sim.starts.iter().take(20).all(|&(_, speed)| speed == Speed::Identification));
    assert!(sim.starts.contains(&(Mode::Command, Speed::Default)));
}

#[test]
fn a_standard_capacity_card_gets_byte_addresses_and_a_block_length() {
    let mut card = card(Behaviour { high_capacity: false, ..Behaviour::default() });
    let info = card.init().expect("init");
    assert!(!info.high_capacity);
    assert_eq!(info.blocks, 2048);
    let mut blocks = [[0u8; 512]; 3];
    card.read(7, &mut blocks).expect("read");
    assert_eq!(blocks[2], block_at(9));
    let sim = card.state_machine();
    assert!(sim.log.contains(&16), "CMD16 sent: {:?}", sim.log);
    // No CMD8 answer: ACMD41 without HCS; CCS stays 0.
    assert_eq!(&sim.log[..3], &[0, 8, 55]);
}

#[test]
fn a_card_without_high_speed_stays_at_25_mhz() {
    let mut card = card(Behaviour { high_speed: false, ..Behaviour::default() });
    assert_eq!(card.init().expect("init").speed, Speed::Default);
    let sim = card.state_machine();
    // Only the check: no switch asked for.
    assert_eq!(sim.count(6), 1);
}

#[test]
fn a_card_without_cmd6_stays_at_25_mhz_and_its_illegal_bit_is_read_away() {
    let mut card = card(Behaviour { has_cmd6: false, ..Behaviour::default() });
    let info = card.init().expect("init");
    assert_eq!(info.speed, Speed::Default);
    assert_eq!(card.state_machine().log.last(), Some(&13));
    let mut blocks = [[0u8; 512]; 2];
    card.read(0, &mut blocks).expect("read after the fallback");
    assert_eq!(blocks[1], block_at(1));
}

#[test]
fn a_multi_block_read_is_one_cmd18_and_one_cmd12() {
    let mut card = card(Behaviour::default());
    card.init().expect("init");
    let before = card.state_machine().log.len();
    let mut blocks = vec![[0u8; 512]; 64];
    card.read(100, &mut blocks).expect("read");
    for (i, block) in blocks.iter().enumerate() {
        assert_eq!(*block, block_at(100 + i), "block {}", 100 + i);
    }
    assert_eq!(card.state_machine().log[before..], [18, 12]);
}

#[test]
fn a_single_block_read_is_cmd17_alone() {
    let mut card = card(Behaviour::default());
    card.init().expect("init");
    let before = card.state_machine().log.len();
    let mut block = [[0u8; 512]];
    card.read(2047, &mut block).expect("read");
    assert_eq!(block[0], block_at(2047));
    assert_eq!(card.state_machine().log[before..], [17]);
}

#[test]
fn a_crc_error_is_retried() {
    let behaviour = Behaviour { corrupt_blocks: vec![(103, 1)], ..Behaviour::default() };
    let mut card = card(behaviour);
    card.init().expect("init");
    let mut blocks = vec![[0u8; 512]; 8];
    card.read(100, &mut blocks).expect("second attempt");
    assert_eq!(blocks[3], block_at(103));
    assert_eq!(card.state_machine().count(18), 2);
    assert_eq!(card.state_machine().count(12), 2);
}

#[test]
fn a_crc_error_every_time_is_one_error_naming_the_block() {
    let behaviour = Behaviour { corrupt_blocks: vec![(5, 99)], ..Behaviour::default() };
    let mut card = card(behaviour);
    card.init().expect("init");
    let mut blocks = vec![[0u8; 512]; 8];
    let err = card.read(0, &mut blocks).expect_err("always corrupt");
    assert_eq!(err, Error::DataCrc { block: 5 });
    assert_eq!(card.state_machine().count(18), 3);
    assert_eq!(err.to_string(), "block 5 failed its CRC16 on 3 attempts");
}

#[test]
fn a_garbled_response_is_asked_for_again() {
    let behaviour = Behaviour { corrupt_response: Some((3, 1)), ..Behaviour::default() };
    let mut card = card(behaviour);
    let info = card.init().expect("init");
    assert_eq!(info.rca, 0x1234);
    assert_eq!(card.state_machine().count(3), 2);
}

#[test]
fn a_response_garbled_every_time_is_a_bad_response() {
    let behaviour = Behaviour { corrupt_response: Some((7, 99)), ..Behaviour::default() };
    let mut card = card(behaviour);
    let err = card.init().expect_err("CMD7 never answered intact");
    assert!(matches!(err, Error::BadResponse { cmd: 7, .. }), "{err:?}");
}

#[test]
fn no_card_is_no_response_to_cmd8_then_acmd41() {
    let behaviour = Behaviour { dies_after_commands: Some(0), ..Behaviour::default() };
    let mut card = card(behaviour);
    // CMD0 has no response; CMD8 unanswered looks like a version 1 card; CMD55 is the end.
    assert_eq!(card.init(), Err(Error::NoResponse { cmd: 55 }));
}

#[test]
fn a_card_that_stops_answering_mid_read_times_out_on_the_block() {
    let behaviour = Behaviour { dies_after_blocks: Some(5), ..Behaviour::default() };
    let mut card = card(behaviour);
    card.init().expect("init");
    let mut blocks = vec![[0u8; 512]; 8];
    assert_eq!(card.read(10, &mut blocks), Err(Error::DataTimeout { block: 15 }));
    // The first five arrived intact.
    assert_eq!(blocks[4], block_at(14));
}

#[test]
fn a_card_pulled_between_requests_is_no_response_and_the_driver_recovers_on_reinsert() {
    let mut card = card(Behaviour::default());
    card.init().expect("init");
    card.state_machine().behaviour.dies_after_commands = Some(0);
    let mut blocks = vec![[0u8; 512]; 2];
    assert_eq!(card.read(0, &mut blocks), Err(Error::NoResponse { cmd: 18 }));
}

#[test]
fn a_card_that_never_powers_up_is_one_error() {
    let behaviour = Behaviour { power_up_polls: u32::MAX, ..Behaviour::default() };
    let mut card = card(behaviour);
    assert_eq!(card.init(), Err(Error::PowerUp));
}

#[test]
fn a_card_without_the_4_bit_bus_is_refused() {
    let behaviour = Behaviour { refuses_wide_bus: true, ..Behaviour::default() };
    let mut card = card(behaviour);
    let err = card.init().expect_err("no 4-bit bus");
    assert_eq!(err, Error::NoWideBus);
    assert!(err.to_string().contains("SPI"));
}

#[test]
fn writes_land_and_read_back() {
    let mut card = card(Behaviour::default());
    card.init().expect("init");
    let blocks: Vec<[u8; 512]> =
        (0..3).map(|k| core::array::from_fn(|i| (i as u8).wrapping_mul(k + 3))).collect();
    card.write(40, &blocks).expect("write");
    assert_eq!(card.state_machine().count(24), 3);
    let mut back = vec![[0u8; 512]; 3];
    card.read(40, &mut back).expect("read");
    assert_eq!(back, blocks);
}

#[test]
fn a_write_with_a_crc_error_token_is_sent_again() {
    let behaviour = Behaviour { write_crc_errors: 2, ..Behaviour::default() };
    let mut card = card(behaviour);
    card.init().expect("init");
    let block = [[0xa5u8; 512]];
    card.write(1, &block).expect("third attempt");
    assert_eq!(card.state_machine().count(24), 3);
    assert_eq!(card.state_machine().image[512..1024], [0xa5; 512]);
}

#[test]
fn a_write_error_token_is_one_error() {
    let behaviour = Behaviour { write_errors: vec![9], ..Behaviour::default() };
    let mut card = card(behaviour);
    card.init().expect("init");
    let blocks = [[1u8; 512]; 2];
    assert_eq!(
        card.write(8, &blocks),
        Err(Error::WriteRejected { block: 9, token: WriteToken::WriteError })
    );
}

#[test]
fn out_of_range_and_uninitialised_requests_are_refused() {
    let mut card = card(Behaviour::default());
    let mut blocks = [[0u8; 512]; 4];
    assert_eq!(card.read(0, &mut blocks), Err(Error::NotInitialized));
    card.init().expect("init");
    assert_eq!(
        card.read(2046, &mut blocks),
        Err(Error::OutOfRange { start: 2046, count: 4, blocks: 2048 })
    );
    assert_eq!(card.state_machine().count(18), 0);
}

#[cfg(feature = "board")]
#[test]
fn the_block_device_identifies_on_first_use_and_reads_in_one_command() {
    use picogpt_board::block::BlockDevice;
    use picogpt_board::meter::Metered;
    use picogpt_sdio::block_device::SdioCard;

    let mut device = SdioCard::new(card(Behaviour::default()));
    assert_eq!(device.block_count().expect("size"), 2048);
    let mut buf = [0u8; 3 * 512];
    device.read_blocks(30, &mut buf).expect("read");
    assert_eq!(buf[512..1024], block_at(31));
    let log = device.card().state_machine().log.clone();
    assert_eq!(log[log.len() - 2..], [18, 12]);
    let traffic = device.traffic();
    assert_eq!((traffic.multi_reads, traffic.blocks_read, traffic.commands), (1, 3, 2));
    assert_eq!(device.read_blocks(30, &mut buf[..700]), Err(Error::PartialBlock { bytes: 700 }));
    assert_eq!(device.restart().expect("again"), 2048 * 512);
}
