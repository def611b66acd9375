//! Service-protocol decoding of arbitrary payload registers, for each transport
//! (DIRECT_REQ 32/64-bit: x3-x7; DIRECT_REQ2: x4-x17). Must not panic; a request that decodes
//! must encode on the same transport and decode to the same value; so must every response
//! (as a client decodes it), and every decode error must encode as an error reply.
#![no_main]

use flexserve_proto::{
    Command, DIRECT_PAYLOAD_REGS, DIRECT2_PAYLOAD_REGS, MAX_PAYLOAD_REGS, Request, Response, Width,
};
use libfuzzer_sys::fuzz_target;

const TRANSPORTS: [(Width, usize); 3] = [
    (Width::W32, DIRECT_PAYLOAD_REGS),
    (Width::W64, DIRECT_PAYLOAD_REGS),
    (Width::W64, DIRECT2_PAYLOAD_REGS),
];

const COMMANDS: [Command; 13] = [
    Command::Ping,
    Command::Info,
    Command::Fault,
    Command::MemRetrieve,
    Command::MemChecksum,
    Command::MemFill,
    Command::MemRelease,
    Command::MemStats,
    Command::MemRelinquishHandle,
    Command::ModelLoad,
    Command::Generate,
    Command::ModelUnload,
    Command::ModelUnload,
];

fuzz_target!(|input: (u8, u8, [u64; MAX_PAYLOAD_REGS])| {
    let (sel, cmd_sel, mut all) = input;
    let (width, n) = TRANSPORTS[usize::from(sel % 3)];
    // Mostly the transport's full register set; sometimes fewer (a short caller-side slice).
    let len = if sel & 0x80 != 0 {
        usize::from(sel >> 2 & 0xf).min(n)
    } else {
        n
    };
    // Steer register 0 to a known command id half of the time.
    if cmd_sel & 1 != 0 {
        let c = COMMANDS[usize::from(cmd_sel >> 1) % COMMANDS.len()];
        all[0] = (all[0] & !0xffff_ffff) | c as u64;
    }
    let regs = &all[..len];
    // What the message is: an SMC32 call's bits above bit 31 are undefined, not part of it.
    let mut masked = all;
    if width == Width::W32 {
        masked.iter_mut().for_each(|r| *r &= 0xffff_ffff);
    }
    let masked = &masked[..len];

    let raw = Request::decode(regs, width);
    let req = Request::decode(masked, width);
    match (raw, req) {
        (Ok(Request::Ping { payload }), Ok(Request::Ping { .. })) => {
            // The SP echoes the payload as it got it; the reply must still encode.
            let mut out = [0u64; MAX_PAYLOAD_REGS];
            let echo = Response::Ping {
                counter: u64::MAX,
                payload,
            };
            echo.encode(&mut out[..n], width)
                .unwrap_or_else(|e| panic!("{echo:?} does not encode: {e:?}"));
        }
        (raw, req) => assert_eq!(raw, req, "upper bits changed the decode"),
    }
    match req {
        Ok(req) => {
            let mut out = [0u64; MAX_PAYLOAD_REGS];
            req.encode(&mut out[..n], width)
                .unwrap_or_else(|e| panic!("{req:?} decoded but does not encode: {e:?}"));
            // Registers past the caller's slice read as zero, and encode wrote zeros there.
            assert_eq!(Request::decode(&out[..len], width), Ok(req));
        }
        Err(e) => {
            let mut out = [0u64; MAX_PAYLOAD_REGS];
            let reply = Response::error(e);
            reply
                .encode(&mut out[..n], width)
                .unwrap_or_else(|x| panic!("error reply {reply:?} does not encode: {x:?}"));
            assert_eq!(Response::decode(&out[..n], width, Command::Info), Ok(reply));
        }
    }

    // The client's side: whatever reply decodes re-encodes to the same registers.
    let cmd = COMMANDS[usize::from(cmd_sel >> 1) % COMMANDS.len()];
    let raw = Response::decode(regs, width, cmd);
    let resp = Response::decode(masked, width, cmd);
    assert_eq!(raw.is_ok(), resp.is_ok());
    if let (Ok(raw), Ok(resp)) = (raw, resp) {
        let mut out = [0u64; MAX_PAYLOAD_REGS];
        resp.encode(&mut out[..n], width)
            .unwrap_or_else(|e| panic!("{resp:?} decoded but does not encode: {e:?}"));
        assert_eq!(Response::decode(&out[..len], width, cmd), Ok(resp));
        let mut again = [0u64; MAX_PAYLOAD_REGS];
        raw.encode(&mut again[..n], width)
            .unwrap_or_else(|e| panic!("{raw:?} decoded but does not encode: {e:?}"));
        assert_eq!(again, out, "upper bits changed the reply");
    }
});
