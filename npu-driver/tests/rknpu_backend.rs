//! The `Rknpu` backend against a tiny register model: rocket's submit sequence per core, the
//! interrupt handling and task chaining across three cores, faults, scrub and refusals.

mod rk_model;

use npu_driver::rknpu::regcmd::{TASK_ENTRIES, TASK_STRIDE};
use npu_driver::rknpu::regs::{cna, core, int, pc};
use npu_driver::rknpu::{
    ConfigError, Rknpu, RknpuConfig, SCRUB_OUT_BYTES, SCRUB_TASK, SCRUB_ZERO_BYTES, ScrubBuffers,
    layout,
};
use npu_driver::{Fault, FaultKind, GemmJob, Job, Mode, Npu, NpuError, OperandLayout, Unsupported};
use rk_model::{Executed, RkModel};

const BASE: u32 = 0x1000_0000;
const CMD: u32 = BASE;
const CMD_LEN: usize = 3 * 32 * TASK_STRIDE;
const X: u32 = BASE + 0x10_0000;
const W: u32 = BASE + 0x20_0000;
const Y: u32 = BASE + 0x40_0000;
const ZEROS: u32 = BASE + 0x50_0000;
const SCRUB_OUT: u32 = BASE + 0x58_0000;
const MEM: usize = 0x60_0000;

fn cfg(scrub: bool) -> RknpuConfig {
    RknpuConfig {
        cmd_iova: CMD,
        cmd_len: CMD_LEN,
        cores: 3,
        scrub: scrub.then_some(ScrubBuffers {
            zeros: ZEROS,
            out: SCRUB_OUT,
        }),
    }
}

fn npu() -> Rknpu<RkModel> {
    Rknpu::new(RkModel::new(BASE, MEM, CMD), cfg(true)).unwrap()
}

struct Rng(u64);
impl Rng {
    fn i8(&mut self) -> i8 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 32) as i8
    }
}

/// Packs random operands, runs the job, returns (got, want) row-major.
fn run(npu: &mut Rknpu<RkModel>, m: usize, k: usize, n: usize) -> (Vec<i32>, Vec<i32>) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let x: Vec<i8> = (0..m * k).map(|_| rng.i8()).collect();
    let w: Vec<i8> = (0..n * k).map(|_| rng.i8()).collect();
    let (mut px, mut pw) = (vec![0u8; m * k], vec![0u8; n * k]);
    layout::pack_features(&x, m, k, &mut px);
    layout::pack_weights(&w, n, k, &mut pw);
    npu.bus().put(X, &px);
    npu.bus().put(W, &pw);
    let job = GemmJob::dense(
        Mode::I32,
        m as u32,
        n as u32,
        k as u32,
        W.into(),
        X.into(),
        Y.into(),
    );
    npu.submit(&Job::Gemm(job)).unwrap();
    npu.wait(1000).unwrap();
    let mut got = vec![0i32; m * n];
    layout::unpack_output(npu.bus().slice(Y, m * n * 4), m, n, &mut got);
    let mut want = vec![0i32; m * n];
    for r in 0..m {
        for c in 0..n {
            want[r * n + c] = (0..k)
                .map(|i| i32::from(x[r * k + i]) * i32::from(w[c * k + i]))
                .sum();
        }
    }
    (got, want)
}

#[test]
fn kick_writes_rockets_submit_sequence_on_every_core() {
    let mut npu = npu();
    let (got, want) = run(&mut npu, 4, 64, 96);
    assert_eq!(got, want);
    assert!(npu.bus().errors.is_empty(), "{:?}", npu.bus().errors);
    // Linux drivers/accel/rocket/rocket_job.c, rocket_job_hw_submit: the writes of one kick.
    for c in 0..3 {
        let addr = CMD + (c * 32 * TASK_STRIDE) as u32;
        let extra = 0x1000_0000 * c as u32;
        let want = [
            (pc::BASE_ADDRESS, 1),
            (cna::S_POINTER, 0xe | extra), // PP_EN | EXECUTER_PP_EN | PP_MODE | core bit
            (core::S_POINTER, 0xe | extra),
            (pc::BASE_ADDRESS, addr),
            (pc::REGISTER_AMOUNTS, 53),  // (108 + 1) / 2 - 1
            (pc::INTERRUPT_MASK, 0x300), // DPU_0 | DPU_1
            (pc::INTERRUPT_CLEAR, 0x300),
            (pc::TASK_CON, 0x7001), // bit 14 | COUNT_CLEAR | PP_EN | TASK_NUMBER(1)
            (pc::TASK_DMA_BASE_ADDR, 0),
            (pc::OPERATION_ENABLE, 1),
        ];
        let writes = &npu.bus().cores[c].writes;
        assert_eq!(&writes[..want.len()], &want, "core {c}");
        // rocket_job_irq_handler / rocket_job_handle_irq: mask off, disable, clear all.
        assert_eq!(
            &writes[want.len()..want.len() + 3],
            &[
                (pc::INTERRUPT_MASK, 0),
                (pc::OPERATION_ENABLE, 0),
                (pc::INTERRUPT_CLEAR, 0x1ffff)
            ],
            "core {c}"
        );
    }
    let ex = &npu.bus().executed;
    assert_eq!(ex.len(), 3);
    assert_eq!(
        ex[1],
        Executed {
            core: 1,
            m: 4,
            k: 64,
            n: 32,
            x: X,
            w: W + 32 * 64,
            y: Y + 8 * 4 * 16
        }
    );
}

#[test]
fn many_tasks_per_core_run_one_after_another_and_give_the_right_product() {
    let mut npu = npu();
    // K = 8192: one 32-kernel group per task; 7 groups -> tasks 2, 2, 3 on the three cores.
    let (got, want) = run(&mut npu, 4, 8192, 224);
    assert_eq!(got, want);
    assert!(npu.bus().errors.is_empty(), "{:?}", npu.bus().errors);
    let per_core: Vec<usize> = (0..3)
        .map(|c| npu.bus().executed.iter().filter(|e| e.core == c).count())
        .collect();
    assert_eq!(per_core, vec![2, 2, 3]);
    // Both ping-pong DPU bits were taken as "done".
    assert_eq!(npu.bus().cores[2].tasks_run, 3);
    // Core 2's third task was kicked at its third list.
    let last = CMD + ((2 * 32 + 2) * TASK_STRIDE) as u32;
    assert!(
        npu.bus().cores[2]
            .writes
            .contains(&(pc::BASE_ADDRESS, last))
    );
    // The chained lists carry the next address as Mesa patches it.
    let list0 = npu.bus().slice(CMD, TASK_ENTRIES * 8).to_vec();
    let e104 = u64::from_le_bytes(list0[104 * 8..105 * 8].try_into().unwrap());
    assert_eq!(
        e104,
        0x0101 << 48 | u64::from(CMD + TASK_STRIDE as u32) << 16 | 0x10
    );
    // Single-row decode shape.
    let (got, want) = run(&mut npu, 1, 512, 64);
    assert_eq!(got, want);
}

#[test]
fn interrupts_are_seen_and_acknowledged() {
    let mut npu = npu();
    let job = GemmJob::dense(Mode::I32, 4, 96, 64, W.into(), X.into(), Y.into());
    npu.submit(&Job::Gemm(job)).unwrap();
    // The model completes at once: every core's DPU interrupt is pending.
    assert!(npu.irq_pending());
    assert_eq!(npu.submit(&Job::Gemm(job)), Err(NpuError::Busy));
    npu.clear_irq();
    assert!(!npu.irq_pending());
    // The outcome stays for poll after the acknowledgement.
    assert_eq!(npu.poll().map(|d| d.is_some()), Ok(true));
    assert_eq!(npu.poll(), Err(NpuError::NoJob));
}

#[test]
fn dma_errors_fault_the_job_and_stop_every_core() {
    let mut npu = npu();
    // W beyond the model's memory: the core that reads it raises DMA_READ_ERROR.
    let w = BASE + MEM as u32 - 4096;
    let job = GemmJob::dense(Mode::I32, 4, 96, 64, w.into(), X.into(), Y.into());
    npu.submit(&Job::Gemm(job)).unwrap();
    let f = Fault {
        kind: FaultKind::Bus,
        iova: None,
    };
    assert_eq!(npu.wait(100), Err(NpuError::Fault(f)));
    assert_eq!(npu.last_fault(), Some(f));
    for c in 0..3 {
        let writes = &npu.bus().cores[c].writes;
        assert!(writes.ends_with(&[
            (pc::OPERATION_ENABLE, 0),
            (pc::INTERRUPT_MASK, 0),
            (pc::INTERRUPT_CLEAR, int::CLEAR_ALL)
        ]));
    }
    // The next job runs.
    let (got, want) = run(&mut npu, 4, 64, 32);
    assert_eq!(got, want);
    assert_eq!(npu.last_fault(), None);
}

#[test]
fn scrub_runs_the_zero_job_on_every_core() {
    let mut npu = npu();
    run(&mut npu, 4, 64, 96);
    npu.bus().executed.clear();
    npu.scrub().unwrap();
    let (m, k, n) = SCRUB_TASK;
    for c in 0..3 {
        let e = Executed {
            core: c,
            m,
            k,
            n,
            x: ZEROS,
            w: ZEROS,
            y: SCRUB_OUT,
        };
        assert!(
            npu.bus().executed.contains(&e),
            "core {c}: {:?}",
            npu.bus().executed
        );
    }
    // 2 data banks + 10 weight banks: the whole 12-bank CBUF.
    assert_eq!(m * k, 2 * 32 * 1024);
    assert_eq!(n * k, 10 * 32 * 1024);
    assert_eq!(SCRUB_ZERO_BYTES, 320 * 1024);
    assert!(
        npu.bus()
            .slice(SCRUB_OUT, SCRUB_OUT_BYTES)
            .iter()
            .all(|&b| b == 0)
    );

    let mut bare = Rknpu::new(RkModel::new(BASE, MEM, CMD), cfg(false)).unwrap();
    assert_eq!(bare.scrub(), Err(NpuError::Unsupported(Unsupported::Scrub)));
}

#[test]
fn refuses_what_it_cannot_run() {
    let mut npu = npu();
    let q8 = GemmJob::dense(Mode::Q8_0, 4, 32, 64, W.into(), X.into(), Y.into());
    assert_eq!(
        npu.submit(&Job::Gemm(q8)),
        Err(NpuError::Unsupported(Unsupported::Mode(Mode::Q8_0)))
    );
    assert_eq!(
        npu.submit(&Job::DumpScratch { dst: Y.into() }),
        Err(NpuError::Unsupported(Unsupported::DumpScratch))
    );
    let odd = GemmJob::dense(Mode::I32, 3, 32, 64, W.into(), X.into(), Y.into());
    assert_eq!(
        npu.submit(&Job::Gemm(odd)),
        Err(NpuError::BadJob(npu_driver::JobError::BackendShape))
    );
    assert!(npu.bus().cores.iter().all(|c| c.writes.is_empty()));
    assert_eq!(npu.poll(), Err(NpuError::NoJob));
    assert_eq!(npu.operand_layout(), OperandLayout::Rknpu);
    assert_eq!(npu.scratch_size(), 0);

    let bad = |cmd_iova, cmd_len, cores| {
        let c = RknpuConfig {
            cmd_iova,
            cmd_len,
            cores,
            scrub: None,
        };
        Rknpu::new(RkModel::new(BASE, MEM, CMD), c).err()
    };
    assert_eq!(bad(CMD + 8, CMD_LEN, 3), Some(ConfigError::CmdUnaligned));
    assert_eq!(bad(CMD, 100, 3), Some(ConfigError::CmdSize));
    assert_eq!(bad(0xffff_ff00, 4096, 3), Some(ConfigError::CmdSize));
    assert_eq!(bad(CMD, CMD_LEN, 0), Some(ConfigError::Cores));
    assert_eq!(bad(CMD, CMD_LEN, 4), Some(ConfigError::Cores));
}

#[test]
fn reset_stops_the_cores_and_forgets_the_job() {
    let mut npu = npu();
    let job = GemmJob::dense(Mode::I32, 4, 96, 64, W.into(), X.into(), Y.into());
    npu.submit(&Job::Gemm(job)).unwrap();
    npu.reset().unwrap();
    assert_eq!(npu.poll(), Err(NpuError::NoJob));
    for c in 0..3 {
        assert!(npu.bus().cores[c].writes.ends_with(&[
            (pc::OPERATION_ENABLE, 0),
            (pc::INTERRUPT_MASK, 0),
            (pc::INTERRUPT_CLEAR, int::CLEAR_ALL)
        ]));
    }
    npu.submit(&Job::Gemm(job)).unwrap();
    assert!(npu.wait(10).is_ok());
}
