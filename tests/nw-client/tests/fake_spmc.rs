//! Runs the client's scenarios on the host against a small fake partition manager that routes
//! direct requests to the real SP message loop (`flexserve_sp::messaging`). This checks the
//! client's logic and the SP's replies together; the QEMU run checks the real world switch.

use ffa::{
    Conduit, Endpoint, FfaError, FuncId, Handle, Interface, MemOpArgs, PartitionInfo,
    PartitionProperties, Regs, RetrieveError, RxTxBuffers, SuccessArgs, Uuid, Version,
    memory::{
        DataAccess, DescKind, EmadSize, FragmentAssembler, InstructionAccess, MemAccessPerm,
        MemError, MemFlags, MemRegionAttributes, MemTransaction, ParseOptions, SendKind,
        TransactionType,
    },
};
use flexserve_proto::SERVICE_UUID;
use flexserve_sp::{
    messaging::{Messaging, Next},
    serve::Hooks,
    service::Service,
    shmem::{Access, MapFail, MemPlatform, SharedMemory},
};
use nw_client::{
    Env, Probe, Spmc,
    cores::{self, CoreJob, CoreRun, CpuOnError},
    scenarios,
};
use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet},
    ops::Range,
    rc::Rc,
};
use testbed_layout::{SealedKind, control, ns_ram::CLIENT_SHARE_BASE};

const SP_ID: u16 = 0x8001;
const PAGE: u64 = 4096;
/// The part of the share window the fake backs with memory.
const WINDOW: u64 = testbed_layout::ns_ram::CLIENT_SHARE_SIZE;

/// One memory transaction the fake partition manager holds.
struct Tx {
    sent: MemTransaction,
    kind: SendKind,
    retrieved: bool,
}

/// Memory-management state shared by the fake partition manager (normal-world calls) and the
/// SP's fake platform (retrieve, relinquish, stage-1), following the testbed's documented rules.
#[derive(Default)]
struct World {
    ns: Vec<u8>,
    nw_tx: Vec<u8>,
    txs: BTreeMap<u64, Tx>,
    next_handle: u64,
    /// Pages in some transaction (or donated away).
    busy: BTreeSet<u64>,
    /// Pages the normal world may not touch: (owner kind, endpoint).
    blocked: BTreeMap<u64, (u64, u16)>,
    blocked_count: u64,
    /// A send waiting for FFA_MEM_FRAG_TX.
    pending: Option<(u64, SendKind, FragmentAssembler)>,
    /// The SP's stage-1 over the window.
    sp_mapped: BTreeMap<u64, Access>,
    /// Lend and donate take the pages from the normal world (false: a broken partition
    /// manager, to show the checks can fail).
    enforce: bool,
    /// Behind TF-A's SPMD (Hafnium, EL3 SPMC): FF-A-range IDs above 0x90 answer SMCCC -1.
    behind_spmd: bool,
}

type Shared = Rc<RefCell<World>>;

fn in_window(pa: u64, len: u64) -> bool {
    pa >= CLIENT_SHARE_BASE && pa + len <= CLIENT_SHARE_BASE + WINDOW
}

impl World {
    fn new() -> Shared {
        Rc::new(RefCell::new(World {
            ns: vec![0; WINDOW as usize],
            nw_tx: vec![0; 4096],
            next_handle: 0,
            enforce: true,
            ..Default::default()
        }))
    }

    fn pages(t: &MemTransaction) -> impl Iterator<Item = u64> + '_ {
        t.ranges
            .iter()
            .flat_map(|r| (0..u64::from(r.page_count)).map(move |i| r.address + i * PAGE))
    }

    /// A complete send descriptor from the normal world.
    fn send(&mut self, kind: SendKind, bytes: &[u8], handle: Option<u64>) -> Regs {
        let opts = ParseOptions {
            expected_sender: Some(0),
            emad_size: Some(EmadSize::V1_2),
        };
        // As Hafnium and the testbed (tests/testbed/src/memshare.rs `complete`): attribute bits
        // [15:8] are ignored, a zero-page constituent is DENIED.
        let mut bytes = bytes.to_vec();
        if let Some(b) = bytes.get_mut(3) {
            *b = 0;
        }
        let t = match MemTransaction::parse(&bytes, DescKind::Send(kind), opts) {
            Ok(t) => t,
            Err(MemError::ZeroLengthRange { .. }) => return error(FfaError::Denied),
            Err(e) => return error(e.to_ffa_error()),
        };
        // Hafnium: the sender's memory type is the one its kind and borrower count call for.
        if t.receivers.iter().any(|e| e.perm.endpoint_id != SP_ID)
            || t.attributes != MemRegionAttributes::for_send(kind, t.receivers.len())
        {
            return error(FfaError::InvalidParameters);
        }
        if Self::pages(&t).any(|p| !in_window(p, PAGE) || self.busy.contains(&p)) {
            return error(FfaError::Denied);
        }
        let pages: Vec<u64> = Self::pages(&t).collect();
        for p in pages {
            self.busy.insert(p);
            if !self.enforce {
                continue;
            }
            match kind {
                SendKind::Lend => self.blocked.insert(p, (control::OWNER_LENT, SP_ID)),
                SendKind::Donate => self.blocked.insert(p, (control::OWNER_DONATED, SP_ID)),
                SendKind::Share => None,
            };
        }
        let h = handle.unwrap_or_else(|| self.new_handle());
        self.txs.insert(
            h,
            Tx {
                sent: t,
                kind,
                retrieved: false,
            },
        );
        success(h as u32, (h >> 32) as u32)
    }

    fn new_handle(&mut self) -> u64 {
        // Hafnium's scheme: share-state indices from 0, allocator bit 63 clear (SPMC).
        let h = Handle::ALLOCATOR_SPMC | self.next_handle;
        self.next_handle += 1;
        h
    }

    fn mem_send(&mut self, kind: SendKind, args: MemOpArgs) -> Regs {
        let (total, frag) = (args.total_len as usize, args.frag_len as usize);
        if frag == 0 || frag > total || frag > self.nw_tx.len() {
            return error(FfaError::InvalidParameters);
        }
        let first = self.nw_tx[..frag].to_vec();
        if frag == total {
            return self.send(kind, &first, None);
        }
        match FragmentAssembler::new(args.total_len, &first, 1 << 20) {
            Ok(a) => {
                let h = self.new_handle();
                self.pending = Some((h, kind, a));
                Interface::MemFragRx {
                    handle: Handle(h),
                    frag_offset: frag as u32,
                    endpoint_id: 0,
                }
                .to_regs()
            }
            Err(e) => error(e.to_ffa_error()),
        }
    }

    fn frag_tx(&mut self, handle: Handle, len: u32) -> Regs {
        let Some((h, kind, mut a)) = self.pending.take() else {
            return error(FfaError::InvalidParameters);
        };
        let part = self.nw_tx.get(..len as usize).map(<[u8]>::to_vec);
        let Some(part) = part.filter(|_| h == handle.0) else {
            return error(FfaError::InvalidParameters);
        };
        match a.push(&part) {
            Ok(true) => match a.finish() {
                Ok(bytes) => self.send(kind, &bytes, Some(h)),
                Err(e) => error(e.to_ffa_error()),
            },
            Ok(false) => {
                let offset = a.received() as u32;
                self.pending = Some((h, kind, a));
                Interface::MemFragRx {
                    handle,
                    frag_offset: offset,
                    endpoint_id: 0,
                }
                .to_regs()
            }
            Err(e) => error(e.to_ffa_error()),
        }
    }

    fn zero(&mut self, t: &MemTransaction) {
        for p in Self::pages(t) {
            let o = (p - CLIENT_SHARE_BASE) as usize;
            self.ns[o..o + PAGE as usize].fill(0);
        }
    }

    fn reclaim(&mut self, h: Handle, zero: bool) -> Regs {
        match self.txs.get(&h.0) {
            None => error(FfaError::InvalidParameters),
            Some(t) if t.retrieved => error(FfaError::Denied),
            Some(t) if zero && t.kind == SendKind::Share => error(FfaError::InvalidParameters),
            Some(_) => {
                let t = self.txs.remove(&h.0).map(|t| t.sent);
                for t in t.iter() {
                    if zero {
                        self.zero(t);
                    }
                    for p in Self::pages(t) {
                        self.busy.remove(&p);
                        self.blocked.remove(&p);
                    }
                }
                success(0, 0)
            }
        }
    }

    /// FFA_MEM_RETRIEVE_REQ by the SP: the response, built and parsed as the SP's `ffa` flow
    /// would.
    fn retrieve(&mut self, req: &MemTransaction) -> Result<MemTransaction, RetrieveError> {
        let resp = self.grant(req).map_err(|error| RetrieveError {
            error,
            retrieved: false,
        })?;
        let bytes = resp.to_vec(DescKind::RetrieveResp);
        let opts = ParseOptions {
            expected_sender: Some(req.sender_id),
            emad_size: None,
        };
        bytes
            .and_then(|b| MemTransaction::parse(&b, DescKind::RetrieveResp, opts))
            .map_err(|e| RetrieveError {
                error: e.into(),
                retrieved: true,
            })
    }

    /// The retrieve checks Hafnium v2.15 makes, then the response it builds.
    fn grant(&mut self, req: &MemTransaction) -> Result<MemTransaction, ffa::Error> {
        let bytes = req.to_vec(DescKind::RetrieveReq)?;
        let req = MemTransaction::parse(&bytes, DescKind::RetrieveReq, ParseOptions::default())?;
        let inv = ffa::Error::Ffa(FfaError::InvalidParameters);
        let tx = self.txs.get(&req.handle.0).ok_or(inv)?;
        let (sent, retrieved) = (tx.sent.clone(), tx.retrieved);
        let kind = match tx.kind {
            SendKind::Share => TransactionType::Share,
            SendKind::Lend => TransactionType::Lend,
            SendKind::Donate => TransactionType::Donate,
        };
        let want = req.flags.transaction_type();
        let sent_emad = sent.receivers.iter().find(|e| e.perm.endpoint_id == SP_ID);
        if (want != TransactionType::Unspecified && want != kind)
            || req.sender_id != sent.sender_id
            || req.receivers.len() != 1
            || req.receivers[0].perm.endpoint_id != SP_ID
            || sent_emad.is_none()
            || !InstructionAccess::for_retrieve(kind)
                .contains(&req.receivers[0].perm.instruction_access)
        {
            return Err(inv);
        }
        if retrieved {
            return Err(ffa::Error::Ffa(FfaError::Denied));
        }
        if let Some(t) = self.txs.get_mut(&req.handle.0) {
            t.retrieved = true;
        }
        if kind != TransactionType::Share && sent.flags.contains(MemFlags::ZERO_MEMORY) {
            self.zero(&sent);
        }
        let data_access = match sent_emad.map(|e| e.perm.data_access) {
            Some(DataAccess::ReadOnly) => DataAccess::ReadOnly,
            _ => DataAccess::ReadWrite,
        };
        let granted = MemAccessPerm {
            endpoint_id: SP_ID,
            data_access,
            instruction_access: InstructionAccess::NotExecutable,
            non_retrieval_borrower: false,
        };
        let resp = MemTransaction::retrieve_response(
            &sent,
            req.handle,
            kind,
            granted,
            true,
            EmadSize::V1_2,
        );
        if kind == TransactionType::Donate {
            // Donation completes on retrieval: the handle is gone, the pages are the SP's.
            self.txs.remove(&req.handle.0);
        }
        Ok(resp)
    }

    fn relinquish(&mut self, h: Handle) -> Result<(), ffa::Error> {
        match self.txs.get_mut(&h.0) {
            Some(t) if t.retrieved => {
                t.retrieved = false;
                Ok(())
            }
            _ => Err(ffa::Error::Ffa(FfaError::InvalidParameters)),
        }
    }
}

/// The SP's machine side in the host test: FF-A memory calls go to [`World`], the stage-1 is a
/// page set that every access is checked against.
struct SpPlatform(Shared);

impl MemPlatform for SpPlatform {
    fn retrieve(&mut self, req: &MemTransaction) -> Result<MemTransaction, RetrieveError> {
        self.0.borrow_mut().retrieve(req)
    }

    fn relinquish(&mut self, handle: Handle) -> Result<(), ffa::Error> {
        self.0.borrow_mut().relinquish(handle)
    }

    fn map(&mut self, range: Range<u64>, access: Access) -> Result<(), MapFail> {
        let mut w = self.0.borrow_mut();
        for p in (range.start..range.end).step_by(PAGE as usize) {
            assert!(
                w.sp_mapped.insert(p, access).is_none(),
                "{p:#x} mapped twice"
            );
        }
        Ok(())
    }

    fn unmap(&mut self, range: Range<u64>) -> Result<(), MapFail> {
        let mut w = self.0.borrow_mut();
        for p in (range.start..range.end).step_by(PAGE as usize) {
            assert!(w.sp_mapped.remove(&p).is_some(), "{p:#x} was not mapped");
        }
        Ok(())
    }

    fn mapped_pages(&self) -> u64 {
        self.0.borrow().sp_mapped.len() as u64
    }

    fn read(&self, pa: u64, out: &mut [u8]) {
        let w = self.0.borrow();
        let first = pa & !(PAGE - 1);
        for p in (first..pa + out.len() as u64).step_by(PAGE as usize) {
            assert!(w.sp_mapped.contains_key(&p), "SP read of unmapped {p:#x}");
        }
        let o = (pa - CLIENT_SHARE_BASE) as usize;
        out.copy_from_slice(&w.ns[o..o + out.len()]);
    }

    fn write(&mut self, pa: u64, data: &[u8]) {
        let mut w = self.0.borrow_mut();
        let first = pa & !(PAGE - 1);
        for p in (first..pa + data.len() as u64).step_by(PAGE as usize) {
            assert!(
                w.sp_mapped.get(&p).is_some_and(|a| a.writable && a.ns),
                "SP write to {p:#x}"
            );
        }
        let o = (pa - CLIENT_SHARE_BASE) as usize;
        w.ns[o..o + data.len()].copy_from_slice(data);
    }

    unsafe fn view(&self, pa: u64, len: usize) -> Option<&'static [u8]> {
        let w = self.0.borrow();
        let first = pa & !(PAGE - 1);
        for p in (first..pa + len as u64).step_by(PAGE as usize) {
            assert!(w.sp_mapped.contains_key(&p), "SP view of unmapped {p:#x}");
        }
        let o = (pa - CLIENT_SHARE_BASE) as usize;
        // A leaked snapshot (lent pages cannot change while the SP holds them), 8-byte aligned
        // like the page it stands for.
        Some(aligned_copy(&w.ns[o..o + len]))
    }
}

struct FakeSpmc {
    sp: Messaging,
    /// The SP panicked; every later request gets ABORTED (as Hafnium and the testbed do).
    aborted: bool,
    rx: Rc<RefCell<[u8; 4096]>>,
    /// DIRECT_REQ2 receipt declared (the manifest's messaging-method bit 9).
    req2: bool,
    world: Shared,
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
        if self.world.borrow().behind_spmd
            && (regs[0] as u32 & 0xbfff_0000) == 0x8400_0000
            && (regs[0] & 0xffff) > 0x90
        {
            let mut r = [0u64; 18];
            r[0] = u64::from(u32::MAX);
            return r;
        }
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
            Interface::MemShare(a) => self.world.borrow_mut().mem_send(SendKind::Share, a),
            Interface::MemLend(a) => self.world.borrow_mut().mem_send(SendKind::Lend, a),
            Interface::MemDonate(a) => self.world.borrow_mut().mem_send(SendKind::Donate, a),
            Interface::MemFragTx {
                handle, frag_len, ..
            } => self.world.borrow_mut().frag_tx(handle, frag_len),
            Interface::MemReclaim { handle, flags } => {
                self.world.borrow_mut().reclaim(handle, flags.zero_memory)
            }
            _ => error(FfaError::NotSupported),
        }
    }
}

struct HostBufs {
    world: Shared,
    rx: Rc<RefCell<[u8; 4096]>>,
}

impl RxTxBuffers for HostBufs {
    fn size(&self) -> usize {
        4096
    }

    fn write_tx(&mut self, data: &[u8]) {
        self.world.borrow_mut().nw_tx[..data.len()].copy_from_slice(data);
    }

    fn read_rx(&mut self, out: &mut [u8]) {
        out.copy_from_slice(&self.rx.borrow()[..out.len()]);
    }
}

/// `bytes` copied into 8-byte aligned, leaked storage (a test process ends soon).
fn aligned_copy(bytes: &[u8]) -> &'static [u8] {
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    for (w, c) in words.iter_mut().zip(bytes.chunks(8)) {
        let mut b = [0u8; 8];
        b[..c.len()].copy_from_slice(c);
        *w = u64::from_ne_bytes(b);
    }
    let words: &'static mut [u64] = Box::leak(words.into_boxed_slice());
    // SAFETY: `words` holds `bytes.len().div_ceil(8)` initialised u64s, so its first
    // `bytes.len()` bytes are initialised and in bounds; u8 has no alignment or validity
    // requirements; the storage is leaked, so it lives for the rest of the test process.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), bytes.len()) }
}

struct HostEnv {
    ep: Endpoint<FakeSpmc>,
    rx: Rc<RefCell<[u8; 4096]>>,
    bufs: HostBufs,
    world: Shared,
    /// The model file in the window: (address, bytes).
    model: Option<(u64, u64)>,
    spmc: Spmc,
    /// The sealed packages in the window, by `SealedKind`.
    sealed: Vec<(SealedKind, u64, u64)>,
    /// `on_second_core` runs the job (on this thread, through the same fake) instead of
    /// failing as CPU_ON does on a one-CPU machine.
    second_core: bool,
}

impl Env for HostEnv {
    type C = FakeSpmc;
    type B = HostBufs;

    fn ep(&mut self) -> &mut Endpoint<FakeSpmc> {
        &mut self.ep
    }

    fn ep_bufs(&mut self) -> (&mut Endpoint<FakeSpmc>, &mut HostBufs) {
        (&mut self.ep, &mut self.bufs)
    }

    fn share_window(&self) -> (u64, u64) {
        (CLIENT_SHARE_BASE, WINDOW)
    }

    fn mem_write(&mut self, pa: u64, data: &[u8]) {
        assert!(in_window(pa, data.len() as u64), "client write {pa:#x}");
        let o = (pa - CLIENT_SHARE_BASE) as usize;
        self.world.borrow_mut().ns[o..o + data.len()].copy_from_slice(data);
    }

    fn mem_read(&mut self, pa: u64, out: &mut [u8]) {
        assert!(in_window(pa, out.len() as u64), "client read {pa:#x}");
        let o = (pa - CLIENT_SHARE_BASE) as usize;
        out.copy_from_slice(&self.world.borrow().ns[o..o + out.len()]);
    }

    fn probe_read(&mut self, pa: u64) -> Probe {
        let mut w = self.world.borrow_mut();
        if let Some(&(owner, to)) = w.blocked.get(&(pa & !(PAGE - 1))) {
            w.blocked_count += 1;
            return Probe {
                value: control::POISON,
                blocked: Some(true),
                detail: control::KIND_READ | owner << 8 | u64::from(to) << 16,
            };
        }
        let o = (pa - CLIENT_SHARE_BASE) as usize;
        let mut b = [0u8; 8];
        b.copy_from_slice(&w.ns[o..o + 8]);
        Probe {
            value: u64::from_le_bytes(b),
            blocked: Some(false),
            detail: 0,
        }
    }

    fn probe_write(&mut self, pa: u64, value: u64) -> Probe {
        let mut w = self.world.borrow_mut();
        if let Some(&(owner, to)) = w.blocked.get(&(pa & !(PAGE - 1))) {
            w.blocked_count += 1;
            return Probe {
                value: 0,
                blocked: Some(true),
                detail: control::KIND_WRITE | owner << 8 | u64::from(to) << 16,
            };
        }
        let o = (pa - CLIENT_SHARE_BASE) as usize;
        w.ns[o..o + 8].copy_from_slice(&value.to_le_bytes());
        Probe {
            value: 0,
            blocked: Some(false),
            detail: 0,
        }
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

    fn model(&self) -> Option<(u64, u64)> {
        self.model
    }

    fn sealed_package(&self, kind: SealedKind) -> Option<(u64, u64)> {
        self.sealed
            .iter()
            .find(|s| s.0 == kind)
            .map(|&(_, base, len)| (base, len))
    }

    fn spmc(&self) -> Spmc {
        self.spmc
    }

    fn on_second_core(&mut self, job: &CoreJob) -> Result<CoreRun, CpuOnError> {
        if !self.second_core {
            return Err(CpuOnError::Psci(-1));
        }
        Ok(CoreRun {
            report: Some(cores::run_job(&mut self.ep, job)),
            off: Ok(()),
        })
    }

    fn with_model_bytes<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let (base, size) = self.model?;
        let o = (base - CLIENT_SHARE_BASE) as usize;
        let bytes = aligned_copy(&self.world.borrow().ns[o..o + size as usize]);
        Some(f(bytes))
    }
}

fn fault(kind: flexserve_proto::FaultKind) -> ! {
    panic!("injected {kind:?}")
}

fn env_in(world: Shared, service: Service, req2: bool) -> HostEnv {
    let rx = Rc::new(RefCell::new([0u8; 4096]));
    HostEnv {
        ep: Endpoint::new(FakeSpmc {
            sp: Messaging::new(service, SP_ID),
            aborted: false,
            rx: rx.clone(),
            req2,
            world: world.clone(),
        }),
        rx: rx.clone(),
        bufs: HostBufs {
            world: world.clone(),
            rx,
        },
        world,
        model: None,
        sealed: Vec::new(),
        spmc: Spmc::Testbed,
        second_core: false,
    }
}

fn env_with(service: Service, req2: bool) -> HostEnv {
    env_in(World::new(), service, req2)
}

/// An SP with the memory service on the fake platform (its own memory outside the window).
fn memory_env() -> HostEnv {
    let world = World::new();
    let own: Range<u64> = 0x0e30_0000..0x0ec0_0000;
    let shm = SharedMemory::new(
        Box::new(SpPlatform(world.clone())) as Box<dyn MemPlatform>,
        SP_ID,
        Vec::from([own]),
    );
    let service = Service::new(0x1234, true, true).with_memory(shm);
    env_in(world, service, true)
}

/// Where the host test puts the model: window page 1000 (the client's scenarios use pages
/// below 700 for their own buffers).
const MODEL_PAGE: u64 = 1000;

fn counter() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static T: AtomicU64 = AtomicU64::new(0);
    T.fetch_add(1000, Ordering::Relaxed)
}

fn serving_env(serving: bool, enforce: bool) -> HostEnv {
    serving_env_with(serving, enforce, false)
}

/// `device`: the SP gets the testbed's device keys (sealed models).
fn serving_env_with(serving: bool, enforce: bool, device: bool) -> HostEnv {
    let model = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../llm-runtime/models/fortunes-q8_0.gguf"
    ))
    .unwrap();
    let world = World::new();
    world.borrow_mut().enforce = enforce;
    let at = (MODEL_PAGE * PAGE) as usize;
    world.borrow_mut().ns[at..at + model.len()].copy_from_slice(&model);
    let own: Range<u64> = 0x0e30_0000..0x0ec0_0000;
    let shm = SharedMemory::new(
        Box::new(SpPlatform(world.clone())) as Box<dyn MemPlatform>,
        SP_ID,
        Vec::from([own]),
    );
    let mut service = Service::new(0x1234, true, true).with_memory(shm);
    if serving {
        service = service.with_serving(Hooks {
            now: counter,
            counter_hz: || 1_000_000_000,
            // The SP's 8 MiB heap, nothing allocated yet.
            heap_free: || 8 << 20,
        });
        if device {
            let mut root = testbed_layout::TEST_DEVICE_ROOT;
            service = service.with_device(flexserve_sp::sealed::Device::from_root(&mut root));
        }
    }
    let mut env = env_in(world, service, true);
    env.model = Some((CLIENT_SHARE_BASE + MODEL_PAGE * PAGE, model.len() as u64));
    env
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
    assert!(out.ends_with(&format!("{passed} passed, 1 failed, 0 skipped\n")));
    assert!(out.contains("PASS ping.round_trips_1000\n"));
    // One CPU on the testbed: the cross-core checks are not attempted, not even skipped.
    assert!(!out.contains("cores.") && !out.contains("SKIP"), "{out}");
}

fn run_under(name: &str, e: &mut HostEnv, spmc: Spmc) -> (String, u32, u32) {
    e.spmc = spmc;
    e.world.borrow_mut().behind_spmd = spmc != Spmc::Testbed;
    let mut out = String::new();
    let (p, f) = scenarios::run(name, e, &mut out);
    print!("{out}");
    (out, p, f)
}

fn skipped(out: &str) -> Vec<&str> {
    out.lines()
        .filter_map(|l| l.strip_prefix("SKIP "))
        .map(|l| l.split(':').next().unwrap_or(l))
        .collect()
}

#[test]
fn messaging_under_a_real_spmc_asks_from_a_second_core() {
    let mut e = env(true);
    e.second_core = true;
    let (out, _, failed) = run_under("messaging", &mut e, Spmc::Hafnium);
    // The SIMD probe cannot run on the host; everything else passes, nothing is skipped.
    assert_eq!(failed, 1, "{out}");
    assert!(skipped(&out).is_empty(), "{out}");
    for name in [
        "cores.cpu_on",
        "cores.second_core_reported",
        "cores.second_core_info",
        "cores.second_core_ping_req32",
        "cores.second_core_ping_req64",
        "cores.second_core_ping_req2",
        "cores.second_core_off",
        "cores.sp_state_shared_across_cores",
    ] {
        assert!(out.contains(&format!("PASS {name}\n")), "{name}: {out}");
    }
    // Without a second core to start, the run fails instead of passing quietly.
    let (out, _, failed) = run_under("messaging", &mut env(true), Spmc::El3);
    assert!(
        out.contains("FAIL cores.cpu_on: core 1 did not start"),
        "{out}"
    );
    assert_eq!(failed, 2, "{out}");
}

#[test]
fn cross_core_checks_fail_on_wrong_answers() {
    // An SP whose manifest lacks REQ2: core 1's REQ2 pings fail with the reason.
    let mut e = env(false);
    e.second_core = true;
    let (out, _, _) = run_under("messaging", &mut e, Spmc::Hafnium);
    assert!(
        out.contains("FAIL cores.second_core_ping_req2: SP 0x8001 does not declare DIRECT_REQ2"),
        "{out}"
    );
    // A job aimed at a partition that is not there fails every request check.
    let job = CoreJob {
        own_id: 0,
        sp: 0x8005,
        req2: true,
        rounds: 2,
    };
    let report = cores::run_job(&mut env(true).ep, &job);
    assert!(report.info.is_err() && report.req32.is_err());
    assert!(report.req64.is_err() && report.req2.is_err());
    assert_eq!(report.last_counter, None);
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

    // Elsewhere the fault is not injected: the SP stays up for the next run.
    let service = Service::new(0x1234, true, true).with_fault_injection(fault);
    let (out, _, failed) = run_under("sp-panic", &mut env_with(service, true), Spmc::Hafnium);
    assert_eq!(failed, 0, "{out}");
    assert_eq!(
        skipped(&out),
        ["fault.request_reports_aborted", "fault.sp_stays_down"]
    );
    assert!(out.ends_with(" passed, 0 failed, 2 skipped\n"), "{out}");
}

#[test]
fn memory_scenario_passes_on_the_host() {
    let mut e = memory_env();
    let mut out = String::new();
    let (passed, failed) = scenarios::run("memory", &mut e, &mut out);
    print!("{out}");
    assert_eq!(failed, 0, "{out}");
    assert!(passed >= 30, "{passed} passed");
    for name in [
        "share.sp_checksum_matches",
        "lend.nw_read_blocked_and_reported",
        "lend.nw_reads_again",
        "donate.never_returns",
        "frag.retrieve_fragmented_response",
        "cycles.no_leaked_mapping",
    ] {
        assert!(out.contains(&format!("PASS {name}\n")), "{name}");
    }
    let malformed = out.lines().filter(|l| l.starts_with("PASS mal.")).count();
    assert!(malformed >= 20, "{malformed} malformed cases");
    // Nothing held or mapped at the end; only the donated page stays away from the NW.
    let w = e.world.borrow();
    assert!(w.sp_mapped.is_empty());
    assert!(w.txs.is_empty(), "{} transactions left", w.txs.len());
    assert_eq!(w.blocked.len(), 1);
}

#[test]
fn memory_scenario_fails_without_a_memory_service() {
    let (out, _, failed) = run("memory", true);
    assert!(
        out.contains("FAIL mem.capability: SP serves no memory commands"),
        "{out}"
    );
    assert_eq!(failed, 1, "{out}");
}

#[test]
fn memory_scenario_catches_a_partition_manager_that_does_not_enforce() {
    // Lent and donated pages left accessible to the lender must fail the blocked-access checks.
    let mut e = memory_env();
    e.world.borrow_mut().enforce = false;
    let mut out = String::new();
    let (_, failed) = scenarios::run("memory", &mut e, &mut out);
    for name in [
        "lend.nw_read_blocked_and_reported",
        "lend.blocked_until_reclaimed",
        "donate.nw_read_blocked",
        "donate.never_returns",
    ] {
        assert!(
            out.contains(&format!("FAIL {name}: read of")),
            "{name}: {out}"
        );
    }
    // The lender's store went through, and the borrower saw it.
    assert!(out.contains("FAIL lend.nw_write_blocked_and_reported: write to"));
    assert!(out.contains("FAIL lend.sp_sees_the_data_not_the_blocked_write"));
    assert_eq!(failed, 6, "{out}");
}

#[test]
fn memory_scenario_under_a_real_spmc_skips_exactly_the_testbed_checks() {
    // No NS stage-2 under TF-A: lent pages stay accessible, as in this fake without
    // enforcement; the checks that rely on it are skipped, all others still pass. The fake
    // answers as Hafnium does (the EL3 SPMC's answers differ: see the next test).
    {
        let spmc = Spmc::Hafnium;
        let mut e = memory_env();
        e.world.borrow_mut().enforce = false;
        let (out, passed, failed) = run_under("memory", &mut e, spmc);
        assert_eq!(failed, 0, "{out}");
        assert!(passed >= 30, "{passed} passed");
        assert_eq!(
            skipped(&out),
            [
                "lend.nw_read_blocked_and_reported",
                "lend.nw_write_blocked_and_reported",
                "lend.blocked_until_reclaimed",
                "donate.nw_read_blocked",
                "donate.never_returns",
                "mal.memory_not_owned",
            ]
        );
        assert!(out.contains("PASS lend.sp_sees_the_data_not_the_blocked_write\n"));
        assert!(out.contains("PASS lend.nw_reads_again\n"));
        assert!(out.ends_with(&format!("{passed} passed, 0 failed, 6 skipped\n")));
    }
}

#[test]
fn memory_scenario_expects_the_el3_spmcs_own_answers() {
    // Run as if under TF-A's EL3 SPMC against this Hafnium-like fake: exactly the checks where
    // the EL3 SPMC answers otherwise (nw_client's memory_rules) fail, so they are not vacuous.
    let mut e = memory_env();
    e.world.borrow_mut().enforce = false;
    let (out, _, _) = run_under("memory", &mut e, Spmc::El3);
    let failed: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("FAIL "))
        .map(|l| l.split(':').next().unwrap_or(l))
        .collect();
    assert_eq!(
        failed,
        [
            "lend.zero_flag_on_send",
            "lend.reclaim_zero_flag",
            "mal.misaligned_range_address",
            "mal.reserved_header_nonzero",
            "mal.zero_page_range",
            "mal.zero_ranges",
            "mal.overlapping_ranges",
            "mal.lend_already_lent",
            "mal.retrieve_lent_twice",
        ],
        "{out}"
    );
}

#[test]
fn serve_scenario_passes_on_the_host() {
    let mut out = String::new();
    let (passed, failed) = scenarios::run("serve", &mut serving_env(true, true), &mut out);
    print!("{out}");
    assert_eq!(failed, 0);
    assert!(passed >= 40, "{passed} checks");
    for check in [
        "PASS serve.load_shared_model_refused",
        "PASS serve.prompt_not_utf8",
        "PASS serve.greedy_matches_client",
        "PASS serve.sampled_matches_client",
        "PASS serve.nothing_held_at_the_end",
    ] {
        assert!(out.contains(check), "{check}");
    }
}

#[test]
fn demo_serves_the_model_when_there_is_one() {
    let mut out = String::new();
    let (passed, failed) = scenarios::run("demo", &mut serving_env(true, true), &mut out);
    print!("{out}");
    assert_eq!(failed, 0);
    assert!(out.contains("PASS demo.generate3_matches_client"));
    assert!(out.contains("A computer -> A computer"));
    assert!(passed >= 18);
}

#[test]
fn serve_scenario_fails_without_serving_or_enforcement() {
    let mut out = String::new();
    let (_, failed) = scenarios::run("serve", &mut serving_env(false, true), &mut out);
    assert!(
        failed >= 1 && out.contains("FAIL serve.capability"),
        "{out}"
    );
    // A partition manager that leaves lent pages readable is caught.
    let mut out = String::new();
    let (_, failed) = scenarios::run("serve", &mut serving_env(true, false), &mut out);
    assert!(failed >= 1, "{out}");
    assert!(
        out.contains("FAIL serve.lent_model_unreadable_by_client"),
        "{out}"
    );
}

/// Generate needs DIRECT_REQ2's registers: `info` advertises serving only where the SPMC
/// delivers REQ2 (issue 7 item 8: the RK3588 manifest once disabled it while `info` said yes).
#[test]
fn serving_is_advertised_only_with_req2() {
    use flexserve_proto::{Command, Width, caps};
    for req2 in [false, true] {
        let world = World::new();
        let own: Range<u64> = 0x0e30_0000..0x0ec0_0000;
        let shm = SharedMemory::new(
            Box::new(SpPlatform(world.clone())) as Box<dyn MemPlatform>,
            SP_ID,
            Vec::from([own]),
        );
        let mut s = Service::new(1, req2, true)
            .with_memory(shm)
            .with_serving(Hooks {
                now: counter,
                counter_hz: || 1,
                heap_free: || 8 << 20,
            });
        let r = s.handle_direct(0, &[Command::Info as u64, 0, 0, 0, 0], Width::W64);
        assert_eq!(r[3] & caps::SERVING != 0, req2, "req2 {req2}");
    }
}

#[test]
fn serve_and_demo_under_a_real_spmc_skip_only_the_blocked_read() {
    let (out, passed, failed) = run_under("serve", &mut serving_env(true, false), Spmc::Hafnium);
    assert_eq!(failed, 0, "{out}");
    assert!(passed >= 40, "{passed} checks");
    assert_eq!(skipped(&out), ["serve.lent_model_unreadable_by_client"]);
    assert!(out.contains("PASS serve.client_reads_model_again\n"));
    let (out, _, failed) = run_under("demo", &mut serving_env(true, false), Spmc::El3);
    assert_eq!(failed, 0, "{out}");
    assert_eq!(skipped(&out), ["demo.lent_model_unreadable_by_client"]);
}

#[test]
fn flexmem_scenario_without_a_firewall() {
    // Under TF-A on QEMU (no TZC-400): the defined error, and the firewall checks skip.
    for spmc in [Spmc::Hafnium, Spmc::El3] {
        let mut e = memory_env();
        let (out, passed, failed) = run_under("flexmem", &mut e, spmc);
        assert_eq!(failed, 0, "{out}");
        assert!(
            out.contains("PASS flexmem.no_firewall_is_a_defined_error\n"),
            "{out}"
        );
        assert_eq!(skipped(&out).len(), 7, "{out}");
        assert!(out.ends_with(&format!("{passed} passed, 0 failed, 7 skipped\n")));
    }
    // On the testbed an SP without a firewall is a failure, not a skip.
    let mut e = memory_env();
    let (out, _, failed) = run_under("flexmem", &mut e, Spmc::Testbed);
    assert_eq!(failed, 7, "{out}");
}

/// The serving env with the device keys of the testbed and, in the sealed window, the model
/// sealed as every `SealedKind` (as `xtask`'s `sealing::bundle` does).
fn sealed_env(kinds: &[SealedKind]) -> HostEnv {
    use flexserve_sealed::{DeviceKeys, SealParams};
    let mut env = serving_env_with(true, true, true);
    let model = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../llm-runtime/models/fortunes-q8_0.gguf"
    ))
    .unwrap();
    let testbed = DeviceKeys::from_root(&testbed_layout::TEST_DEVICE_ROOT).public();
    let other = DeviceKeys::from_root(&[9; 32]).public();
    let mut at = testbed_layout::ns_ram::SEALED_BASE;
    for &k in kinds {
        let (id, version, to) = match k {
            SealedKind::Main => ([1; 32], 2, testbed.kem),
            SealedKind::OlderVersion => ([1; 32], 1, testbed.kem),
            SealedKind::OtherModel => ([2; 32], 2, testbed.kem),
            SealedKind::OtherDevice => ([1; 32], 2, other.kem),
        };
        let pkg = flexserve_sealed::seal(
            &model,
            &SealParams {
                model_id: id,
                package_version: version,
                max_chunk_len: 1 << 20,
                recipients: &[to],
                owner: None,
            },
            &mut rand_core::OsRng,
        )
        .unwrap();
        let o = (at - CLIENT_SHARE_BASE) as usize;
        env.world.borrow_mut().ns[o..o + pkg.len()].copy_from_slice(&pkg);
        env.sealed.push((k, at, pkg.len() as u64));
        at += (pkg.len() as u64).next_multiple_of(PAGE);
    }
    env
}

#[test]
fn sealed_scenario_passes_on_the_host() {
    let mut out = String::new();
    let (passed, failed) = scenarios::run("sealed", &mut sealed_env(&SealedKind::ALL), &mut out);
    print!("{out}");
    // The host SP is the test build, which also loads plaintext models; that one check is
    // the release build's (the QEMU scenario).
    let fails: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(
        fails,
        ["FAIL sealed.plaintext_model_load_refused: this SP build loads plaintext models"]
    );
    assert_eq!(failed, 1);
    assert!(passed >= 20, "{passed} checks");
}

#[test]
fn demo_serves_a_sealed_model() {
    let mut env = sealed_env(&[SealedKind::Main]);
    env.model = None;
    let mut out = String::new();
    let (passed, failed) = scenarios::run("demo", &mut env, &mut out);
    print!("{out}");
    assert_eq!(failed, 0);
    assert!(out.contains("PASS demo.sealed.attestation_verifies"));
    assert!(out.contains("PASS demo.sealed.unload_scrubs"));
    assert!(passed >= 10);
}

#[test]
fn sealed_packages_without_device_keys_are_refused() {
    let mut env = sealed_env(&[SealedKind::Main]);
    let mut fresh = serving_env(true, true);
    fresh.sealed = core::mem::take(&mut env.sealed);
    // The packages are in `env`'s world; copy them into the keyless SP's.
    let src = env.world.borrow().ns.clone();
    fresh.world.borrow_mut().ns.copy_from_slice(&src);
    let mut out = String::new();
    let (_, failed) = scenarios::run("sealed", &mut fresh, &mut out);
    assert!(
        failed >= 1 && out.contains("FAIL sealed.capability"),
        "{out}"
    );
}
