//! Testbed NPU lifecycle: DMA faults, bad descriptors (at the driver and at the device), reset,
//! interrupts, busy doorbells, probing.

mod common;

use common::{MEM_BASE, Mem, Rig, Rng, npu};
use npu_driver::testbed::{
    DmaFaultKind, NpuBus, TestbedNpu, fault_code, fault_from_code,
    regs::{self, ctrl, irq, mode, status},
};
use npu_driver::{
    Fault, FaultKind, GemmJob, Job, JobError, Mode, Npu, NpuError, testbed::MAX_ROW_BYTES,
};

const W: u64 = MEM_BASE;
const X: u64 = MEM_BASE + 0x10_0000;
const Y: u64 = MEM_BASE + 0x20_0000;
const LEN: usize = 0x30_0000;

/// An I32 job with random operands in place.
fn rig_with(m: u32, n: u32, k: u32) -> (TestbedNpu<Rig>, GemmJob) {
    let mut npu = npu(LEN);
    let mut rng = Rng(42);
    let mem = &mut npu.bus().mem;
    for b in &mut mem.bytes[..0x20_0000] {
        *b = rng.i8() as u8;
    }
    mem.bytes[0x20_0000..].fill(0xee);
    (npu, GemmJob::dense(Mode::I32, m, n, k, W, X, Y))
}

fn expect_fault(npu: &mut TestbedNpu<Rig>, kind: FaultKind, iova: Option<u64>) {
    let f = Fault { kind, iova };
    assert_eq!(npu.wait(10), Err(NpuError::Fault(f)));
    assert_eq!(npu.last_fault(), Some(f));
}

#[test]
fn denied_weight_read_faults_with_kind_and_iova_and_writes_nothing_after() {
    // K = 4096: both X rows in one tile, W tiles of 13 rows; deny a page inside W row 20.
    let (mut npu, job) = rig_with(2, 64, 4096);
    let bad = W + 20 * 4096 + 100;
    npu.bus()
        .mem
        .deny(bad..bad + 4096, DmaFaultKind::SmmuTranslation);
    npu.submit(&Job::Gemm(job)).unwrap();
    expect_fault(&mut npu, FaultKind::SmmuTranslation, Some(bad));
    let mem = &npu.bus().mem;
    let log = &mem.log;
    let last = log.last().unwrap();
    assert!(!last.write && last.fault.is_some());
    assert!(log[..log.len() - 1].iter().all(|a| a.fault.is_none()));
    // Y: exactly the rows of the tiles before the fault, nothing else.
    let written: Vec<_> = log.iter().filter(|a| a.write).collect();
    assert!(!written.is_empty());
    let y = mem.slice(Y, 2 * 64 * 4);
    let mut touched = vec![false; y.len()];
    for a in &written {
        touched[(a.iova - Y) as usize..(a.iova - Y) as usize + a.len].fill(true);
    }
    for (i, (&b, &t)) in y.iter().zip(&touched).enumerate() {
        if !t {
            assert_eq!(b, 0xee, "Y byte {i} written after the fault");
        }
    }
    // The tile before the fault was written and is complete.
    assert!(touched[..13 * 4].iter().all(|&t| t));
    assert_eq!(npu.job_count(), 1);
}

#[test]
fn denied_output_write_stops_at_the_fault_iova() {
    // Decode: one row, written in increasing address order; the firewall denies a page of Y.
    let (mut npu, job) = rig_with(1, 8192, 256);
    let bad = Y + 0x3000;
    npu.bus()
        .mem
        .deny(bad..bad + 0x1000, DmaFaultKind::Firewall);
    npu.submit(&Job::Gemm(job)).unwrap();
    expect_fault(&mut npu, FaultKind::Firewall, Some(bad));
    let mem = &npu.bus().mem;
    // Everything below the fault is the right result; everything at or above is untouched.
    let below = mem.slice(Y, 0x3000).to_vec();
    for r in 0..0x3000 / 4 {
        let want: i32 = (0..256)
            .map(|i| {
                let w = mem.slice(W + (r * 256 + i) as u64, 1)[0] as i8;
                let x = mem.slice(X + i as u64, 1)[0] as i8;
                i32::from(w) * i32::from(x)
            })
            .sum();
        assert_eq!(
            i32::from_le_bytes(below[4 * r..4 * r + 4].try_into().unwrap()),
            want
        );
    }
    assert!(mem.slice(bad, 8192 * 4 - 0x3000).iter().all(|&b| b == 0xee));
    let faults = mem.log.iter().filter(|a| a.fault.is_some()).count();
    assert_eq!(faults, 1);
    assert!(mem.log.last().unwrap().fault.is_some());
}

#[test]
fn permission_and_bus_faults_are_told_apart() {
    let (mut npu, job) = rig_with(1, 4, 64);
    npu.bus().mem.deny(X..X + 64, DmaFaultKind::SmmuPermission);
    npu.submit(&Job::Gemm(job)).unwrap();
    expect_fault(&mut npu, FaultKind::SmmuPermission, Some(X));

    // Y beyond the end of memory: a bus error at the first byte past it.
    npu.bus().mem.denied.clear();
    let top = MEM_BASE + LEN as u64;
    let job = GemmJob::dense(Mode::I32, 1, 16, 64, W, X, top - 32);
    npu.submit(&Job::Gemm(job)).unwrap();
    expect_fault(&mut npu, FaultKind::Bus, Some(top));
    // The next job runs normally.
    npu.submit(&Job::Gemm(GemmJob::dense(
        Mode::I32,
        1,
        4,
        64,
        W,
        W + 64,
        Y,
    )))
    .unwrap();
    assert!(npu.wait(10).is_ok());
    assert_eq!(npu.last_fault(), None);
}

#[test]
fn driver_rejects_bad_descriptors_before_the_device_sees_them() {
    let (mut npu, ok) = rig_with(2, 4, 64);
    let cases = [
        (
            GemmJob {
                k: 48,
                mode: Mode::Q8_0,
                ..ok
            },
            JobError::KNotBlockMultiple,
        ),
        (GemmJob { m: 0, ..ok }, JobError::ZeroDimension),
        (GemmJob { y_stride: 12, ..ok }, JobError::StrideTooSmall),
        (GemmJob { y_stride: 18, ..ok }, JobError::Unaligned),
        (GemmJob { y: Y + 2, ..ok }, JobError::Unaligned),
        (
            GemmJob {
                w: (1 << 48) - 100,
                ..ok
            },
            JobError::Overflow,
        ),
        (
            GemmJob {
                x: u64::MAX - 10,
                ..ok
            },
            JobError::Overflow,
        ),
        (
            GemmJob {
                m: u32::MAX,
                n: 1,
                y_stride: u32::MAX - 3,
                ..ok
            },
            JobError::Overflow,
        ),
        (
            GemmJob {
                k: MAX_ROW_BYTES as u32 + 1,
                ..ok
            },
            JobError::TooLarge,
        ),
    ];
    let writes_before = npu.bus().writes.len();
    for (job, err) in cases {
        assert_eq!(
            npu.submit(&Job::Gemm(job)),
            Err(NpuError::BadJob(err)),
            "{job:?}"
        );
    }
    assert_eq!(
        npu.submit(&Job::DumpScratch {
            dst: (1 << 48) - 100
        }),
        Err(NpuError::BadJob(JobError::Overflow))
    );
    assert_eq!(
        npu.bus().writes.len(),
        writes_before,
        "a bad job reached the registers"
    );
    assert_eq!(npu.job_count(), 0);
    assert_eq!(npu.poll(), Err(NpuError::NoJob));
}

/// Programs the job registers directly, as a buggy or hostile driver could.
fn raw_job(rig: &mut Rig, mode_v: u32, m: u32, n: u32, k: u32, stride: u32) {
    let regs_vals = [
        (regs::JOB_MODE, mode_v),
        (regs::JOB_M, m),
        (regs::JOB_N, n),
        (regs::JOB_K, k),
        (regs::JOB_W_LO, W as u32),
        (regs::JOB_X_LO, X as u32),
        (regs::JOB_Y_LO, Y as u32),
        (regs::JOB_Y_STRIDE, stride),
    ];
    for (o, v) in regs_vals {
        rig.write32(o, v);
    }
    rig.write32(regs::DOORBELL, regs::DOORBELL_RING);
}

#[test]
fn device_faults_bad_descriptors_before_any_dma() {
    let mut rig = Rig::new(Mem::new(MEM_BASE, LEN));
    rig.auto_run = false;
    rig.write32(regs::CTRL, ctrl::ENABLE);
    rig.write32(regs::IRQ_MASK, irq::ALL);
    let cases = [
        (9, 1, 1, 32, 4, JobError::BadMode),
        (mode::Q8_0, 1, 1, 40, 4, JobError::KNotBlockMultiple),
        (mode::I32, 1, 0, 32, 4, JobError::ZeroDimension),
        (mode::I32, 2, 4, 32, 8, JobError::StrideTooSmall),
        (mode::I32, 2, 4, 32, 17, JobError::Unaligned),
        (mode::I32, 1, 1, 20_000, 4, JobError::TooLarge),
        (mode::I32, u32::MAX, 1 << 20, 1, 1 << 22, JobError::Overflow),
    ];
    for (i, (mv, m, n, k, stride, err)) in cases.into_iter().enumerate() {
        raw_job(&mut rig, mv, m, n, k, stride);
        assert_eq!(rig.model.read32(regs::STATUS), status::BUSY);
        assert!(rig.run());
        assert_eq!(rig.model.read32(regs::STATUS), status::IDLE | status::FAULT);
        assert_eq!(
            fault_from_code(rig.model.read32(regs::FAULT_KIND)),
            FaultKind::Descriptor(err)
        );
        assert_eq!(rig.model.read32(regs::FAULT_IOVA_LO), 0);
        assert_eq!(rig.model.read32(regs::JOB_COUNT), i as u32 + 1);
        assert!(
            rig.mem.log.is_empty(),
            "DMA before validation: {:?}",
            rig.mem.log
        );
        assert!(rig.model.irq_line());
        rig.write32(regs::IRQ_CLEAR, irq::FAULT);
        assert!(!rig.model.irq_line());
    }
}

#[test]
fn doorbell_while_busy_is_rejected_by_driver_and_device() {
    let (mut npu, job) = rig_with(1, 4, 64);
    npu.bus().auto_run = false;
    npu.submit(&Job::Gemm(job)).unwrap();
    assert_eq!(npu.poll(), Ok(None));
    let other = GemmJob {
        y: Y + 0x100,
        ..job
    };
    assert_eq!(npu.submit(&Job::Gemm(other)), Err(NpuError::Busy));
    assert_eq!(npu.scrub(), Err(NpuError::Busy));
    // A raw doorbell behind the driver's back: ignored, REJECTED latched, the job unchanged.
    npu.bus().write32(regs::JOB_Y_LO, (Y + 0x100) as u32);
    npu.bus().write32(regs::DOORBELL, regs::DOORBELL_RING);
    assert_ne!(npu.bus().model.read32(regs::IRQ_STATUS) & irq::REJECTED, 0);
    assert!(npu.bus().run());
    assert!(
        !npu.bus().run(),
        "the rejected doorbell queued a second job"
    );
    assert!(npu.wait(1).is_ok());
    assert_eq!(npu.job_count(), 1);
    assert!(
        npu.bus()
            .mem
            .slice(Y + 0x100, 16)
            .iter()
            .all(|&b| b == 0xee)
    );
    assert!(npu.bus().mem.slice(Y, 16).iter().any(|&b| b != 0xee));
}

#[test]
fn a_disabled_device_rejects_the_doorbell() {
    let (mut npu, job) = rig_with(1, 4, 64);
    npu.bus().write32(regs::CTRL, 0);
    npu.submit(&Job::Gemm(job)).unwrap();
    assert_eq!(npu.wait(10), Err(NpuError::Rejected));
    assert!(npu.irq_pending());
    npu.reset().unwrap();
    npu.submit(&Job::Gemm(job)).unwrap();
    assert!(npu.wait(10).is_ok());
}

#[test]
fn reset_clears_status_faults_and_counters() {
    let (mut npu, job) = rig_with(1, 4, 64);
    npu.bus().mem.deny(W..W + 1, DmaFaultKind::SmmuTranslation);
    npu.submit(&Job::Gemm(job)).unwrap();
    assert!(npu.wait(10).is_err());
    assert_eq!(npu.job_count(), 1);
    assert!(npu.irq_pending());
    npu.bus().auto_run = false;
    npu.bus().mem.denied.clear();
    npu.submit(&Job::Gemm(job)).unwrap();
    // Reset aborts the job that has not run.
    npu.reset().unwrap();
    assert!(!npu.bus().run());
    let m = &npu.bus().model;
    assert_eq!(m.read32(regs::STATUS), status::IDLE);
    assert_eq!(m.read32(regs::FAULT_KIND), 0);
    assert_eq!(m.read32(regs::JOB_COUNT), 0);
    assert_eq!(m.read32(regs::IRQ_STATUS), 0);
    assert_eq!(m.read32(regs::CTRL), ctrl::ENABLE);
    assert_eq!(npu.last_fault(), None);
    assert_eq!(npu.poll(), Err(NpuError::NoJob));
    npu.bus().auto_run = true;
    npu.submit(&Job::Gemm(job)).unwrap();
    assert!(npu.wait(10).is_ok());
}

#[test]
fn interrupts_latch_follow_the_mask_and_clear_by_writing_ones() {
    let (mut npu, job) = rig_with(1, 4, 64);
    assert!(!npu.irq_pending());
    npu.submit(&Job::Gemm(job)).unwrap();
    npu.wait(10).unwrap();
    assert!(npu.irq_pending());
    assert_eq!(npu.bus().model.read32(regs::IRQ_STATUS), irq::DONE);
    // Masked: latched but the line is low.
    npu.bus().write32(regs::IRQ_MASK, irq::FAULT);
    assert!(!npu.irq_pending());
    assert!(!npu.bus().model.irq_line());
    npu.bus().write32(regs::IRQ_MASK, irq::ALL);
    // Writing 0 clears nothing; writing the other bit leaves DONE.
    npu.bus().write32(regs::IRQ_CLEAR, 0);
    npu.bus().write32(regs::IRQ_CLEAR, irq::FAULT);
    assert!(npu.irq_pending());
    npu.clear_irq();
    assert!(!npu.irq_pending());
    // The outcome stays readable after the acknowledgement.
    assert_eq!(
        npu.bus().model.read32(regs::STATUS),
        status::IDLE | status::DONE
    );
}

#[test]
fn probe_checks_id_and_version() {
    struct Fake(u32, u32);
    impl NpuBus for Fake {
        fn read32(&mut self, o: usize) -> u32 {
            match o {
                regs::ID => self.0,
                regs::VERSION => self.1,
                _ => 0,
            }
        }
        fn write32(&mut self, _: usize, _: u32) {}
    }
    let e = TestbedNpu::new(Fake(0x1234, regs::VERSION_VALUE)).err();
    assert_eq!(
        e,
        Some(NpuError::WrongDevice {
            id: 0x1234,
            version: regs::VERSION_VALUE
        })
    );
    let e = TestbedNpu::new(Fake(regs::ID_VALUE, 2 << 16)).err();
    assert_eq!(
        e,
        Some(NpuError::WrongDevice {
            id: regs::ID_VALUE,
            version: 2 << 16
        })
    );
    let npu = npu(4096);
    assert_eq!(npu.stream_id(), 7);
}

#[test]
fn fault_codes_round_trip() {
    let mut kinds = vec![
        FaultKind::SmmuTranslation,
        FaultKind::SmmuPermission,
        FaultKind::Firewall,
        FaultKind::Bus,
        FaultKind::Unknown(0x77),
    ];
    kinds.extend(JobError::ALL.map(FaultKind::Descriptor));
    for k in kinds {
        assert_eq!(fault_from_code(fault_code(k)), k);
    }
    assert_eq!(fault_from_code(0x100 + 99), FaultKind::Unknown(0x163));
}

#[test]
fn random_register_traffic_never_panics_and_keeps_status_consistent() {
    // Whoever owns the NPU (the normal world too, while it is non-secure) may write anything.
    let offsets: Vec<usize> = (0..0x90).step_by(4).chain([0xffc, 0x1000, 3]).collect();
    let mut rng = Rng(0x1234_5678);
    let mut rig = Rig::new(Mem::new(MEM_BASE, 0x4_0000));
    rig.mem.deny(
        MEM_BASE + 0x1_0000..MEM_BASE + 0x1_1000,
        DmaFaultKind::Firewall,
    );
    let (mut ended, mut done) = (0u32, 0u32);
    for _ in 0..20_000 {
        let off = offsets[rng.below(offsets.len() as u64) as usize];
        let v = match rng.below(4) {
            0 => rng.next_u64() as u32,
            1 => rng.below(64) as u32,
            2 => (MEM_BASE + rng.below(0x4_0000)) as u32,
            _ => rng.below(4) as u32,
        };
        let v = if off == regs::CTRL {
            v & !ctrl::RESET | ctrl::ENABLE
        } else {
            v
        };
        rig.write32(off, v);
        if rng.below(32) == 0 {
            // A plausible job (some will still fault: denied page, end of memory).
            let at = |r: &mut Rng| (MEM_BASE + r.below(0x3_0000)) as u32 & !3;
            let (m, n) = (1 + rng.below(4) as u32, 1 + rng.below(16) as u32);
            let k = 32 * (1 + rng.below(8) as u32);
            for (o, v) in [
                (regs::JOB_MODE, 1 + rng.below(3) as u32),
                (regs::JOB_M, m),
                (regs::JOB_N, n),
                (regs::JOB_K, k),
                (regs::JOB_W_LO, at(&mut rng)),
                (regs::JOB_X_LO, at(&mut rng)),
                (regs::JOB_Y_LO, at(&mut rng)),
                (regs::JOB_Y_STRIDE, 4 * n),
            ] {
                rig.write32(o, v);
            }
            for o in [regs::JOB_W_HI, regs::JOB_X_HI, regs::JOB_Y_HI] {
                rig.write32(o, 0);
            }
        }
        if rng.below(16) == 0 {
            rig.write32(regs::DOORBELL, regs::DOORBELL_RING);
        }
        if rng.below(8) == 0 && rig.run() {
            ended += 1;
            let st = rig.model.read32(regs::STATUS);
            done += u32::from(st & status::DONE != 0);
        }
        let st = rig.model.read32(regs::STATUS);
        assert_eq!(
            (st & (status::IDLE | status::BUSY)).count_ones(),
            1,
            "STATUS {st:#x}"
        );
        assert_eq!(st & status::BUSY != 0, rig.model.has_pending());
        if st & status::FAULT != 0 {
            assert_ne!(rig.model.read32(regs::FAULT_KIND), 0);
        }
        rig.mem.log.clear();
    }
    assert!(
        ended > 500 && done > 0 && done < ended,
        "{ended} jobs, {done} done"
    );
    assert_eq!(rig.model.read32(regs::JOB_COUNT), ended);
}
