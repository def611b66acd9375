//! The package parser and unsealer on arbitrary bytes: must not panic; every chunk of an
//! accepted package lies inside it; a package that unwraps for the fuzz device opens or refuses
//! each chunk without panicking, and a refused chunk leaves a zeroed buffer. The head-only
//! reader the partition uses (`head_len`, `Package::parse_head`) agrees with the whole-package
//! parser on every input.
#![no_main]

use flexserve_sealed::{DeviceSecret, Package, TAG_LEN, head_len, open_chunk};
use libfuzzer_sys::fuzz_target;

/// The device `make_seed` seals for.
const DEVICE: [u8; 32] = [7; 32];

fuzz_target!(|data: &[u8]| {
    let whole = Package::parse(data);
    // The partition copies `head_len` bytes (asking for more while it says Truncated), then
    // parses the copy with the declared length.
    let head = head_len(data).ok().filter(|&n| n <= data.len());
    let from_head = head.map(|n| Package::parse_head(&data[..n], data.len()));
    match (&whole, &from_head) {
        (Ok(w), Some(Ok(h))) => {
            assert_eq!(w.header.hash, h.header.hash);
            assert_eq!(w.chunks_offset, h.chunks_offset);
        }
        (Ok(_), _) => panic!("whole package parses, its head does not"),
        (Err(_), Some(Ok(_))) => panic!("the head parses, the whole package does not"),
        _ => {}
    }
    let Ok(pkg) = whole else {
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
