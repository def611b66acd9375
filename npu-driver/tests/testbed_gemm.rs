//! Testbed NPU results: Q8_0 bit-identical to llm-runtime's scalar kernel, I32 equal to a naive
//! reference, DumpScratch, the f16 conversion and the register map.

mod common;

use common::{MEM_BASE, Rng, npu};
use llm_runtime::kernels::{BlockQ8_0, Kernels, blocks_as_bytes};
use npu_driver::testbed::{SCRATCH_BYTES, model::Tiles, regs};
use npu_driver::{GemmJob, Job, Mode, Npu, q8};

/// `rows x k/32` blocks: half quantized from random f32 (as the runtime makes activations),
/// half raw random int8 with random finite fp16 scales (weights as GGUF may hold them).
fn q8_rows(rng: &mut Rng, rows: usize, k: usize) -> Vec<BlockQ8_0> {
    let kb = k / 32;
    let mut out = vec![BlockQ8_0::ZERO; rows * kb];
    let mut f = vec![0f32; k];
    for (r, row) in out.chunks_exact_mut(kb).enumerate() {
        if r % 2 == 0 {
            let amp = 10f32.powi(rng.below(7) as i32 - 3);
            f.iter_mut().for_each(|v| *v = rng.f32() * amp);
            Kernels::scalar().quantize(&f, row).unwrap();
        } else {
            for b in row.iter_mut() {
                let scale = rng.f32() * 10f32.powi(rng.below(9) as i32 - 6);
                b.d = half::f16::from_f32(scale).to_bits();
                b.qs.iter_mut().for_each(|q| *q = rng.i8());
            }
        }
    }
    out
}

/// Runs one Q8_0 job through the driver and compares every output's bits with the runtime.
fn check_q8(m: usize, n: usize, k: usize, extra_stride: u32, seed: u64) {
    let mut rng = Rng(seed);
    let w = q8_rows(&mut rng, n, k);
    let x = q8_rows(&mut rng, m, k);
    let mut want = vec![0f32; m * n];
    Kernels::scalar().matmul(&w, &x, m, &mut want).unwrap();

    let (wb, xb) = (blocks_as_bytes(&w), blocks_as_bytes(&x));
    let stride = 4 * n as u32 + extra_stride;
    let (w_at, x_at) = (MEM_BASE, MEM_BASE + wb.len() as u64);
    let y_at = (x_at + xb.len() as u64).next_multiple_of(4096);
    let total = (y_at - MEM_BASE) as usize + m * stride as usize;
    let mut npu = npu(total);
    npu.bus().mem.put(w_at, wb);
    npu.bus().mem.put(x_at, xb);
    npu.bus().mem.bytes[(y_at - MEM_BASE) as usize..].fill(0xa5);
    let job = GemmJob {
        mode: Mode::Q8_0,
        m: m as u32,
        n: n as u32,
        k: k as u32,
        w: w_at,
        x: x_at,
        y: y_at,
        y_stride: stride,
    };
    npu.submit(&Job::Gemm(job)).unwrap();
    let done = npu.wait(10).unwrap();
    assert!(done.cycles >= (m * n * k / 32) as u64);
    let mem = &npu.bus().mem;
    for t in 0..m {
        let row = mem.slice(y_at + (t as u64) * u64::from(stride), stride as usize);
        for r in 0..n {
            let got = u32::from_le_bytes(row[4 * r..4 * r + 4].try_into().unwrap());
            assert_eq!(
                got,
                want[t * n + r].to_bits(),
                "m={m} n={n} k={k}: Y[{t}][{r}] = {} want {}",
                f32::from_bits(got),
                want[t * n + r]
            );
        }
        // Padding between rows is not written.
        assert!(row[4 * n..].iter().all(|&b| b == 0xa5));
    }
}

#[test]
fn q8_0_decode_is_bit_identical_to_llm_runtime() {
    check_q8(1, 37, 64, 0, 1);
    check_q8(1, 512, 2048, 0, 2);
}

#[test]
fn q8_0_prefill_over_many_tiles_is_bit_identical_to_llm_runtime() {
    // K = 2048: 2176-byte rows, so X tiles of 15 rows and several W tiles per X tile.
    let t = Tiles::new(2176, 40, 300);
    assert!(t.mt < 40 && t.nt < 300, "{t:?}");
    check_q8(40, 300, 2048, 0, 3);
    // The longest row the device takes, and odd shapes.
    check_q8(3, 9, 15_392, 12, 4);
    check_q8(7, 33, 96, 4, 5);
}

#[test]
fn i32_matches_a_naive_reference() {
    let mut rng = Rng(9);
    for &(m, n, k) in &[
        (1usize, 5usize, 3usize),
        (4, 70, 1000),
        (33, 129, 16_384),
        (17, 3, 31),
    ] {
        let w: Vec<u8> = (0..n * k).map(|_| rng.i8() as u8).collect();
        let x: Vec<u8> = (0..m * k).map(|_| rng.i8() as u8).collect();
        let (w_at, x_at) = (MEM_BASE, MEM_BASE + (n * k) as u64);
        let y_at = (x_at + (m * k) as u64).next_multiple_of(4);
        let mut npu = npu((y_at - MEM_BASE) as usize + m * n * 4);
        npu.bus().mem.put(w_at, &w);
        npu.bus().mem.put(x_at, &x);
        let job = GemmJob::dense(Mode::I32, m as u32, n as u32, k as u32, w_at, x_at, y_at);
        npu.submit(&Job::Gemm(job)).unwrap();
        npu.wait(10).unwrap();
        let y = npu.bus().mem.slice(y_at, m * n * 4).to_vec();
        for t in 0..m {
            for r in 0..n {
                let want: i32 = (0..k)
                    .map(|i| i32::from(w[r * k + i] as i8) * i32::from(x[t * k + i] as i8))
                    .sum();
                let o = 4 * (t * n + r);
                let got = i32::from_le_bytes(y[o..o + 4].try_into().unwrap());
                assert_eq!(got, want, "m={m} n={n} k={k} Y[{t}][{r}]");
            }
        }
    }
}

#[test]
fn dump_scratch_shows_the_last_job_until_a_scrub() {
    let (n, k) = (8usize, 64usize);
    let w: Vec<u8> = (0..n * k).map(|i| (i % 251) as u8 + 1).collect();
    let (w_at, x_at, y_at, dump_at) = (
        MEM_BASE,
        MEM_BASE + 0x1000,
        MEM_BASE + 0x2000,
        MEM_BASE + 0x3000,
    );
    let mut npu = npu(0x3000 + SCRATCH_BYTES);
    assert_eq!(npu.scratch_size(), SCRATCH_BYTES);
    npu.bus().mem.put(w_at, &w);
    npu.bus().mem.put(x_at, &[3u8; 64]);
    let job = GemmJob::dense(Mode::I32, 1, n as u32, k as u32, w_at, x_at, y_at);
    npu.submit(&Job::Gemm(job)).unwrap();
    npu.wait(10).unwrap();

    // Without a scrub, the next owner finds the weights in the scratch.
    npu.submit(&Job::DumpScratch { dst: dump_at }).unwrap();
    npu.wait(10).unwrap();
    let dump = npu.bus().mem.slice(dump_at, SCRATCH_BYTES).to_vec();
    assert!(
        dump.windows(w.len()).any(|win| win == &w[..]),
        "weights not in the scratch"
    );
    assert!(dump.iter().any(|&b| b != 0));

    // A reset keeps it too: only the scrub clears it.
    npu.reset().unwrap();
    npu.bus().mem.bytes[0x3000..].fill(0xff);
    npu.submit(&Job::DumpScratch { dst: dump_at }).unwrap();
    npu.wait(10).unwrap();
    assert_eq!(npu.bus().mem.slice(dump_at, SCRATCH_BYTES), &dump[..]);

    npu.scrub().unwrap();
    npu.bus().mem.bytes[0x3000..].fill(0xff);
    npu.submit(&Job::DumpScratch { dst: dump_at }).unwrap();
    npu.wait(10).unwrap();
    assert!(
        npu.bus()
            .mem
            .slice(dump_at, SCRATCH_BYTES)
            .iter()
            .all(|&b| b == 0)
    );
}

#[test]
fn f16_conversion_is_exact_for_every_half() {
    for h in 0..=u16::MAX {
        let want = half::f16::from_bits(h).to_f32();
        let got = q8::f16_to_f32(h);
        assert_eq!(got.to_bits(), want.to_bits(), "half {h:#06x}");
    }
}

#[test]
fn register_offsets_match_the_documented_map() {
    let map = [
        (regs::ID, 0x000),
        (regs::VERSION, 0x004),
        (regs::CTRL, 0x008),
        (regs::STATUS, 0x00c),
        (regs::IRQ_STATUS, 0x010),
        (regs::IRQ_MASK, 0x014),
        (regs::IRQ_CLEAR, 0x018),
        (regs::SCRATCH_SIZE, 0x01c),
        (regs::STREAM_ID, 0x020),
        (regs::JOB_COUNT, 0x024),
        (regs::JOB_CYCLES_LO, 0x028),
        (regs::JOB_CYCLES_HI, 0x02c),
        (regs::FAULT_KIND, 0x030),
        (regs::FAULT_IOVA_LO, 0x038),
        (regs::FAULT_IOVA_HI, 0x03c),
        (regs::JOB_MODE, 0x040),
        (regs::JOB_M, 0x044),
        (regs::JOB_N, 0x048),
        (regs::JOB_K, 0x04c),
        (regs::JOB_W_LO, 0x050),
        (regs::JOB_W_HI, 0x054),
        (regs::JOB_X_LO, 0x058),
        (regs::JOB_X_HI, 0x05c),
        (regs::JOB_Y_LO, 0x060),
        (regs::JOB_Y_HI, 0x064),
        (regs::JOB_Y_STRIDE, 0x068),
        (regs::DOORBELL, 0x080),
    ];
    for (got, want) in map {
        assert_eq!(got, want);
    }
    assert_eq!(core::mem::size_of::<regs::RegisterBlock>(), 4096);
    assert_eq!(regs::ID_VALUE, 0x4e50_5531);
}

#[test]
fn the_engine_can_hold_any_backend_as_dyn_npu() {
    fn run(npu: &mut dyn Npu, job: Job) -> Result<u64, npu_driver::NpuError> {
        npu.submit(&job)?;
        Ok(npu.wait(10)?.cycles)
    }
    let mut tb = npu(0x4000);
    tb.bus().mem.put(MEM_BASE, &[1; 64]);
    tb.bus().mem.put(MEM_BASE + 0x1000, &[2; 64]);
    let job = GemmJob::dense(
        Mode::I32,
        1,
        1,
        64,
        MEM_BASE,
        MEM_BASE + 0x1000,
        MEM_BASE + 0x2000,
    );
    // 2 block products' worth of K plus 3 transfers of at most 64 bytes.
    assert_eq!(run(&mut tb, Job::Gemm(job)), Ok(2 + 3));
    assert_eq!(
        tb.bus().mem.slice(MEM_BASE + 0x2000, 4),
        &128i32.to_le_bytes()
    );
}
