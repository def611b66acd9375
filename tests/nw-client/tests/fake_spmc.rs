//! Runs the client's scenarios on the host against a small fake partition manager that routes
//! direct requests to the real SP message loop (`flexserve_sp::messaging`). This checks the
//! client's logic and the SP's replies together; the QEMU run checks the real world switch.

use ffa::{
    Conduit, Endpoint, FfaError, FuncId, Interface, PartitionInfo, PartitionProperties, Regs,
    SuccessArgs, Uuid, Version,
};
use flexserve_proto::SERVICE_UUID;
use flexserve_sp::{
    messaging::{Messaging, Next},
    service::Service,
};
use nw_client::{Env, scenarios};
use std::{cell::RefCell, rc::Rc};

const SP_ID: u16 = 0x8001;

struct FakeSpmc {
    sp: Messaging,
    /// The SP panicked; every later request gets ABORTED (as Hafnium and the testbed do).
    aborted: bool,
    rx: Rc<RefCell<[u8; 4096]>>,
    /// DIRECT_REQ2 receipt declared (the manifest's messaging-method bit 9).
    req2: bool,
}

fn error(code: FfaError) -> Regs {
    Interface::Error {
        target_info: 0,
        code,
    }
    .to_regs()
}

fn success(w2: u32, w3: u32) -> Regs {
    Interface::Success {
        target_info: 0,
        args: SuccessArgs::Args32([w2, w3, 0, 0, 0, 0]),
    }
    .to_regs()
}

impl FakeSpmc {
    fn forward_to_sp(&mut self, regs: &Regs) -> Regs {
        if self.aborted {
            return error(FfaError::Aborted);
        }
        let sp = &mut self.sp;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sp.step(regs))) {
            Ok(Next::Call(reply)) => reply.to_regs(),
            Ok(Next::GiveUp) | Err(_) => {
                self.aborted = true;
                error(FfaError::Aborted)
            }
        }
    }
}

impl Conduit for FakeSpmc {
    fn call(&mut self, regs: Regs) -> Regs {
        let call = match Interface::from_regs(&regs) {
            Ok(c) => c,
            Err(e) => return error(e.to_ffa_error()),
        };
        match call {
            Interface::Version { .. } => {
                let mut r = [0u64; 18];
                r[0] = u64::from(Version::V1_2.to_u32());
                r
            }
            Interface::IdGet => success(0, 0),
            Interface::RxTxMap { .. } | Interface::RxRelease { .. } => success(0, 0),
            Interface::Features { feature_id, .. } => match FuncId::from_u32(feature_id) {
                Some(_) => success(0, 0),
                None => error(FfaError::NotSupported),
            },
            Interface::PartitionInfoGet { uuid, flags } => {
                if !uuid.is_nil() && uuid != Uuid(SERVICE_UUID) {
                    return error(FfaError::InvalidParameters);
                }
                let mut props = PartitionProperties::DIRECT_REQ_RECV | PartitionProperties::AARCH64;
                if self.req2 {
                    props |= PartitionProperties::DIRECT_REQ2_RECV;
                }
                let info = PartitionInfo {
                    id: SP_ID,
                    exec_ctx_count: 1,
                    properties: PartitionProperties(props),
                    uuid: Uuid(SERVICE_UUID),
                };
                if flags.count_only {
                    return success(1, 0);
                }
                PartitionInfo::pack_all(&[info], &mut self.rx.borrow_mut()[..]).unwrap();
                success(1, PartitionInfo::SIZE as u32)
            }
            Interface::MsgSendDirectReq { dst_id, .. } if dst_id == SP_ID => {
                self.forward_to_sp(&regs)
            }
            Interface::MsgSendDirectReq2 { dst_id, .. } if dst_id == SP_ID => {
                if !self.req2 {
                    return error(FfaError::NotSupported);
                }
                self.forward_to_sp(&regs)
            }
            Interface::MsgSendDirectReq { .. } | Interface::MsgSendDirectReq2 { .. } => {
                error(FfaError::InvalidParameters)
            }
            _ => error(FfaError::NotSupported),
        }
    }
}

struct HostEnv {
    ep: Endpoint<FakeSpmc>,
    rx: Rc<RefCell<[u8; 4096]>>,
}

impl Env for HostEnv {
    type C = FakeSpmc;

    fn ep(&mut self) -> &mut Endpoint<FakeSpmc> {
        &mut self.ep
    }

    fn rxtx(&self) -> (u64, u64) {
        (0x4800_0000, 0x4800_1000)
    }

    fn read_rx(&self, out: &mut [u8]) {
        let rx = self.rx.borrow();
        let n = out.len().min(rx.len());
        out[..n].copy_from_slice(&rx[..n]);
    }

    fn call_with_simd(&mut self, _: Regs, _: &[u8; 512]) -> Option<(Regs, [u8; 512])> {
        None
    }
}

fn fault(kind: flexserve_proto::FaultKind) -> ! {
    panic!("injected {kind:?}")
}

fn env_with(service: Service, req2: bool) -> HostEnv {
    let rx = Rc::new(RefCell::new([0u8; 4096]));
    HostEnv {
        ep: Endpoint::new(FakeSpmc {
            sp: Messaging::new(service, SP_ID),
            aborted: false,
            rx: rx.clone(),
            req2,
        }),
        rx,
    }
}

fn env(req2: bool) -> HostEnv {
    env_with(Service::new(0x1234, req2, true), req2)
}

fn run(name: &str, req2: bool) -> (String, u32, u32) {
    let mut out = String::new();
    let (p, f) = scenarios::run(name, &mut env(req2), &mut out);
    (out, p, f)
}

#[test]
fn messaging_passes_except_the_simd_probe_on_the_host() {
    let (out, passed, failed) = run("messaging", true);
    print!("{out}");
    let fails: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(
        fails,
        ["FAIL simd.preserved_across_world_switch: this build cannot load vector registers"]
    );
    assert!(passed >= 10, "{passed} passed");
    assert_eq!(failed, 1);
    assert!(out.ends_with(&format!("{passed} passed, 1 failed\n")));
    assert!(out.contains("PASS ping.round_trips_1000\n"));
}

#[test]
fn a_manifest_without_req2_fails_the_req2_checks() {
    let (out, _, _) = run("messaging", false);
    assert!(out.contains("FAIL ping.req2: SP 0x8001 does not declare DIRECT_REQ2 receipt"));
    // `info` agrees with the partition properties either way.
    assert!(out.contains("PASS info\n"), "{out}");
}

#[test]
fn demo_passes_and_unknown_scenario_fails() {
    let (out, passed, failed) = run("demo", true);
    print!("{out}");
    assert_eq!((failed, passed), (0, 8), "{out}");
    assert!(out.contains("found SP 0x8001"));
    let (out, passed, failed) = run("nonesuch", true);
    assert_eq!((passed, failed), (0, 1));
    assert!(
        out.starts_with("FAIL scenario: unknown scenario `nonesuch`"),
        "{out}"
    );
}

#[test]
fn sp_failure_scenarios() {
    // Without fault injection the SP refuses and stays up: the checks fail with reasons.
    let mut out = String::new();
    let (_, failed) = scenarios::run("sp-panic", &mut env(true), &mut out);
    assert!(
        out.contains("FAIL fault.capability: SP built without fault-injection"),
        "{out}"
    );
    assert!(out.contains("FAIL fault.request_reports_aborted"), "{out}");
    assert_eq!(failed, 3, "{out}");

    let mut out = String::new();
    let service = Service::new(0x1234, true, true).with_fault_injection(fault);
    let (passed, failed) = scenarios::run("sp-panic", &mut env_with(service, true), &mut out);
    print!("{out}");
    assert_eq!(failed, 0, "{out}");
    assert!(out.contains("PASS fault.request_reports_aborted\nPASS fault.sp_stays_down\n"));
    assert!(passed >= 9);
}
