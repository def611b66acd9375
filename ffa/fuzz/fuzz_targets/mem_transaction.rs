//! Memory transaction / relinquish descriptor parsers on arbitrary bytes: must not panic;
//! whatever parses must re-encode to a descriptor that parses to the same value.
#![no_main]

use ffa::memory::{DescKind, MemRelinquishDesc, MemTransaction, ParseOptions, SendKind};
use libfuzzer_sys::fuzz_target;

const KINDS: [DescKind; 5] = [
    DescKind::Send(SendKind::Share),
    DescKind::Send(SendKind::Lend),
    DescKind::Send(SendKind::Donate),
    DescKind::RetrieveReq,
    DescKind::RetrieveResp,
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, buf)) = data.split_first() else {
        return;
    };
    let kind = KINDS[usize::from(sel) % KINDS.len()];
    let opts = ParseOptions {
        expected_sender: (sel & 0x80 != 0).then_some(0),
        emad_size: None,
    };
    if let Ok(t) = MemTransaction::parse(buf, kind, opts) {
        let again = t.to_vec(kind).expect("a parsed descriptor re-encodes");
        assert_eq!(MemTransaction::parse(&again, kind, opts), Ok(t));
    }
    if let Ok(r) = MemRelinquishDesc::parse(buf) {
        let mut out = vec![0u8; r.encoded_len().unwrap()];
        r.encode(&mut out).unwrap();
        assert_eq!(MemRelinquishDesc::parse(&out), Ok(r));
    }
});
