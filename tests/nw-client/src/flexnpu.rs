//! Scenario `flexnpu`: the testbed's NPU switches between the worlds (DESIGN.md sec. 7). The
//! client drives the NPU itself while it is the normal world's (`npu_driver::testbed` over
//! [`Env::npu_read32`] / [`Env::npu_write32`]), then hands it to the SP and checks that it can
//! neither program it nor reach Flex-Mem through it, that the SP's secure job is right and runs
//! beside the SP's CPU work, that the NPU comes back scrubbed, and that switching leaks nothing.
//! Lend enforcement is off (as on FVP/RK3588 without an NS hypervisor): the firewall alone
//! keeps the NPU's non-secure DMA out of secured pages.
//!
//! Flex-Mem window pages: 0..64 the region of the SP's secure jobs. Share-window pages
//! (`Env::share_window`) 0..512 the client's own NPU buffers.
#![allow(
    clippy::result_large_err,
    reason = "a failure carries its reason inline; checks are not hot"
)]

use crate::flexmem::Reply;
use crate::{
    Env, fail,
    report::{CheckResult, Fail, Report},
    scenarios::{Ctx, discovery, setup},
};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Write;
use flexserve_proto::{NpuFault, NpuGemmArgs, NpuGemmResult, NpuSwitch, Request, Status, caps};
use llm_runtime::kernels::{BlockQ8_0, Kernels, blocks_as_bytes};
use npu_driver::testbed::{NpuBus, TestbedNpu, fault_code};
use npu_driver::{FaultKind, GemmJob, Job, Mode, Npu, NpuError};
use testbed_layout::control;

const PAGE: u64 = 4096;
/// The SP's secure-job region (Flex-Mem window pages).
const REGION: (u64, u32) = (0, 64);
const OWNER: u32 = 7;
/// The SP's secure job: 8 tokens x 256 outputs x 512 inputs.
const SECURE: (u32, u32, u32) = (8, 256, 512);
/// The client's own job, on the same shape.
const NS_SHAPE: (u32, u32, u32) = SECURE;
/// A job long enough to still run when the client asks for the switch.
const LONG: (u32, u32, u32) = (64, 2048, 2048);
pub const SWITCHES: u32 = 50;

fn f(args: core::fmt::Arguments<'_>) -> Fail {
    Fail::new(args)
}

/// The NPU's registers through the client's environment.
struct EnvBus<'a, E: Env>(&'a mut E);

impl<E: Env> NpuBus for EnvBus<'_, E> {
    fn read32(&mut self, offset: usize) -> u32 {
        self.0.npu_read32(offset).unwrap_or(0)
    }
    fn write32(&mut self, offset: usize, value: u32) {
        self.0.npu_write32(offset, value);
    }
}

/// Deterministic Q8_0 rows (random int8, normal fp16 scales).
fn q8(seed: u64, blocks: usize) -> Vec<BlockQ8_0> {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    (0..blocks)
        .map(|_| {
            let d = (6 + (next() % 6) as u16) << 10 | (next() & 0x3ff) as u16;
            let mut qs = [0i8; 32];
            qs.iter_mut().for_each(|q| *q = next() as i8);
            BlockQ8_0 { d, qs }
        })
        .collect()
}

/// Where the client's NPU job buffers go: W, X, Y in share-window pages from `page`.
struct NsJob {
    job: GemmJob,
    want: Vec<f32>,
}

impl<E: Env> Ctx<'_, E> {
    fn spage(&self, n: u64) -> u64 {
        self.env.share_window().0 + n * PAGE
    }

    /// Writes W and X of an (m, n, k) job from share-window page `page` on, with Y `y` (or
    /// right after them); the CPU kernel's product.
    fn ns_job(&mut self, (m, n, k): (u32, u32, u32), page: u64, y: Option<u64>) -> NsJob {
        let kb = k as usize / 32;
        let w = q8(0x5eed_0001 ^ u64::from(n), n as usize * kb);
        let x = q8(0x5eed_0002 ^ u64::from(m), m as usize * kb);
        let (wb, xb) = (blocks_as_bytes(&w), blocks_as_bytes(&x));
        let w_at = self.spage(page);
        let x_at = w_at + wb.len() as u64;
        let y_at = y.unwrap_or_else(|| (x_at + xb.len() as u64).next_multiple_of(PAGE));
        self.env.mem_write(w_at, wb);
        self.env.mem_write(x_at, xb);
        let mut want = vec![0f32; (m * n) as usize];
        let _ = Kernels::scalar().matmul(&w, &x, m as usize, &mut want);
        NsJob {
            job: GemmJob::dense(Mode::Q8_0, m, n, k, w_at, x_at, y_at),
            want,
        }
    }

    fn npu_call(&mut self, req: Request<'_>) -> Result<Reply, Fail> {
        self.flex_call(req)
    }

    fn switch(&mut self, req: Request<'_>) -> Result<NpuSwitch, Fail> {
        match self.npu_call(req)? {
            Reply::NpuSwitched(s) => Ok(s),
            other => fail!("{req:?}: {other:x?}"),
        }
    }

    fn gemm(&mut self, a: NpuGemmArgs) -> Result<NpuGemmResult, Fail> {
        match self.npu_call(Request::NpuGemm(a))? {
            Reply::NpuGemm(g) => Ok(g),
            other => fail!("NpuGemm {a:?}: {other:x?}"),
        }
    }

    fn now(&self) -> (u64, u64) {
        self.env.counter().unwrap_or((0, 1))
    }
}

/// Whether the normal world sees the NPU's interrupt enabled (GICD_ISENABLER: bits of secure
/// interrupts read 0 to it).
fn nw_sees_npu_irq<E: Env>(c: &mut Ctx<'_, E>) -> Option<bool> {
    let id = testbed_layout::npu::INTID as usize;
    c.env
        .gicd_read32(0x100 + 4 * (id / 32))
        .map(|v| v & (1 << (id % 32)) != 0)
}

fn us(ticks: u64, hz: u64) -> u64 {
    (u128::from(ticks) * 1_000_000 / u128::from(hz.max(1))) as u64
}

/// Runs `job` on the NPU as the normal world and compares Y with the CPU's product.
fn run_ns<E: Env>(c: &mut Ctx<'_, E>, j: &NsJob) -> Result<u64, Fail> {
    let (t0, _) = c.now();
    let done = {
        let mut npu = TestbedNpu::new(EnvBus(&mut *c.env))
            .map_err(|e| f(format_args!("the NPU as the normal world's: {e}")))?;
        npu.submit(&Job::Gemm(j.job))
            .map_err(|e| f(format_args!("submit: {e}")))?;
        npu.wait(u32::MAX).map_err(|e| f(format_args!("{e}")))?
    };
    let (t1, _) = c.now();
    let mut y = vec![0u8; j.want.len() * 4];
    c.env.mem_read(j.job.y, &mut y);
    let bad = y
        .chunks_exact(4)
        .zip(&j.want)
        .filter(|(b, w)| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) != w.to_bits())
        .count();
    if bad != 0 {
        fail!(
            "{bad} of {} outputs differ from the CPU kernel's",
            j.want.len()
        );
    }
    let _ = done;
    Ok(t1 - t0)
}

pub(crate) fn flexnpu<E: Env, W: Write>(c: &mut Ctx<'_, E>, r: &mut Report<W>) {
    // NpuGemm goes over DIRECT_REQ2, which needs a negotiated v1.2.
    crate::serve::negotiate_v1_2(c, r);
    if !setup(c, r) {
        return;
    }
    discovery(c, r);
    if c.sp.is_none() {
        return;
    }
    let caps = c.capabilities();
    if caps & caps::FLEX_NPU == 0 {
        // Under TF-A on QEMU there is no NPU: every check says why it does not run.
        let spmc = c.env.spmc();
        r.testbed_only(
            spmc,
            "flexnpu.capability",
            crate::report::Needs::Npu,
            || fail!("the SP serves no NPU (caps {caps:#x})"),
        );
        return;
    }
    r.check("flexnpu.capability", Ok(()));
    let hz = c.now().1;
    let mut bench = Figures::default();

    // 1. The NPU as the normal world's: a job of the client's own, right.
    let ns = c.ns_job(NS_SHAPE, 0, None);
    let ns_ticks = r.check("flexnpu.ns_job_matches_cpu", run_ns(c, &ns).map(|_| ()));
    if !ns_ticks {
        return;
    }
    let npu_t = run_ns(c, &ns).unwrap_or(0);
    let (t0, _) = c.now();
    let mut y = vec![0f32; ns.want.len()];
    {
        let kb = NS_SHAPE.2 as usize / 32;
        let w = q8(
            0x5eed_0001 ^ u64::from(NS_SHAPE.1),
            NS_SHAPE.1 as usize * kb,
        );
        let x = q8(
            0x5eed_0002 ^ u64::from(NS_SHAPE.0),
            NS_SHAPE.0 as usize * kb,
        );
        let _ = Kernels::detect().matmul(&w, &x, NS_SHAPE.0 as usize, &mut y);
    }
    let cpu_t = c.now().0 - t0;
    (bench.ns_npu_us, bench.ns_cpu_us) = (us(npu_t, hz), us(cpu_t, hz));
    let macs = u64::from(NS_SHAPE.0) * u64::from(NS_SHAPE.1) * u64::from(NS_SHAPE.2);
    r.note(format_args!(
        "Q8_0 {}x{}x{}: NPU (testbed, CPU 2) {} us = {} MMAC/s; CPU kernel (client, {}) {} us = {} \
         MMAC/s; ratio {:.2} (guest time)",
        NS_SHAPE.0,
        NS_SHAPE.1,
        NS_SHAPE.2,
        us(npu_t, hz),
        macs / us(npu_t, hz).max(1),
        Kernels::detect().describe(),
        us(cpu_t, hz),
        macs / us(cpu_t, hz).max(1),
        cpu_t as f64 / npu_t.max(1) as f64
    ));

    // 2. Flex-Mem for the SP's jobs, secured through the firewall.
    let region = c
        .lend_retrieve(REGION)
        .and_then(|(h, id)| c.secure_ok(id, OWNER).map(|_| (h, id)));
    let Some((handle, region)) = region.ok() else {
        r.check(
            "flexnpu.flexmem_region",
            Err(f(format_args!("lend/retrieve/secure failed"))),
        );
        return;
    };
    let secured_pa = c.wpage(REGION.0) + 0x1000;

    // 3. While the NPU is the normal world's, its DMA still cannot reach secured Flex-Mem:
    //    the firewall refuses the NPU's non-secure write, the job ends in a fault.
    r.check("flexnpu.ns_dma_into_flexmem_blocked", {
        let j = c.ns_job((1, 64, 64), 100, Some(secured_pa));
        let mut npu = TestbedNpu::new(EnvBus(&mut *c.env)).map_err(|e| f(format_args!("{e}")));
        match npu.as_mut().map(|n| {
            n.submit(&Job::Gemm(j.job))?;
            n.wait(u32::MAX)
        }) {
            Ok(Err(NpuError::Fault(fl))) if fl.kind == FaultKind::Firewall => {
                if fl.iova == Some(secured_pa) {
                    Ok(())
                } else {
                    Err(f(format_args!(
                        "fault at {:x?}, not {secured_pa:#x}",
                        fl.iova
                    )))
                }
            }
            other => Err(f(format_args!("the job into Flex-Mem: {other:?}"))),
        }
    });

    // 4. The switch refuses an NPU the normal world did not drain.
    let long = c.ns_job(LONG, 200, None);
    r.check("flexnpu.acquire_refuses_a_busy_npu", {
        let started =
            TestbedNpu::new(EnvBus(&mut *c.env)).and_then(|mut n| n.submit(&Job::Gemm(long.job)));
        match started {
            Err(e) => Err(f(format_args!("long job: {e}"))),
            Ok(()) => match c.npu_call(Request::NpuAcquire) {
                Ok(Reply::Error(Status::Npu, d)) if d == NpuFault::NotIdle as u64 => Ok(()),
                other => Err(f(format_args!(
                    "acquire during a normal-world job: {other:x?}"
                ))),
            },
        }
    });
    // Drain: the NPU is the normal world's again and the long job finishes there.
    r.check("flexnpu.drain", {
        let mut n = 0u32;
        loop {
            match c.env.npu_read32(npu_driver::testbed::regs::STATUS) {
                Some(s) if s & npu_driver::testbed::regs::status::BUSY == 0 => break Ok(()),
                Some(_) if n < u32::MAX => n += 1,
                other => break Err(f(format_args!("status {other:?}"))),
            }
        }
    });

    r.check("flexnpu.irq_is_the_nws_before", {
        match nw_sees_npu_irq(c) {
            Some(true) => Ok(()),
            other => Err(f(format_args!(
                "the NW sees the NPU's interrupt: {other:?}"
            ))),
        }
    });
    // 5. The switch to secure.
    let (a0, _) = c.now();
    let acquired = c.switch(Request::NpuAcquire);
    let acquire_round = c.now().0 - a0;
    let Ok(acq) = acquired else {
        r.check(
            "flexnpu.acquire",
            acquired
                .map(|_| ())
                .map_err(|e| f(format_args!("{}", e.as_str()))),
        );
        return;
    };
    r.check("flexnpu.acquire", Ok(()));
    r.check("flexnpu.irq_secure_while_the_sps", {
        match nw_sees_npu_irq(c) {
            Some(false) => Ok(()),
            other => Err(f(format_args!(
                "the NW still sees the NPU's interrupt: {other:?}"
            ))),
        }
    });

    // 6. The normal world can no longer program the NPU: its MMIO is blocked and reported.
    r.check("flexnpu.nw_mmio_blocked", {
        let before = c.env.blocked_accesses();
        let id = c.env.npu_read32(npu_driver::testbed::regs::ID);
        c.env.npu_write32(
            npu_driver::testbed::regs::DOORBELL,
            npu_driver::testbed::regs::DOORBELL_RING,
        );
        let after = c.env.blocked_accesses();
        match (id, before, after) {
            (Some(0), Some((n0, ..)), Some((n1, addr, info))) => {
                let owner = (info >> 8) & 0xff;
                if n1 != n0 + 2 || owner != control::OWNER_SECURE_DEVICE {
                    Err(f(format_args!(
                        "{} blocked, last {addr:#x} info {info:#x}",
                        n1 - n0
                    )))
                } else {
                    Ok(())
                }
            }
            other => Err(f(format_args!("ID read {other:x?}"))),
        }
    });

    // 7. The SP's secure job: right, and beside the SP's CPU work.
    let (m, n, k) = SECURE;
    let job = c.gemm(NpuGemmArgs {
        region,
        m,
        n,
        k,
        seed: 11,
        flags: 0,
    });
    if let Ok(g) = &job {
        let o = g.overlap_ticks();
        bench.secure_npu_us = us(g.npu_end - g.npu_start, g.counter_hz);
        bench.secure_cpu_us = us(g.cpu_end - g.cpu_start, g.counter_hz);
        bench.overlap_us = us(o, g.counter_hz);
        r.note(format_args!(
            "secure Q8_0 {m}x{n}x{k}: NPU {} us (start {} .. end seen {}), SP CPU work {} us \
             ({} .. {}), both running {} us ({}% of the NPU job)",
            us(g.npu_end - g.npu_start, g.counter_hz),
            g.npu_start,
            g.npu_end,
            us(g.cpu_end - g.cpu_start, g.counter_hz),
            g.cpu_start,
            g.cpu_end,
            us(o, g.counter_hz),
            o * 100 / (g.npu_end - g.npu_start).max(1)
        ));
    }
    r.check("flexnpu.secure_job_matches_cpu", {
        match &job {
            Ok(g) if g.fault_kind == 0 && g.mismatches == 0 => Ok(()),
            Ok(g) => Err(f(format_args!("{g:?}"))),
            Err(e) => Err(f(format_args!("{}", e.as_str()))),
        }
    });
    r.check("flexnpu.secure_job_overlaps_cpu", {
        match &job {
            Ok(g) if g.overlap_ticks() > 0 => Ok(()),
            other => Err(f(format_args!("no overlap: {other:?}"))),
        }
    });
    // 8. A hostile descriptor from the SP's own side: its output outside the STE's tables.
    r.check("flexnpu.iova_outside_ste_faults", {
        match c.gemm(NpuGemmArgs {
            region,
            m: 1,
            n: 64,
            k: 64,
            seed: 3,
            flags: flexserve_proto::gemm_flags::OUTSIDE_STE,
        }) {
            Ok(g)
                if g.fault_kind == fault_code(FaultKind::SmmuTranslation)
                    && g.fault_iova
                        == flexserve_proto::GEMM_IOVA_BASE + u64::from(REGION.1) * PAGE =>
            {
                Ok(())
            }
            other => Err(f(format_args!("{other:x?}"))),
        }
    });

    // 9. Back to the normal world, scrubbed: its dump of the NPU's scratch reads zeros.
    let (b0, _) = c.now();
    let released = c.switch(Request::NpuRelease);
    let release_round = c.now().0 - b0;
    let rel_ok = r.check(
        "flexnpu.release",
        released
            .as_ref()
            .map(|_| ())
            .map_err(|e| f(format_args!("{}", e.as_str()))),
    );
    if let (Ok(rel), true) = (released, rel_ok) {
        bench.to_secure_us = us(acq.ticks, hz);
        bench.to_secure_round_us = us(acquire_round, hz);
        bench.to_normal_us = us(rel.ticks, hz);
        bench.to_normal_round_us = us(release_round, hz);
        r.note(format_args!(
            "switch to secure {} us inside the SP ({} us round trip), back {} us ({} us round \
             trip) (guest time)",
            us(acq.ticks, hz),
            us(acquire_round, hz),
            us(rel.ticks, hz),
            us(release_round, hz)
        ));
    }
    r.check("flexnpu.scratch_scrubbed", scratch_zero(c));
    r.check("flexnpu.irq_back_to_the_nw", {
        match nw_sees_npu_irq(c) {
            Some(true) => Ok(()),
            other => Err(f(format_args!("after the switch back: {other:?}"))),
        }
    });
    // One line for `cargo xtask bench npu`.
    r.note(format_args!("{bench}"));

    // 10. Many switches, then everything still works and nothing is held.
    r.check("flexnpu.switches", {
        (|| {
            for i in 0..SWITCHES {
                c.switch(Request::NpuAcquire)
                    .map_err(|e| f(format_args!("acquire {i}: {}", e.as_str())))?;
                if i % 10 == 0 {
                    let g = c.gemm(NpuGemmArgs {
                        region,
                        m: 2,
                        n: 32,
                        k: 64,
                        seed: i,
                        flags: 0,
                    })?;
                    if g.mismatches != 0 || g.fault_kind != 0 {
                        fail!("job in switch {i}: {g:?}");
                    }
                }
                c.switch(Request::NpuRelease)
                    .map_err(|e| f(format_args!("release {i}: {}", e.as_str())))?;
            }
            scratch_zero(c)?;
            run_ns(c, &ns).map(|_| ())
        })()
    });
    r.check("flexnpu.nothing_left", {
        (|| {
            c.release_ok(region)?;
            c.give_back(handle)?;
            let s = c.flex_mem_stats()?;
            if s.live_regions != 0 || s.mapped_pages != 0 {
                fail!("{s:?}");
            }
            match c.npu_call(Request::NpuRelease)? {
                Reply::Error(Status::Npu, d) if d == NpuFault::NotSecure as u64 => Ok(()),
                other => fail!("release of a normal-world NPU: {other:x?}"),
            }
        })()
    });
}

/// The scenario's figures (guest microseconds), as one `key=value` line.
#[derive(Default)]
struct Figures {
    ns_npu_us: u64,
    ns_cpu_us: u64,
    secure_npu_us: u64,
    secure_cpu_us: u64,
    overlap_us: u64,
    to_secure_us: u64,
    to_secure_round_us: u64,
    to_normal_us: u64,
    to_normal_round_us: u64,
}

impl core::fmt::Display for Figures {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "bench flexnpu: ns_npu_us={} ns_cpu_us={} secure_npu_us={} secure_cpu_us={} \
             overlap_us={} to_secure_us={} to_secure_round_us={} to_normal_us={} \
             to_normal_round_us={}",
            self.ns_npu_us,
            self.ns_cpu_us,
            self.secure_npu_us,
            self.secure_cpu_us,
            self.overlap_us,
            self.to_secure_us,
            self.to_secure_round_us,
            self.to_normal_us,
            self.to_normal_round_us
        )
    }
}

/// The normal world's dump of the NPU's scratch holds only zeros.
fn scratch_zero<E: Env>(c: &mut Ctx<'_, E>) -> CheckResult {
    let dst = c.spage(400);
    let size = {
        let mut npu = TestbedNpu::new(EnvBus(&mut *c.env)).map_err(|e| f(format_args!("{e}")))?;
        let size = npu.scratch_size();
        npu.submit(&Job::DumpScratch { dst })
            .map_err(|e| f(format_args!("dump: {e}")))?;
        npu.wait(u32::MAX)
            .map_err(|e| f(format_args!("dump: {e}")))?;
        size
    };
    let mut buf = vec![0u8; size];
    c.env.mem_read(dst, &mut buf);
    match buf.iter().position(|&b| b != 0) {
        None => Ok(()),
        Some(i) => fail!(
            "scratch byte {i} of {size} is {:#x} after the switch back",
            buf[i]
        ),
    }
}
