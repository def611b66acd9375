//! Register decoding on arbitrary x0-x17: must not panic; whatever decodes must encode
//! and decode to the same value.
#![no_main]

use ffa::{FuncId, Interface};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|regs: [u64; 18]| {
    if let Ok(i) = Interface::from_regs(&regs) {
        assert_eq!(Interface::from_regs(&i.to_regs()), Ok(i));
        assert_eq!(i.func_id() as u32, regs[0] as u32);
    }
    // A version reply is a bare w0 (or -1, which decodes as FFA_ERROR(NOT_SUPPORTED)).
    if let Ok(i @ Interface::VersionOut { .. }) = Interface::decode_reply(FuncId::Version, &regs) {
        assert_eq!(
            Interface::decode_reply(FuncId::Version, &i.to_regs()),
            Ok(i)
        );
    }
});
