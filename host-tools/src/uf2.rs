//! UF2, the file a Raspberry Pi Pico 2 in BOOTSEL mode takes on its USB drive: an ELF's
//! loadable segments (the firmware) and raw files (a pack, for the firmware to read in place
//! through XIP) cut into 256-byte flash pages, one page per 512-byte block.
//!
//! The format is Microsoft's (<https://github.com/microsoft/uf2>); its constants and the
//! family ids are pico-sdk's `src/common/boot_uf2_headers/include/boot/uf2.h`. Each block:
//!
//! ```text
//! offset  0  magicStart0  0x0A324655 ("UF2\n")
//!         4  magicStart1  0x9E5D5157
//!         8  flags        0x00002000: familyID present (+ 0x00008000: extension flags)
//!        12  targetAddr   flash address of the payload, 256-aligned
//!        16  payloadSize  256
//!        20  blockNo      0, 1, … numBlocks − 1
//!        24  numBlocks    blocks in the file (the E10 block below counts apart)
//!        28  familyID     0xe48bff59 for the RP2350's Arm Secure images
//!        32  data[476]    the payload, then zeros (or an extension tag)
//!       508  magicEnd     0x0AB16F30
//! ```
//!
//! As picotool writes RP2350 images: every 4 KiB flash sector the image touches is filled
//! with zero pages up to the image's last page (the boot ROM erases by sector and counts
//! blocks), and the file opens with the RP2350-E10 workaround block: family "absolute",
//! page 0x10FFFF00 of 0xEF bytes, flagged with the `RP2_IGNORE_BLOCK` extension so it is
//! never written.
//!
//! The ELF is read by hand, little-endian ELF32 only (every Pico target). Header fields used:
//! `e_ident` (magic `\x7fELF`, class 1 = 32-bit, data 1 = little-endian), `e_phoff` (byte
//! 28), `e_phentsize` (42), `e_phnum` (44). Each 32-byte program header: `p_type` (0; 1 =
//! `PT_LOAD`), `p_offset` (4: where its bytes are in the file), `p_paddr` (12: where they
//! are loaded — flash, also for `.data`, whose `p_vaddr` is RAM), `p_filesz` (16),
//! `p_memsz` (20). The bytes of a `PT_LOAD` segment are its first `min(p_filesz, p_memsz)`;
//! the rest (`.bss`) is zeroed by the firmware and not sent.

use std::collections::BTreeMap;

/// Bytes of a UF2 block.
pub const BLOCK_BYTES: usize = 512;
/// Bytes of flash each block carries: one flash page.
pub const PAGE_BYTES: usize = 256;
/// Bytes of a block's data field (payload, then padding).
const DATA_BYTES: usize = 476;

/// First word of every block, "UF2\n".
pub const MAGIC_START0: u32 = 0x0A32_4655;
/// Second word of every block.
pub const MAGIC_START1: u32 = 0x9E5D_5157;
/// Last word of every block.
pub const MAGIC_END: u32 = 0x0AB1_6F30;
/// Flag: the `fileSize` word holds a family id.
pub const FLAG_FAMILY_ID_PRESENT: u32 = 0x0000_2000;
/// Flag: extension tags follow the payload.
pub const FLAG_EXTENSION_FLAGS_PRESENT: u32 = 0x0000_8000;
/// Extension tag: the RP2350 boot ROM ignores this block.
pub const EXTENSION_RP2_IGNORE_BLOCK: u32 = 0x9957_E304;

/// Family id of RP2040 images.
pub const RP2040: u32 = 0xe48b_ff56;
/// Family id of blocks written at their absolute address whatever the partition table says.
pub const ABSOLUTE: u32 = 0xe48b_ff57;
/// Family id of data (not a bootable image).
pub const DATA: u32 = 0xe48b_ff58;
/// Family id of RP2350 Arm Secure images: the Pico 2's firmware.
pub const RP2350_ARM_S: u32 = 0xe48b_ff59;
/// Family id of RP2350 RISC-V images.
pub const RP2350_RISCV: u32 = 0xe48b_ff5a;
/// Family id of RP2350 Arm Non-secure images.
pub const RP2350_ARM_NS: u32 = 0xe48b_ff5b;

/// Start of the XIP flash window of the RP2040 and RP2350.
pub const FLASH_START: u32 = 0x1000_0000;
/// End of the XIP flash window (16 MiB).
pub const FLASH_END: u32 = 0x1100_0000;
/// Where the Pico 2 firmware looks for a pack in its flash (`firmware/pico2/src/flash.rs`).
pub const PICO2_PACK_ADDRESS: u32 = 0x1010_0000;
/// End of the Pico 2's 4 MiB flash: a pack in flash has `PICO2_FLASH_END - PICO2_PACK_ADDRESS`
/// (3 MiB) at most.
pub const PICO2_FLASH_END: u32 = 0x1040_0000;
/// Bytes of a flash erase sector.
pub const SECTOR_BYTES: u32 = 4096;
/// Where picotool aims the RP2350-E10 workaround block: the window's last page.
pub const E10_BLOCK_ADDRESS: u32 = 0x10FF_FF00;

/// `PT_LOAD`: a program header whose segment is loaded.
const PT_LOAD: u32 = 1;
/// Bytes of an ELF32 header.
const ELF32_HEADER_BYTES: usize = 52;
/// Bytes of an ELF32 program header.
const ELF32_PHDR_BYTES: usize = 32;

/// Why an image cannot be made.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Uf2Error {
    /// The input does not start with `\x7fELF`.
    #[error("not an ELF file (no \\x7fELF magic)")]
    NotElf,
    /// A 64-bit or big-endian ELF: no Pico builds those.
    #[error("{0} ELF: only little-endian 32-bit ELF files are Pico firmware")]
    UnsupportedElf(&'static str),
    /// A header or segment lies beyond the end of the file.
    #[error("{what} lies beyond the end of the ELF file ({len} bytes)")]
    Truncated {
        /// What is cut off.
        what: String,
        /// Bytes in the file.
        len: usize,
    },
    /// The ELF has no loadable bytes.
    #[error("the ELF has no loadable segment with file contents")]
    NoSegments,
    /// Two inputs write the same byte.
    #[error("two inputs both write address {address:#010x}")]
    Overlap {
        /// The first byte written twice.
        address: u32,
    },
    /// Bytes would land beyond the 32-bit address space.
    #[error("{len} bytes at {address:#010x} run past the 32-bit address space")]
    BeyondAddressSpace {
        /// Where they start.
        address: u32,
        /// How many.
        len: usize,
    },
}

/// One flash page of an image, and which of its bytes some input wrote.
#[derive(Clone)]
struct Page {
    bytes: [u8; PAGE_BYTES],
    written: [bool; PAGE_BYTES],
}

impl Page {
    const fn zeros() -> Self {
        Self { bytes: [0; PAGE_BYTES], written: [false; PAGE_BYTES] }
    }
}

/// Flash contents being assembled: 256-byte pages by address, zeros where nothing is written.
#[derive(Clone, Default)]
pub struct Image {
    pages: BTreeMap<u32, Page>,
}

/// One loadable segment of an ELF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Load (physical) address.
    pub address: u32,
    /// Its bytes.
    pub bytes: &'a [u8],
}

impl Image {
    /// An empty image.
    pub fn new() -> Self {
        Self::default()
    }

    /// Places `bytes` at `address`; a byte some earlier input placed is an error.
    pub fn add(&mut self, address: u32, bytes: &[u8]) -> Result<(), Uf2Error> {
        let end = u64::from(address) + bytes.len() as u64;
        if end > 1 << 32 {
            return Err(Uf2Error::BeyondAddressSpace { address, len: bytes.len() });
        }
        for (i, &byte) in bytes.iter().enumerate() {
            // Below 2^32, checked above.
            let at = address + i as u32;
            let page = self.pages.entry(at & !(PAGE_BYTES as u32 - 1)).or_insert_with(Page::zeros);
            let slot = (at as usize) % PAGE_BYTES;
            if page.written[slot] {
                return Err(Uf2Error::Overlap { address: at });
            }
            (page.bytes[slot], page.written[slot]) = (byte, true);
        }
        Ok(())
    }

    /// Places every loadable segment of `elf` at its physical address; returns them.
    pub fn add_elf<'e>(&mut self, elf: &'e [u8]) -> Result<Vec<Segment<'e>>, Uf2Error> {
        let segments = load_segments(elf)?;
        for segment in &segments {
            self.add(segment.address, segment.bytes)?;
        }
        Ok(segments)
    }

    /// Bytes of payload the image holds (whole pages).
    pub fn len(&self) -> usize {
        self.pages.len() * PAGE_BYTES
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// The image as UF2 blocks of `family`, with picotool's sector padding in flash and, for
    /// RP2350 families, the E10 workaround block first.
    pub fn to_uf2(&self, family: u32) -> Vec<u8> {
        let mut pages = self.pages.clone();
        let last = pages.keys().next_back().copied().unwrap_or(0);
        let sectors: Vec<u32> = pages
            .keys()
            .filter(|&&a| (FLASH_START..FLASH_END).contains(&a))
            .map(|a| a / SECTOR_BYTES)
            .collect();
        for sector in sectors {
            let start = sector * SECTOR_BYTES;
            for page in (start..start + SECTOR_BYTES).step_by(PAGE_BYTES).filter(|&p| p < last) {
                pages.entry(page).or_insert_with(Page::zeros);
            }
        }
        let mut out = Vec::with_capacity((pages.len() + 1) * BLOCK_BYTES);
        let first_in_flash =
            pages.keys().next().is_some_and(|a| (FLASH_START..FLASH_END).contains(a));
        if first_in_flash && needs_e10_block(family) {
            out.extend_from_slice(&e10_block());
        }
        let count = pages.len() as u32;
        for (number, (&address, page)) in pages.iter().enumerate() {
            let header = Header {
                flags: FLAG_FAMILY_ID_PRESENT,
                address,
                number: number as u32,
                count,
                family,
            };
            out.extend_from_slice(&block(&header, &page.bytes, None));
        }
        out
    }
}

/// Whether picotool starts a UF2 of `family` with the E10 block: the RP2350's families.
pub fn needs_e10_block(family: u32) -> bool {
    matches!(family, DATA | RP2350_ARM_S | RP2350_RISCV | RP2350_ARM_NS)
}

/// The header words of a block that vary.
struct Header {
    flags: u32,
    address: u32,
    number: u32,
    count: u32,
    family: u32,
}

/// One 512-byte block carrying `payload` (a page), then `extension` if given.
fn block(header: &Header, payload: &[u8; PAGE_BYTES], extension: Option<u32>) -> [u8; BLOCK_BYTES] {
    let mut out = [0u8; BLOCK_BYTES];
    let words = [
        MAGIC_START0,
        MAGIC_START1,
        header.flags,
        header.address,
        PAGE_BYTES as u32,
        header.number,
        header.count,
        header.family,
    ];
    for (slot, word) in out.chunks_exact_mut(4).zip(words) {
        slot.copy_from_slice(&word.to_le_bytes());
    }
    out[32..32 + PAGE_BYTES].copy_from_slice(payload);
    if let Some(tag) = extension {
        out[32 + PAGE_BYTES..36 + PAGE_BYTES].copy_from_slice(&tag.to_le_bytes());
    }
    out[32 + DATA_BYTES..].copy_from_slice(&MAGIC_END.to_le_bytes());
    out
}

/// picotool's RP2350-E10 workaround: block 0 of 2 of family "absolute" at the last page of
/// the flash window, 0xEF bytes, ignored by the boot ROM.
pub fn e10_block() -> [u8; BLOCK_BYTES] {
    let header = Header {
        flags: FLAG_FAMILY_ID_PRESENT | FLAG_EXTENSION_FLAGS_PRESENT,
        address: E10_BLOCK_ADDRESS,
        number: 0,
        count: 2,
        family: ABSOLUTE,
    };
    block(&header, &[0xef; PAGE_BYTES], Some(EXTENSION_RP2_IGNORE_BLOCK))
}

/// The loadable segments of a little-endian ELF32 file, in program-header order.
pub fn load_segments(elf: &[u8]) -> Result<Vec<Segment<'_>>, Uf2Error> {
    if !elf.starts_with(b"\x7fELF") {
        return Err(Uf2Error::NotElf);
    }
    let truncated = |what: String| Uf2Error::Truncated { what, len: elf.len() };
    let header = elf.get(..ELF32_HEADER_BYTES).ok_or_else(|| truncated("the ELF header".into()))?;
    match (header[4], header[5]) {
        (1, 1) => {}
        (2, _) => return Err(Uf2Error::UnsupportedElf("a 64-bit")),
        (_, 2) => return Err(Uf2Error::UnsupportedElf("a big-endian")),
        _ => return Err(Uf2Error::UnsupportedElf("an unknown class of")),
    }
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let phoff = u32_at(header, 28) as usize;
    let phentsize = usize::from(u16_at(header, 42)).max(ELF32_PHDR_BYTES);
    let phnum = usize::from(u16_at(header, 44));
    let mut segments = Vec::new();
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let phdr = elf
            .get(at..at + ELF32_PHDR_BYTES)
            .ok_or_else(|| truncated(format!("program header {i}")))?;
        let (p_type, offset, paddr) = (u32_at(phdr, 0), u32_at(phdr, 4), u32_at(phdr, 12));
        let size = u32_at(phdr, 16).min(u32_at(phdr, 20)) as usize;
        if p_type != PT_LOAD || size == 0 {
            continue;
        }
        let start = offset as usize;
        let bytes = elf
            .get(start..start + size)
            .ok_or_else(|| truncated(format!("segment {i} ({size} bytes at offset {offset})")))?;
        segments.push(Segment { address: paddr, bytes });
    }
    if segments.is_empty() {
        return Err(Uf2Error::NoSegments);
    }
    Ok(segments)
}

/// One block of a UF2 file, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// The flags word.
    pub flags: u32,
    /// Where the payload goes.
    pub address: u32,
    /// This block's number.
    pub number: u32,
    /// Blocks in its file.
    pub count: u32,
    /// The family id (or file size, without [`FLAG_FAMILY_ID_PRESENT`]).
    pub family: u32,
    /// The payload.
    pub payload: Vec<u8>,
}

/// The blocks of a UF2 file; `None` if its length or any block's magic numbers are wrong.
pub fn parse(uf2: &[u8]) -> Option<Vec<Block>> {
    if !uf2.len().is_multiple_of(BLOCK_BYTES) {
        return None;
    }
    uf2.chunks_exact(BLOCK_BYTES)
        .map(|b| {
            let word =
                |i: usize| u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
            let magic_ok =
                word(0) == MAGIC_START0 && word(1) == MAGIC_START1 && word(127) == MAGIC_END;
            let size = word(4) as usize;
            (magic_ok && size <= DATA_BYTES).then(|| Block {
                flags: word(2),
                address: word(3),
                number: word(5),
                count: word(6),
                family: word(7),
                payload: b[32..32 + size].to_vec(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian ELF32 with the given program headers `(type, paddr, bytes, memsz)`,
    /// each segment's bytes after the headers.
    fn elf(segments: &[(u32, u32, &[u8], u32)]) -> Vec<u8> {
        let phoff = ELF32_HEADER_BYTES;
        let mut data_at = phoff + segments.len() * ELF32_PHDR_BYTES;
        let mut out = vec![0u8; data_at];
        out[..4].copy_from_slice(b"\x7fELF");
        (out[4], out[5], out[6]) = (1, 1, 1);
        out[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        out[18..20].copy_from_slice(&40u16.to_le_bytes()); // EM_ARM
        out[28..32].copy_from_slice(&(phoff as u32).to_le_bytes());
        out[42..44].copy_from_slice(&(ELF32_PHDR_BYTES as u16).to_le_bytes());
        out[44..46].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        for (i, &(p_type, paddr, bytes, memsz)) in segments.iter().enumerate() {
            let words = [
                p_type,
                data_at as u32,
                paddr ^ 0x1000_0000,
                paddr,
                bytes.len() as u32,
                memsz,
                5,
                4,
            ];
            let at = phoff + i * ELF32_PHDR_BYTES;
            for (slot, w) in out[at..at + ELF32_PHDR_BYTES].chunks_exact_mut(4).zip(words) {
                slot.copy_from_slice(&w.to_le_bytes());
            }
            data_at += bytes.len();
        }
        for &(_, _, bytes, _) in segments {
            out.extend_from_slice(bytes);
        }
        out
    }

    /// Every byte the blocks of `family` write, by address (E10 and padding blocks apart).
    fn written(blocks: &[Block], family: u32) -> BTreeMap<u32, u8> {
        let mut bytes = BTreeMap::new();
        for b in blocks.iter().filter(|b| b.family == family) {
            for (i, &byte) in b.payload.iter().enumerate() {
                assert!(bytes.insert(b.address + i as u32, byte).is_none(), "written twice");
            }
        }
        bytes
    }

    #[test]
    fn every_loadable_byte_lands_at_its_physical_address() {
        let text: Vec<u8> = (0..700u32).map(|i| (i * 7 + 1) as u8).collect();
        let data: Vec<u8> = (0..40u8).collect();
        let file = elf(&[
            (PT_LOAD, 0x1000_0000, &text, 700),
            (PT_LOAD, 0x1000_02bc, &data, 40), // .data: loaded in flash right after .text
            (PT_LOAD, 0x2000_0100, &[], 4096), // .bss: nothing to send
            (6, 0x1000_1000, &[9; 16], 16),    // not PT_LOAD
        ]);
        let mut image = Image::new();
        let segments = image.add_elf(&file).unwrap();
        assert_eq!(segments.len(), 2);
        let blocks = parse(&image.to_uf2(RP2350_ARM_S)).unwrap();

        let bytes = written(&blocks, RP2350_ARM_S);
        for (i, &b) in text.iter().enumerate() {
            assert_eq!(bytes[&(0x1000_0000 + i as u32)], b);
        }
        for (i, &b) in data.iter().enumerate() {
            assert_eq!(bytes[&(0x1000_02bc + i as u32)], b);
        }
        // Three pages, the gap after .data filled with zeros; nothing else.
        assert_eq!(bytes.len(), 3 * PAGE_BYTES);
        assert!(bytes.range(0x1000_02e4..).all(|(_, &b)| b == 0));
    }

    #[test]
    fn blocks_are_numbered_flagged_and_framed() {
        let mut image = Image::new();
        image.add(0x1000_0000, &[1; 600]).unwrap();
        let uf2 = image.to_uf2(RP2350_ARM_S);
        assert_eq!(uf2.len() % BLOCK_BYTES, 0);
        let blocks = parse(&uf2).unwrap();
        // The E10 block first, then the image's pages.
        assert_eq!(&uf2[..BLOCK_BYTES], &e10_block());
        let e10 = &blocks[0];
        assert_eq!(
            (e10.address, e10.number, e10.count, e10.family),
            (E10_BLOCK_ADDRESS, 0, 2, ABSOLUTE)
        );
        assert_eq!(e10.flags, FLAG_FAMILY_ID_PRESENT | FLAG_EXTENSION_FLAGS_PRESENT);
        assert_eq!(
            &uf2[32 + PAGE_BYTES..36 + PAGE_BYTES],
            &EXTENSION_RP2_IGNORE_BLOCK.to_le_bytes()
        );
        let image_blocks = &blocks[1..];
        assert_eq!(image_blocks.len(), 3);
        for (i, b) in image_blocks.iter().enumerate() {
            assert_eq!(b.flags, FLAG_FAMILY_ID_PRESENT);
            assert_eq!(b.family, 0xe48b_ff59);
            assert_eq!((b.number, b.count), (i as u32, 3));
            assert_eq!(b.address, 0x1000_0000 + (i * PAGE_BYTES) as u32);
            assert_eq!(b.payload.len(), PAGE_BYTES);
        }
        for raw in uf2.chunks_exact(BLOCK_BYTES) {
            assert_eq!(&raw[..4], b"UF2\n");
            assert_eq!(&raw[4..8], &0x9E5D_5157u32.to_le_bytes());
            assert_eq!(&raw[508..], &0x0AB1_6F30u32.to_le_bytes());
        }
        // RP2040 images carry no E10 block.
        assert_eq!(parse(&image.to_uf2(RP2040)).unwrap().len(), 3);
    }

    #[test]
    fn touched_flash_sectors_are_filled_up_to_the_last_page() {
        let mut image = Image::new();
        image.add(0x1000_0000, &[1; 16]).unwrap();
        image.add(0x1000_1800, &[2; 16]).unwrap();
        let blocks = parse(&image.to_uf2(RP2040)).unwrap();
        let addresses: Vec<u32> = blocks.iter().map(|b| b.address).collect();
        // All of the first sector, then the second up to the last page.
        let mut expected: Vec<u32> = (0..16).map(|p| 0x1000_0000 + p * 256).collect();
        expected.extend((0..9).map(|p| 0x1000_1000 + p * 256));
        assert_eq!(addresses, expected);
    }

    #[test]
    fn a_pack_goes_next_to_the_firmware() {
        let pack: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut image = Image::new();
        image.add_elf(&elf(&[(PT_LOAD, 0x1000_0000, &[7; 300], 300)])).unwrap();
        image.add(0x1010_0000, &pack).unwrap();
        let blocks = parse(&image.to_uf2(RP2350_ARM_S)).unwrap();
        let bytes = written(&blocks, RP2350_ARM_S);
        for (i, &b) in pack.iter().enumerate() {
            assert_eq!(bytes[&(0x1010_0000 + i as u32)], b);
        }
        let count = blocks.len() as u32 - 1;
        assert!(blocks[1..].iter().all(|b| b.count == count));
        assert_eq!(image.add(0x1010_0100, &[0]), Err(Uf2Error::Overlap { address: 0x1010_0100 }));
    }

    #[test]
    fn bad_elf_files_are_named() {
        assert_eq!(load_segments(b"MZ\x90\x00"), Err(Uf2Error::NotElf));
        let mut wide = elf(&[(PT_LOAD, 0x1000_0000, &[1; 4], 4)]);
        wide[4] = 2;
        assert_eq!(load_segments(&wide), Err(Uf2Error::UnsupportedElf("a 64-bit")));
        let short = elf(&[(PT_LOAD, 0x1000_0000, &[1; 64], 64)]);
        let cut = &short[..short.len() - 1];
        assert!(matches!(load_segments(cut), Err(Uf2Error::Truncated { .. })));
        assert_eq!(load_segments(&elf(&[(PT_LOAD, 0, &[], 8)])), Err(Uf2Error::NoSegments));
        let mut image = Image::new();
        let err = image.add(0xffff_fff0, &[0; 32]);
        assert_eq!(err, Err(Uf2Error::BeyondAddressSpace { address: 0xffff_fff0, len: 32 }));
    }
}
