//! The pack parser: header, manifest and tensor table, then a short run of whatever opens.
//!
//! Input: one flags byte, then the pack. Flag bit 0 rewrites the manifest CRC to match
//! (so mutations reach the decoder behind it); bit 1 checks tensor CRCs during the pass.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picogpt_fuzz::{exercise, fix_manifest_crc};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, pack)) = data.split_first() else { return };
    let mut pack = pack.to_vec();
    if flags & 1 != 0 {
        fix_manifest_crc(&mut pack);
    }
    exercise(&pack, flags & 2 != 0);
});
