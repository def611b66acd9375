//! The FlexServe service: decodes `flexserve-proto` requests from direct-message payload
//! registers and writes the reply. Every input gets a reply; nothing here can panic on what the
//! normal world sends.

use crate::flexmem::FlexMem;
use crate::flexnpu::{NpuControl, RegionIo};
use crate::sealed::Device;
use crate::serve::{Hooks, Serving};
use crate::shmem::{MemPlatform, SharedMemory};
use alloc::boxed::Box;
use ffa::{PartitionId, memory::TransactionType};
use flexserve_proto::{
    Command, DIRECT_PAYLOAD_REGS, DIRECT2_PAYLOAD_REGS, FaultKind, FlexFault, Info,
    MAX_PAYLOAD_REGS, NpuFault, PROTOCOL_VERSION, ProtoError, Request, Response, SERVICE_UUID,
    SealedFault, Width, caps,
};
use llm_runtime::kernels::{BlockQ8_0, MatmulOffload, OffloadError};

/// The memory service with the platform behind a trait object (SMCs and the runtime page table
/// on the target, fakes in tests).
pub type Memory = SharedMemory<Box<dyn MemPlatform>>;

/// Makes the SP fail in the requested way (test builds with the `fault-injection` feature).
pub type FaultHook = fn(FaultKind) -> !;

/// Whether `ModelLoad` takes plaintext GGUF files (feature `plaintext-models`, test builds).
pub const PLAINTEXT_MODELS: bool = cfg!(feature = "plaintext-models");

/// Reply payload registers (unused ones are zero).
pub type Reply = [u64; MAX_PAYLOAD_REGS];

/// The dispatcher's state.
pub struct Service {
    /// Well-formed requests served so far (ping replies carry it).
    served: u64,
    /// Requests refused as malformed, unknown or misaddressed.
    rejected: u64,
    capabilities: u64,
    build_id: u32,
    fault_hook: Option<FaultHook>,
    memory: Option<Memory>,
    serving: Option<Serving>,
    flexmem: Option<FlexMem>,
    flexnpu: Option<SharedNpu>,
}

/// Flex-NPU, shared by the `Npu*` commands and the loaded model's offload hook.
type SharedNpu = alloc::sync::Arc<spin::Mutex<Box<dyn NpuControl + Send>>>;

/// The loaded model's [`MatmulOffload`] device: Flex-NPU, used while the NPU is the SP's.
struct NpuOffload(SharedNpu);

impl MatmulOffload for NpuOffload {
    fn start(&mut self, w: &[BlockQ8_0], x: &[BlockQ8_0], n: usize, rows: usize) -> bool {
        self.0.lock().offload_start(w, x, n, rows)
    }
    fn finish(&mut self, y: &mut [f32]) -> Result<(), OffloadError> {
        self.0.lock().offload_finish(y)
    }
}

impl core::fmt::Debug for Service {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Service")
            .field("served", &self.served)
            .field("rejected", &self.rejected)
            .field("capabilities", &self.capabilities)
            .field("memory", &self.memory.as_ref().map(|m| m.stats()))
            .finish()
    }
}

impl Service {
    /// `req2` says whether this platform's SPMC delivers DIRECT_REQ2 (the manifest's
    /// messaging-method bit 9); `console_log` whether the SP logs over FFA_CONSOLE_LOG.
    pub fn new(build_id: u32, req2: bool, console_log: bool) -> Self {
        let mut capabilities = caps::PING | caps::INFO;
        if req2 {
            capabilities |= caps::DIRECT_REQ2;
        }
        if console_log {
            capabilities |= caps::CONSOLE_LOG;
        }
        Service {
            served: 0,
            rejected: 0,
            capabilities,
            build_id,
            fault_hook: None,
            memory: None,
            serving: None,
            flexmem: None,
            flexnpu: None,
        }
    }

    /// Serves the `Mem*` commands with `memory`.
    pub fn with_memory(mut self, memory: Memory) -> Self {
        self.memory = Some(memory);
        self.capabilities |= caps::MEMORY;
        self
    }

    /// Serves models (`ModelLoad`, `Generate`, `ModelUnload`); they need the memory service
    /// too, and are `Unsupported` without it. Generate's arguments and results need
    /// DIRECT_REQ2's registers, so `info` advertises serving only where the SPMC delivers REQ2.
    pub fn with_serving(mut self, hooks: Hooks) -> Self {
        self.serving = Some(Serving::new(hooks));
        if self.memory.is_some() && self.capabilities & caps::DIRECT_REQ2 != 0 {
            self.capabilities |= caps::SERVING;
            if PLAINTEXT_MODELS {
                self.capabilities |= caps::PLAINTEXT_MODELS;
            }
        }
        self
    }

    /// Gives the serving engine the device keys: sealed packages and attestation
    /// (`DeviceKey`, `ModelLoadSealed`, `Attest`; without keys they answer
    /// `Sealed(NoDeviceKey)`).
    pub fn with_device(mut self, device: Device) -> Self {
        if let Some(s) = self.serving.as_mut() {
            s.set_device(device);
            if self.capabilities & caps::SERVING != 0 {
                self.capabilities |= caps::SEALED;
            }
        }
        self
    }

    /// Serves the `Flex*` commands with `flexmem` (over the memory service's regions).
    pub fn with_flexmem(mut self, flexmem: FlexMem) -> Self {
        self.flexmem = Some(flexmem);
        if self.memory.is_some() {
            self.capabilities |= caps::FLEXMEM;
        }
        self
    }

    pub fn flexmem(&self) -> Option<&FlexMem> {
        self.flexmem.as_ref()
    }

    /// Serves the `Npu*` commands with `npu` (its secure jobs run on Flex-Mem regions, so it
    /// needs the memory service and Flex-Mem too).
    pub fn with_flexnpu(mut self, npu: Box<dyn NpuControl + Send>) -> Self {
        self.flexnpu = Some(alloc::sync::Arc::new(spin::Mutex::new(npu)));
        if self.flexmem.is_some() && self.capabilities & caps::DIRECT_REQ2 != 0 {
            self.capabilities |= caps::FLEX_NPU;
        }
        self
    }

    /// A Flex-NPU command.
    fn npu_request(&mut self, req: &Request<'_>) -> Result<Response<'static>, ProtoError> {
        let Some(shared) = self.flexnpu.as_ref() else {
            return Err(ProtoError::Npu(NpuFault::NoNpu));
        };
        let mut npu = shared.lock();
        match *req {
            Request::NpuAcquire => npu
                .acquire()
                .map(Response::NpuSwitched)
                .map_err(ProtoError::Npu),
            Request::NpuRelease => npu
                .release()
                .map(Response::NpuSwitched)
                .map_err(ProtoError::Npu),
            Request::NpuGemm(a) => {
                let Some(mem) = self.memory.as_mut() else {
                    return Err(ProtoError::Npu(NpuFault::NotSecured));
                };
                if !mem.is_secured(a.region)? {
                    return Err(ProtoError::Npu(NpuFault::NotSecured));
                }
                let pages = mem
                    .region(a.region)?
                    .ranges()
                    .iter()
                    .flat_map(|r| (0..u64::from(r.page_count)).map(move |i| r.address + i * 4096))
                    .collect();
                let mut io = SecuredRegion {
                    mem,
                    id: a.region,
                    pages,
                };
                npu.gemm(&a, &mut io)
                    .map(Response::NpuGemm)
                    .map_err(ProtoError::Npu)
            }
            _ => Err(ProtoError::Internal),
        }
    }

    /// A Flex-Mem command. Without a memory service the commands are `Unsupported`; with one
    /// but no firewall they answer `FlexMem(NoFirewall)`, the defined error of a platform whose
    /// manifest grants no firewall (e.g. real Hafnium on QEMU).
    fn flexmem_request(&mut self, req: &Request<'_>) -> Result<Response<'static>, ProtoError> {
        let Some(m) = self.memory.as_mut() else {
            let cmd = match req {
                Request::FlexSecure { .. } => Command::FlexSecure,
                Request::FlexRelease { .. } => Command::FlexRelease,
                Request::FlexStats => Command::FlexStats,
                _ => Command::FlexProbe,
            };
            return Err(ProtoError::Unsupported(cmd));
        };
        let Some(f) = self.flexmem.as_mut() else {
            return Err(ProtoError::FlexMem(FlexFault::NoFirewall));
        };
        match *req {
            Request::FlexSecure {
                region,
                owner,
                scrub,
            } => f
                .secure(m, region, owner, scrub)
                .map(Response::FlexSwitched),
            Request::FlexRelease { region } => f.release(m, region).map(Response::FlexSwitched),
            Request::FlexStats => Ok(Response::FlexStats(f.stats())),
            Request::FlexProbe { addr } => f.probe(m, addr).map(Response::Probed),
            _ => Err(ProtoError::Internal),
        }
    }

    pub fn serving(&self) -> Option<&Serving> {
        self.serving.as_ref()
    }

    /// A serving command; `regs` is the transport's payload size (load and generate replies
    /// need DIRECT_REQ2).
    fn serving_request(
        &mut self,
        sender: PartitionId,
        req: &Request<'_>,
        regs: usize,
    ) -> Result<Response<'static>, ProtoError> {
        let cmd = match req {
            Request::ModelLoad { .. } => Command::ModelLoad,
            Request::ModelLoadSealed { .. } => Command::ModelLoadSealed,
            Request::DeviceKey => Command::DeviceKey,
            Request::Attest { .. } => Command::Attest,
            Request::Generate(_) => Command::Generate,
            _ => Command::ModelUnload,
        };
        let (Some(s), Some(m)) = (self.serving.as_mut(), self.memory.as_mut()) else {
            return Err(ProtoError::Unsupported(cmd));
        };
        // `handle` refused these over DIRECT_REQ already; kept so this holds on its own.
        if cmd != Command::ModelUnload && regs < DIRECT2_PAYLOAD_REGS {
            return Err(ProtoError::Unsupported(cmd));
        }
        let flexmem = self.flexmem.as_mut();
        let offload = || {
            self.flexnpu
                .clone()
                .map(|n| Box::new(NpuOffload(n)) as Box<dyn MatmulOffload + Send>)
        };
        match *req {
            Request::ModelLoad { .. } if !PLAINTEXT_MODELS => Err(ProtoError::Unsupported(cmd)),
            Request::ModelLoad { handle } => s.load(m, sender, handle).map(|i| {
                s.set_offload(offload());
                Response::Model(i)
            }),
            Request::ModelLoadSealed { package, dest, len } => s
                .load_sealed(m, flexmem, sender, package, dest, len)
                .map(|i| {
                    s.set_offload(offload());
                    Response::Model(i)
                }),
            Request::DeviceKey => match s.device() {
                Some(d) => Ok(Response::DeviceKey(d.key_reply())),
                None => Err(ProtoError::Sealed {
                    fault: SealedFault::NoDeviceKey,
                    chunk: 0,
                }),
            },
            Request::Attest { io_handle, nonce } => s
                .attest(m, sender, io_handle, &nonce)
                .map(Response::Attested),
            Request::Generate(a) => s.generate(m, sender, &a).map(Response::Generated),
            Request::ModelUnload => s.unload(m, flexmem).map(|()| Response::Done),
            _ => Err(ProtoError::Internal),
        }
    }

    pub fn memory(&self) -> Option<&Memory> {
        self.memory.as_ref()
    }

    /// Serves `fault` requests by calling `hook` (test builds only).
    pub fn with_fault_injection(mut self, hook: FaultHook) -> Self {
        self.fault_hook = Some(hook);
        self.capabilities |= caps::FAULT_INJECTION;
        self
    }

    pub fn served(&self) -> u64 {
        self.served
    }

    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Handles a DIRECT_REQ payload (x3-x7; `width` from the 32- or 64-bit function ID) from
    /// endpoint `sender` (the owner of any memory the request names).
    pub fn handle_direct(&mut self, sender: PartitionId, payload: &[u64], width: Width) -> Reply {
        let n = payload.len().min(DIRECT_PAYLOAD_REGS);
        self.handle(sender, &payload[..n], width, DIRECT_PAYLOAD_REGS)
    }

    /// Handles a DIRECT_REQ2 payload (x4-x17) addressed to `uuid` (16 bytes, RFC 4122 order).
    pub fn handle_direct2(
        &mut self,
        sender: PartitionId,
        uuid: &[u8; 16],
        payload: &[u64],
    ) -> Reply {
        if *uuid != SERVICE_UUID {
            self.rejected += 1;
            return encode(Response::error(ProtoError::UnknownService), Width::W64, 2);
        }
        let n = payload.len().min(DIRECT2_PAYLOAD_REGS);
        self.handle(sender, &payload[..n], Width::W64, DIRECT2_PAYLOAD_REGS)
    }

    /// A memory command; `Unsupported` if this SP has no memory service.
    fn memory_request(
        &mut self,
        sender: PartitionId,
        req: &Request<'_>,
    ) -> Result<Response<'static>, ProtoError> {
        let Some(m) = self.memory.as_mut() else {
            let cmd = match req {
                Request::MemRetrieve { .. } => Command::MemRetrieve,
                Request::MemChecksum { .. } => Command::MemChecksum,
                Request::MemFill { .. } => Command::MemFill,
                Request::MemRelease { .. } => Command::MemRelease,
                Request::MemStats => Command::MemStats,
                _ => Command::MemRelinquishHandle,
            };
            return Err(ProtoError::Unsupported(cmd));
        };
        Ok(match *req {
            Request::MemRetrieve { handle, tx_type } => {
                let t = match tx_type {
                    1 => TransactionType::Share,
                    2 => TransactionType::Lend,
                    3 => TransactionType::Donate,
                    _ => TransactionType::Unspecified,
                };
                Response::MemRegion(m.retrieve(sender, handle, t)?)
            }
            Request::MemChecksum {
                region,
                offset,
                len,
            } => Response::Checksum(m.checksum(region, offset, len)?),
            Request::MemFill {
                region,
                offset,
                len,
                pattern,
            } => {
                m.fill(region, offset, len, pattern)?;
                Response::Done
            }
            Request::MemRelease { region } => {
                m.release(region)?;
                Response::Done
            }
            Request::MemStats => Response::MemStats(m.stats()),
            Request::MemRelinquishHandle { handle } => {
                m.relinquish_unheld(handle)?;
                Response::Done
            }
            // Only memory requests are passed here.
            _ => return Err(ProtoError::Internal),
        })
    }

    fn handle(&mut self, sender: PartitionId, payload: &[u64], width: Width, regs: usize) -> Reply {
        // Load and generate need DIRECT_REQ2's registers: over DIRECT_REQ say so, rather than
        // report the missing arguments as malformed.
        let id = payload.first().map(|w| w & 0xffff);
        if regs < DIRECT2_PAYLOAD_REGS
            && let Some(
                cmd @ (Command::ModelLoad
                | Command::ModelLoadSealed
                | Command::DeviceKey
                | Command::Attest
                | Command::Generate
                | Command::FlexStats
                | Command::NpuGemm),
            ) = id.and_then(|i| Command::from_id(i as u16))
        {
            self.rejected += 1;
            return encode(Response::error(ProtoError::Unsupported(cmd)), width, regs);
        }
        let response = match Request::decode(payload, width) {
            Err(e) => {
                self.rejected += 1;
                log::warn!("rejected request {:x?}: {e:?}", payload.first());
                Response::error(e)
            }
            Ok(Request::Fault { kind }) => match self.fault_hook {
                Some(hook) => {
                    log::warn!("fault injection: {kind:?} requested");
                    hook(kind)
                }
                None => {
                    self.rejected += 1;
                    Response::error(ProtoError::Unsupported(Command::Fault))
                }
            },
            Ok(
                req @ (Request::MemRetrieve { .. }
                | Request::MemChecksum { .. }
                | Request::MemFill { .. }
                | Request::MemRelease { .. }
                | Request::MemStats
                | Request::MemRelinquishHandle { .. }),
            ) => match self.memory_request(sender, &req) {
                Ok(r) => {
                    self.served = self.served.wrapping_add(1);
                    r
                }
                Err(e) => {
                    self.rejected += 1;
                    log::warn!("memory request {req:x?} refused: {e:?}");
                    Response::error(e)
                }
            },
            Ok(
                req @ (Request::FlexSecure { .. }
                | Request::FlexRelease { .. }
                | Request::FlexStats
                | Request::FlexProbe { .. }),
            ) => match self.flexmem_request(&req) {
                Ok(r) => {
                    self.served = self.served.wrapping_add(1);
                    r
                }
                Err(e) => {
                    self.rejected += 1;
                    log::warn!("flexmem request {req:x?} refused: {e:?}");
                    Response::error(e)
                }
            },
            Ok(
                req @ (Request::ModelLoad { .. }
                | Request::ModelLoadSealed { .. }
                | Request::DeviceKey
                | Request::Attest { .. }
                | Request::Generate(_)
                | Request::ModelUnload),
            ) => match self.serving_request(sender, &req, regs) {
                Ok(r) => {
                    self.served = self.served.wrapping_add(1);
                    r
                }
                Err(e) => {
                    self.rejected += 1;
                    log::warn!("serving request {req:x?} refused: {e:?}");
                    Response::error(e)
                }
            },
            Ok(req @ (Request::NpuAcquire | Request::NpuRelease | Request::NpuGemm(_))) => {
                match self.npu_request(&req) {
                    Ok(r) => {
                        self.served = self.served.wrapping_add(1);
                        r
                    }
                    Err(e) => {
                        self.rejected += 1;
                        log::warn!("NPU request {req:x?} refused: {e:?}");
                        Response::error(e)
                    }
                }
            }
            Ok(req) => {
                self.served = self.served.wrapping_add(1);
                match req {
                    Request::Ping { payload } => Response::Ping {
                        counter: self.served,
                        payload,
                    },
                    Request::Info => Response::Info(Info {
                        protocol_version: PROTOCOL_VERSION,
                        build_id: self.build_id,
                        capabilities: self.capabilities,
                        sp_version: crate::SP_VERSION,
                    }),
                    // Handled above.
                    _ => Response::error(ProtoError::Internal),
                }
            }
        };
        encode(response, width, regs)
    }
}

/// A secured Flex-Mem region as a job's buffer.
struct SecuredRegion<'a> {
    mem: &'a mut Memory,
    id: u32,
    pages: alloc::vec::Vec<u64>,
}

impl RegionIo for SecuredRegion<'_> {
    fn pages(&self) -> &[u64] {
        &self.pages
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> bool {
        u32::try_from(offset).is_ok_and(|o| self.mem.write_at(self.id, o, data).is_ok())
    }
    fn read(&mut self, offset: u64, out: &mut [u8]) -> bool {
        u32::try_from(offset).is_ok_and(|o| self.mem.read_at(self.id, o, out).is_ok())
    }
}

/// Writes `response` into the first `regs` registers of a reply; a response that does not fit
/// (a bug, not a client error) becomes an `Internal` error.
fn encode(response: Response<'_>, width: Width, regs: usize) -> Reply {
    let mut out = [0u64; MAX_PAYLOAD_REGS];
    if let Err(e) = response.encode(&mut out[..regs], width) {
        log::error!("cannot encode {response:?}: {e:?}");
        // Two registers always fit; this cannot fail.
        let _ = Response::error(ProtoError::Internal).encode(&mut out[..regs], width);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use flexserve_proto::{Command, Status};

    fn ping(p: &[u64], width: Width) -> [u64; DIRECT_PAYLOAD_REGS] {
        let mut regs = [0; DIRECT_PAYLOAD_REGS];
        Request::Ping { payload: p }
            .encode(&mut regs, width)
            .unwrap();
        regs
    }

    #[test]
    fn ping_echoes_and_counts() {
        let mut s = Service::new(0xabcd, true, true);
        for i in 1..=1000u64 {
            let p = [i, !i & 0xffff_ffff, 7];
            let r = s.handle_direct(0, &ping(&p, Width::W32), Width::W32);
            assert_eq!(
                Response::decode(&r[..DIRECT_PAYLOAD_REGS], Width::W32, Command::Ping).unwrap(),
                Response::Ping {
                    counter: i,
                    payload: &p
                }
            );
        }
        assert_eq!(s.served(), 1000);
    }

    #[test]
    fn req2_checks_uuid_and_uses_all_registers() {
        let mut s = Service::new(1, true, false);
        let p: [u64; 12] = core::array::from_fn(|i| u64::MAX - i as u64);
        let mut regs = [0u64; DIRECT2_PAYLOAD_REGS];
        Request::Ping { payload: &p }
            .encode(&mut regs, Width::W64)
            .unwrap();
        let r = s.handle_direct2(0, &SERVICE_UUID, &regs);
        assert_eq!(
            Response::decode(&r[..14], Width::W64, Command::Ping).unwrap(),
            Response::Ping {
                counter: 1,
                payload: &p
            }
        );
        let r = s.handle_direct2(0, &[0u8; 16], &regs);
        assert_eq!(r[0], Status::UnknownService as u64);
        assert_eq!(s.served(), 1);
        assert_eq!(s.rejected(), 1);
    }

    #[test]
    fn malformed_gets_error_then_good_request_works() {
        let mut s = Service::new(1, false, false);
        for bad in [
            [0x9999u64, 0, 0, 0, 0],
            [1 << 20 | 1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [0, 0, 0, 0, 0],
        ] {
            let r = s.handle_direct(0, &bad, Width::W64);
            assert_ne!(r[0], Status::Ok as u64, "{bad:x?}");
        }
        assert_eq!(
            s.handle_direct(0, &[], Width::W64)[0],
            Status::TooShort as u64
        );
        let r = s.handle_direct(0, &ping(&[5], Width::W64), Width::W64);
        assert_eq!(
            Response::decode(&r[..DIRECT_PAYLOAD_REGS], Width::W64, Command::Ping).unwrap(),
            Response::Ping {
                counter: 1,
                payload: &[5, 0, 0]
            }
        );
    }

    #[test]
    fn fault_is_unsupported_unless_enabled() {
        let mut s = Service::new(1, false, false);
        let r = s.handle_direct(0, &[Command::Fault as u64, 1, 0, 0, 0], Width::W64);
        assert_eq!(
            &r[..2],
            &[Status::Unsupported as u64, Command::Fault as u64]
        );
        assert_eq!(s.served(), 0);
    }

    fn hook(kind: FaultKind) -> ! {
        panic!("injected {kind:?}")
    }

    #[test]
    #[should_panic(expected = "injected Panic")]
    fn fault_calls_the_hook_when_enabled() {
        let mut s = Service::new(1, false, false).with_fault_injection(hook);
        s.handle_direct(0, &[Command::Fault as u64, 1, 0, 0, 0], Width::W64);
    }

    #[test]
    fn memory_commands_are_unsupported_without_a_memory_service() {
        let mut s = Service::new(1, false, false);
        for (req, cmd) in [
            ([0x10u64, 1, 0, 1, 0], Command::MemRetrieve),
            ([0x11, 1, 0, 8, 0], Command::MemChecksum),
            ([0x12, 1, 0, 8, 7], Command::MemFill),
            ([0x13, 1, 0, 0, 0], Command::MemRelease),
            ([0x14, 0, 0, 0, 0], Command::MemStats),
            ([0x15, 1, 0, 0, 0], Command::MemRelinquishHandle),
        ] {
            let r = s.handle_direct(0, &req, Width::W64);
            assert_eq!(
                &r[..2],
                &[Status::Unsupported as u64, cmd as u64],
                "{cmd:?}"
            );
        }
        assert_eq!((s.served(), s.rejected()), (0, 6));
        // A malformed memory request is refused before the service is asked.
        let r = s.handle_direct(0, &[0x10, 1, 0, 9, 0], Width::W64);
        assert_eq!(&r[..2], &[Status::Malformed as u64, 3]);
    }

    #[test]
    fn info_reports_capabilities() {
        let mut s = Service::new(0x1234_5678, false, true);
        let r = s.handle_direct(0, &[Command::Info as u64, 0, 0, 0, 0], Width::W32);
        let Response::Info(i) = Response::decode(&r, Width::W32, Command::Info).unwrap() else {
            panic!("not info: {r:x?}");
        };
        assert_eq!(i.protocol_version, PROTOCOL_VERSION);
        assert_eq!(i.build_id, 0x1234_5678);
        assert_eq!(i.capabilities, caps::PING | caps::INFO | caps::CONSOLE_LOG);
        assert_eq!(i.sp_version, crate::SP_VERSION);
    }

    /// A memory platform whose partition manager refuses every retrieve.
    struct Refusing;

    impl MemPlatform for Refusing {
        fn retrieve(
            &mut self,
            _: &ffa::memory::MemTransaction,
        ) -> Result<ffa::memory::MemTransaction, ffa::RetrieveError> {
            Err(ffa::RetrieveError {
                error: ffa::Error::Ffa(ffa::FfaError::Denied),
                retrieved: false,
            })
        }
        fn relinquish(&mut self, _: ffa::Handle) -> Result<(), ffa::Error> {
            Ok(())
        }
        fn map(
            &mut self,
            _: core::ops::Range<u64>,
            _: crate::shmem::Access,
        ) -> Result<(), crate::shmem::MapFail> {
            Ok(())
        }
        fn unmap(&mut self, _: core::ops::Range<u64>) -> Result<(), crate::shmem::MapFail> {
            Ok(())
        }
        fn mapped_pages(&self) -> u64 {
            0
        }
        fn read(&self, _: u64, out: &mut [u8]) {
            out.fill(0);
        }
        fn write(&mut self, _: u64, _: &[u8]) {}
        unsafe fn view(&self, _: u64, _: usize) -> Option<&'static [u8]> {
            None
        }
    }

    fn hooks() -> Hooks {
        Hooks {
            now: || 0,
            counter_hz: || 1,
            heap_free: || 0,
        }
    }

    fn capabilities(s: &mut Service) -> u64 {
        let r = s.handle_direct(0, &[Command::Info as u64, 0, 0, 0, 0], Width::W64);
        let Response::Info(i) = Response::decode(&r, Width::W64, Command::Info).unwrap() else {
            panic!("not info: {r:x?}");
        };
        i.capabilities
    }

    /// Load and generate need DIRECT_REQ2: without it (a manifest that leaves messaging-method
    /// bit 9 clear) `info` must not claim serving.
    #[test]
    fn serving_is_advertised_only_with_memory_and_req2() {
        let memory =
            || SharedMemory::new(Box::new(Refusing) as Box<dyn MemPlatform>, 0x8001, vec![]);
        for (req2, want) in [(true, caps::SERVING), (false, 0)] {
            let mut s = Service::new(1, req2, false)
                .with_memory(memory())
                .with_serving(hooks());
            let c = capabilities(&mut s);
            assert_eq!(c & caps::SERVING, want, "req2 {req2}");
            assert_ne!(c & caps::MEMORY, 0);
        }
    }

    #[test]
    fn flexmem_commands_answer_no_firewall_without_one() {
        let memory =
            || SharedMemory::new(Box::new(Refusing) as Box<dyn MemPlatform>, 0x8001, vec![]);
        let mut s = Service::new(1, true, false).with_memory(memory());
        assert_eq!(capabilities(&mut s) & caps::FLEXMEM, 0);
        for req in [
            [0x30u64, 1, 1, 0, 0],
            [0x31, 1, 0, 0, 0],
            [0x33, 0x5000_0000, 0, 0, 0],
        ] {
            let r = s.handle_direct(0, &req, Width::W64);
            assert_eq!(
                &r[..2],
                &[Status::FlexMem as u64, FlexFault::NoFirewall as u64],
                "{req:x?}"
            );
        }
        // Stats need DIRECT_REQ2 (12 registers).
        let r = s.handle_direct(0, &[0x32, 0, 0, 0, 0], Width::W64);
        assert_eq!(
            &r[..2],
            &[Status::Unsupported as u64, Command::FlexStats as u64]
        );
        let mut regs = [0u64; DIRECT2_PAYLOAD_REGS];
        regs[0] = 0x32;
        let r = s.handle_direct2(0, &SERVICE_UUID, &regs);
        assert_eq!(
            &r[..2],
            &[Status::FlexMem as u64, FlexFault::NoFirewall as u64]
        );
        // Without a memory service: unsupported.
        let mut s = Service::new(1, true, false);
        let r = s.handle_direct(0, &[0x31, 1, 0, 0, 0], Width::W64);
        assert_eq!(
            &r[..2],
            &[Status::Unsupported as u64, Command::FlexRelease as u64]
        );
    }

    #[test]
    fn serving_commands_are_unsupported_without_serving() {
        let mut s = Service::new(1, true, false);
        for (cmd, req) in [
            (Command::ModelLoad, [0x20u64, 1, 0, 0, 0]),
            (Command::ModelUnload, [0x22, 0, 0, 0, 0]),
        ] {
            let mut regs = [0u64; DIRECT2_PAYLOAD_REGS];
            regs[..5].copy_from_slice(&req);
            let r = s.handle_direct2(0, &SERVICE_UUID, &regs);
            assert_eq!(&r[..2], &[Status::Unsupported as u64, cmd as u64]);
        }
        // Serving needs the memory service: without it the capability stays off.
        let mut s = Service::new(1, true, false).with_serving(hooks());
        let r = s.handle_direct(0, &[Command::Info as u64, 0, 0, 0, 0], Width::W64);
        assert_eq!(r[3] & caps::SERVING, 0);
        let r = s.handle_direct(0, &[0x22, 0, 0, 0, 0], Width::W64);
        assert_eq!(
            &r[..2],
            &[Status::Unsupported as u64, Command::ModelUnload as u64]
        );
        // Generate over DIRECT_REQ: unsupported, whatever the (too few) arguments say.
        let r = s.handle_direct(0, &[0x21, 1, 0, 4, 8], Width::W32);
        assert_eq!(
            &r[..2],
            &[Status::Unsupported as u64, Command::Generate as u64]
        );
    }
}
