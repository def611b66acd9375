//! The SP's FF-A message loop, as a pure step function: given the registers the SPMC returned
//! (the return of FFA_MSG_WAIT or FFA_MSG_SEND_DIRECT_RESP*), decide the next call.
//!
//! Every direct request gets a direct response, whatever its payload: a request this SP cannot
//! decode still names its sender in w1, so it is answered with a protocol error instead of being
//! left hanging. Anything that is not a request sends the SP back to FFA_MSG_WAIT.

use crate::service::{Reply, Service};
use ffa::{
    DirectMsg2Args, DirectMsgArgs, FuncId, Interface, MsgWaitFlags, PartitionId, Regs, Uuid,
};
use flexserve_proto::{DIRECT_PAYLOAD_REGS, ProtoError, Response, Status, Width};

/// How many FFA_ERROR replies in a row the loop tolerates before it gives up (an SPMC that
/// keeps refusing MSG_WAIT would otherwise spin forever).
pub const MAX_CONSECUTIVE_ERRORS: u32 = 16;

/// What the loop does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Call(Interface),
    /// The SPMC keeps answering with errors; the SP cannot go on.
    GiveUp,
}

/// How an execution context reaches the service: an SP with one EC owns it; with several, each
/// EC's loop shares one behind a lock, held for one request at a time.
pub trait ServiceAccess {
    fn with<R>(&mut self, f: impl FnOnce(&mut Service) -> R) -> R;
}

impl ServiceAccess for Service {
    fn with<R>(&mut self, f: impl FnOnce(&mut Service) -> R) -> R {
        f(self)
    }
}

impl ServiceAccess for &spin::Mutex<Service> {
    fn with<R>(&mut self, f: impl FnOnce(&mut Service) -> R) -> R {
        f(&mut self.lock())
    }
}

/// One execution context's message loop.
#[derive(Debug)]
pub struct Messaging<S = Service> {
    service: S,
    id: PartitionId,
    /// Errors in a row on this EC.
    errors: u32,
}

pub fn msg_wait() -> Interface {
    Interface::MsgWait {
        flags: MsgWaitFlags::default(),
    }
}

impl<S: ServiceAccess> Messaging<S> {
    pub fn new(service: S, id: PartitionId) -> Self {
        Messaging {
            service,
            id,
            errors: 0,
        }
    }

    /// The next call after the SPMC returned `regs`.
    pub fn step(&mut self, regs: &Regs) -> Next {
        let call = match Interface::from_regs(regs) {
            Ok(i) => self.on_interface(i),
            Err(e) => self.on_undecodable(regs, e),
        };
        match call {
            Some(c) => {
                self.errors = 0;
                Next::Call(c)
            }
            None if self.errors >= MAX_CONSECUTIVE_ERRORS => Next::GiveUp,
            None => Next::Call(msg_wait()),
        }
    }

    fn on_interface(&mut self, i: Interface) -> Option<Interface> {
        match i {
            Interface::MsgSendDirectReq {
                src_id,
                dst_id,
                args,
            } => Some(self.direct(src_id, dst_id, args)),
            Interface::MsgSendDirectReq2 {
                src_id,
                dst_id,
                uuid,
                args,
            } => Some(self.direct2(src_id, dst_id, uuid, args)),
            Interface::Error { code, .. } => {
                self.errors += 1;
                log::warn!("SPMC returned error {code:?} ({} in a row)", self.errors);
                None
            }
            Interface::Interrupt { interrupt_id, .. } => {
                log::warn!("unexpected interrupt {interrupt_id}");
                Some(msg_wait())
            }
            other => {
                log::warn!(
                    "unexpected {:?} while waiting for requests",
                    other.func_id()
                );
                Some(msg_wait())
            }
        }
    }

    fn direct(&mut self, src: PartitionId, dst: PartitionId, args: DirectMsgArgs) -> Interface {
        if dst != self.id {
            log::warn!("direct request for {dst:#x} delivered to {:#x}", self.id);
        }
        let reply = match args {
            DirectMsgArgs::Args32(a) => {
                let p = a.map(u64::from);
                let r = self.service.with(|s| s.handle_direct(src, &p, Width::W32));
                DirectMsgArgs::Args32(first5(&r).map(|v| v as u32))
            }
            DirectMsgArgs::Args64(a) => {
                let r = self.service.with(|s| s.handle_direct(src, &a, Width::W64));
                DirectMsgArgs::Args64(first5(&r))
            }
            DirectMsgArgs::Framework32 { msg_type, .. }
            | DirectMsgArgs::Framework64 { msg_type, .. } => {
                // No framework message is enabled in the manifest (no power management or VM
                // availability messages), so none should arrive; answer rather than hang.
                log::warn!("unexpected framework message type {msg_type:#x} from {src:#x}");
                DirectMsgArgs::Args32(proto_error32(Response::Error {
                    status: Status::Unsupported,
                    detail: u64::from(msg_type),
                }))
            }
        };
        Interface::MsgSendDirectResp {
            src_id: self.id,
            dst_id: src,
            args: reply,
        }
    }

    fn direct2(
        &mut self,
        src: PartitionId,
        dst: PartitionId,
        uuid: Uuid,
        args: DirectMsg2Args,
    ) -> Interface {
        if dst != self.id {
            log::warn!("direct request 2 for {dst:#x} delivered to {:#x}", self.id);
        }
        let r = self
            .service
            .with(|s| s.handle_direct2(src, uuid.as_bytes(), &args.0));
        let mut out = [0u64; 14];
        out.copy_from_slice(&r[..14]);
        Interface::MsgSendDirectResp2 {
            src_id: self.id,
            dst_id: src,
            args: DirectMsg2Args(out),
        }
    }

    /// Registers that do not decode. If w0 says it was a direct request, reply with a protocol
    /// error to the sender named in w1 (bits [31:16]); otherwise wait for the next message.
    fn on_undecodable(&mut self, regs: &Regs, e: ffa::DecodeError) -> Option<Interface> {
        let src = (regs[1] >> 16) as u16;
        let err = Response::error(ProtoError::Malformed { index: 0 });
        log::warn!("undecodable message {:#x}: {e}", regs[0] as u32);
        let f = FuncId::from_u32(regs[0] as u32);
        let args = match f {
            Some(FuncId::MsgSendDirectReq32) => DirectMsgArgs::Args32(proto_error32(err)),
            Some(FuncId::MsgSendDirectReq64) => DirectMsgArgs::Args64(proto_error64(err)),
            Some(FuncId::MsgSendDirectReq2) => {
                let mut out = [0u64; 14];
                out[..DIRECT_PAYLOAD_REGS].copy_from_slice(&proto_error64(err));
                return Some(Interface::MsgSendDirectResp2 {
                    src_id: self.id,
                    dst_id: src,
                    args: DirectMsg2Args(out),
                });
            }
            _ => return Some(msg_wait()),
        };
        Some(Interface::MsgSendDirectResp {
            src_id: self.id,
            dst_id: src,
            args,
        })
    }
}

fn first5(r: &Reply) -> [u64; 5] {
    [r[0], r[1], r[2], r[3], r[4]]
}

fn proto_error64(e: Response<'_>) -> [u64; 5] {
    let mut out = [0u64; 5];
    // An error is two registers; they always fit in five.
    let _ = e.encode(&mut out, Width::W64);
    out
}

fn proto_error32(e: Response<'_>) -> [u32; 5] {
    proto_error64(e).map(|v| v as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ffa::FfaError;
    use flexserve_proto::{Command, Request, SERVICE_UUID};

    const SP: u16 = 0x8001;

    fn m() -> Messaging {
        Messaging::new(Service::new(1, true, true), SP)
    }

    fn regs(i: Interface) -> Regs {
        i.to_regs()
    }

    #[test]
    fn direct_req_32_and_64_get_responses_to_the_sender() {
        let mut m = m();
        let mut p = [0u64; 5];
        Request::Ping {
            payload: &[7, 8, 9],
        }
        .encode(&mut p, Width::W32)
        .unwrap();
        let req = Interface::MsgSendDirectReq {
            src_id: 0,
            dst_id: SP,
            args: DirectMsgArgs::Args32(p.map(|v| v as u32)),
        };
        assert_eq!(
            m.step(&regs(req)),
            Next::Call(Interface::MsgSendDirectResp {
                src_id: SP,
                dst_id: 0,
                args: DirectMsgArgs::Args32([0, 1, 7, 8, 9]),
            })
        );
        let req = Interface::MsgSendDirectReq {
            src_id: 3,
            dst_id: SP,
            args: DirectMsgArgs::Args64([Command::Ping as u64, 0, u64::MAX, 1, 2]),
        };
        assert_eq!(
            m.step(&regs(req)),
            Next::Call(Interface::MsgSendDirectResp {
                src_id: SP,
                dst_id: 3,
                args: DirectMsgArgs::Args64([0, 2, u64::MAX, 1, 2]),
            })
        );
    }

    #[test]
    fn direct_req2_routes_by_uuid() {
        let mut m = m();
        let mut a = [0u64; 14];
        a[0] = Command::Ping as u64;
        a[13] = 0x1234;
        let req = |uuid| Interface::MsgSendDirectReq2 {
            src_id: 0,
            dst_id: SP,
            uuid,
            args: DirectMsg2Args(a),
        };
        let Next::Call(Interface::MsgSendDirectResp2 { args, dst_id, .. }) =
            m.step(&regs(req(Uuid(SERVICE_UUID))))
        else {
            panic!("no RESP2");
        };
        assert_eq!(dst_id, 0);
        assert_eq!((args.0[0], args.0[1], args.0[13]), (0, 1, 0x1234));
        let Next::Call(Interface::MsgSendDirectResp2 { args, .. }) = m.step(&regs(req(Uuid::NIL)))
        else {
            panic!("no RESP2");
        };
        assert_eq!(args.0[0], Status::UnknownService as u64);
    }

    #[test]
    fn undecodable_direct_request_still_gets_an_answer() {
        let mut m = m();
        let mut r = [0u64; 18];
        r[0] = FuncId::MsgSendDirectReq32 as u64;
        r[1] = 0x0005_8001;
        r[2] = 0x40; // flags: reserved bits set
        assert_eq!(
            m.step(&r),
            Next::Call(Interface::MsgSendDirectResp {
                src_id: SP,
                dst_id: 5,
                args: DirectMsgArgs::Args32([Status::Malformed as u32, 0, 0, 0, 0]),
            })
        );
        r[0] = 0x8400_00ff; // not an FF-A function at all
        assert_eq!(m.step(&r), Next::Call(msg_wait()));
    }

    /// Whatever the registers hold, `step` returns, and a direct request (by function ID) is
    /// answered to the sender named in w1.
    #[test]
    fn random_registers_always_get_an_answer() {
        let mut m = m();
        let mut st = 0x1234_5678_9abc_def1u64;
        let mut next = || {
            st ^= st >> 12;
            st ^= st << 25;
            st ^= st >> 27;
            st.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let direct = [
            FuncId::MsgSendDirectReq32,
            FuncId::MsgSendDirectReq64,
            FuncId::MsgSendDirectReq2,
        ];
        for i in 0..100_000u32 {
            let mut r: Regs = core::array::from_fn(|_| {
                let v = next();
                if v & 1 == 0 { v >> 61 } else { v }
            });
            let f = direct[(i % 3) as usize];
            if i % 4 != 3 {
                r[0] = f as u64;
            }
            let sender = (r[1] >> 16) as u16;
            match m.step(&r) {
                Next::Call(Interface::MsgSendDirectResp { dst_id, src_id, .. })
                | Next::Call(Interface::MsgSendDirectResp2 { dst_id, src_id, .. }) => {
                    assert_eq!((src_id, dst_id), (SP, sender), "{r:x?}");
                }
                Next::Call(other) => {
                    assert!(
                        !direct.iter().any(|&d| d as u64 == r[0]),
                        "direct request {r:x?} answered with {other:?}"
                    );
                }
                Next::GiveUp => panic!("gave up on {r:x?}"),
            }
        }
    }

    /// Several ECs, one service: each EC's loop takes the lock for one request, so the counters
    /// are shared and the lock is free between requests.
    #[test]
    fn execution_contexts_share_one_service() {
        let shared = spin::Mutex::new(Service::new(1, true, true));
        let mut ecs: Vec<Messaging<&spin::Mutex<Service>>> =
            (0..4).map(|_| Messaging::new(&shared, SP)).collect();
        for round in 1..=3u64 {
            for (i, ec) in ecs.iter_mut().enumerate() {
                let req = Interface::MsgSendDirectReq {
                    src_id: 0,
                    dst_id: SP,
                    args: DirectMsgArgs::Args64([Command::Ping as u64, 0, i as u64, 0, 0]),
                };
                let Next::Call(Interface::MsgSendDirectResp {
                    args: DirectMsgArgs::Args64(r),
                    ..
                }) = ec.step(&regs(req))
                else {
                    panic!("no response on EC {i}");
                };
                // The ping counter counts requests on every EC.
                assert_eq!(r[1], (round - 1) * 4 + i as u64 + 1);
                assert_eq!(r[2], i as u64);
                assert!(shared.try_lock().is_some(), "lock held after a request");
            }
        }
        assert_eq!(shared.lock().served(), 12);
        // Error streaks are per EC: one EC giving up does not count another's errors.
        let err = regs(Interface::Error {
            target_info: 0,
            code: FfaError::Denied,
        });
        for _ in 1..MAX_CONSECUTIVE_ERRORS {
            assert_eq!(ecs[0].step(&err), Next::Call(msg_wait()));
        }
        assert_eq!(ecs[1].step(&err), Next::Call(msg_wait()));
        assert_eq!(ecs[0].step(&err), Next::GiveUp);
    }

    #[test]
    fn errors_go_back_to_waiting_then_give_up() {
        let mut m = m();
        let err = regs(Interface::Error {
            target_info: 0,
            code: FfaError::Denied,
        });
        for _ in 1..MAX_CONSECUTIVE_ERRORS {
            assert_eq!(m.step(&err), Next::Call(msg_wait()));
        }
        assert_eq!(m.step(&err), Next::GiveUp);
    }
}
