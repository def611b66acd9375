//! The package parser and unsealer on arbitrary bytes: must not panic; every chunk of an
//! accepted package lies inside it; a package that unwraps for the fuzz device opens or refuses
//! each chunk without panicking, and a refused chunk leaves a zeroed buffer.
#![no_main]

use flexserve_sealed::{DeviceSecret, Package, TAG_LEN, open_chunk};
use libfuzzer_sys::fuzz_target;

/// The device `make_seed` seals for.
const DEVICE: [u8; 32] = [7; 32];

fuzz_target!(|data: &[u8]| {
    let Ok(pkg) = Package::parse(data) else {
        return;
    };
    let h = &pkg.header;
    let mut total = 0u64;
    for i in 0..h.chunk_count {
        let c = h.chunk(i).expect("validated chunk");
        let bytes = pkg.chunk_bytes(i).expect("chunk inside the package");
        assert_eq!(bytes.len(), c.plain_len as usize + TAG_LEN);
        total += c.plain_len as u64;
    }
    assert_eq!(total, h.data_len);
    let Ok(key) = pkg.unwrap_key(&DeviceSecret::from_bytes(DEVICE)) else {
        return;
    };
    for i in 0..h.chunk_count {
        let mut buf = pkg.chunk_bytes(i).expect("checked").to_vec();
        if open_chunk(&key, h, i, &mut buf).is_err() {
            assert!(buf.iter().all(|&b| b == 0));
        }
    }
});
