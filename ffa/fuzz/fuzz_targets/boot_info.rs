//! Boot-info blob parser on arbitrary bytes: must not panic, and every descriptor of an
//! accepted blob must be readable.
#![no_main]

use ffa::boot_info::BootInfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(bi) = BootInfo::parse(data) {
        assert_eq!(bi.descriptors().count() as u32, bi.header.desc_count);
        let _ = bi.manifest_fdt();
    }
});
