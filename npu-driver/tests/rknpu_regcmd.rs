//! RKNPU regcmd builder against golden command streams derived by hand from public sources,
//! and the layout / plan rules.
//!
//! Where the goldens come from:
//! - every register entry 0..103: mtx512/rk3588-npu `src/npu_matmul.c`, `gen_matmul_task`
//!   (order, field positions and masks) with the values `gen_matmul_int8` computes for the
//!   shape (feature grains `M + 1`, banks `ceil(M*K / 32 KiB)` / `12 - that`, data entries
//!   `ceil(K / 64)`, surface stride `4 * (M/4 - 1)` (+1 if negative), DPU int32 output, size_e 7,
//!   surface add `8 * M`);
//! - entry encoding `target << 48 | value << 16 | reg`: mtx512 `include/npu_hw.h` `NPUOP`,
//!   Mesa `src/gallium/drivers/rocket/rkt_regcmd.c` `emit_raw`;
//! - the tail (104..107): mtx512 `gen_matmul_task` (zero entry, PC_REGISTER_AMOUNTS 0,
//!   `0x0041 << 48`, `0x0081` OPERATION_ENABLE 0x0d) and Mesa `fill_first_regcmd` (same shape);
//! - chaining: Mesa `src/gallium/drivers/rocket/rkt_ml.c`, `compile_operation` (next address
//!   in entry `count - 4`, `ALIGN((count - 4) / 2, 2)` in entry `count - 3`);
//! - the kick amount: Linux `drivers/accel/rocket/rocket_job.c`, `rocket_job_hw_submit`.
// Entries are written as target_value_register, the fields of the format.
#![allow(clippy::unusual_byte_groupings)]

use npu_driver::rknpu::layout::{self, feature_offset, output_index, weight_offset};
use npu_driver::rknpu::plan::{MAX_TASKS_PER_CORE, plan};
use npu_driver::rknpu::regcmd::{self, MatmulTask, TASK_ENTRIES, chain, decode};
use npu_driver::{GemmJob, JobError, Mode};

const X: u32 = 0x1000_0000;
const W: u32 = 0x1010_0000;
const Y: u32 = 0x1020_0000;

fn task(m: u32, k: u32, n: u32) -> MatmulTask {
    MatmulTask {
        m,
        k,
        n,
        input: X,
        weights: W,
        output: Y,
    }
}

/// M = 4, K = 64, N = 32 (a shape mtx512's int8 test accepts: M % 4 == 0, K % 32 == 0,
/// N % 16 == 0), input 0x1000_0000, weights 0x1010_0000, output 0x1020_0000.
#[rustfmt::skip]
const GOLDEN_4_64_32: [u64; TASK_ENTRIES] = [
    0x1001_0000000e_4004,
    0x0201_00000000_100c,
    0x0201_00000050_1010,
    0x0201_00000009_1014,
    0x0201_00010004_1020,
    0x0201_003f0040_1024,
    0x0201_00000001_1028,
    0x0201_00000004_102c,
    0x0201_00000800_1030,
    0x0201_00000040_1034,
    0x0201_01010020_1038,
    0x0201_000000b1_1040,
    0x0201_00000001_1044,
    0x0201_0000000b_104c,
    0x0201_00010000_1050,
    0x0201_00010000_1054,
    0x0201_00010000_1058,
    0x0201_00010000_105c,
    0x0201_00000000_1060,
    0x0201_00000000_1064,
    0x0201_00000000_1068,
    0x0201_10000000_1070,
    0x0201_00000000_1074,
    0x0201_000f000f_1078,
    0x0201_00000004_107c,
    0x0201_00000000_1080,
    0x0201_00010004_1084,
    0x0201_00000040_1088,
    0x0201_00000000_1100,
    0x0201_00000000_1104,
    0x0201_10100000_1110,
    0x0201_00000000_1140,
    0x0201_00000000_1144,
    0x0201_00000000_1148,
    0x0201_00000000_114c,
    0x0201_00000000_1150,
    0x0201_00000000_1154,
    0x0201_00000000_1158,
    0x0201_00000000_115c,
    0x0201_00000000_1160,
    0x0201_00000000_1164,
    0x0201_00000000_1168,
    0x0201_00000000_116c,
    0x0201_00000000_1170,
    0x0201_00000000_1174,
    0x0201_00000000_1178,
    0x0201_00000000_117c,
    0x0201_00000000_1180,
    0x0201_00000000_1184,
    0x0801_00000000_3010,
    0x0801_00030000_3014,
    0x0801_0000001f_3018,
    0x0801_00000000_301c,
    0x0801_00000000_3030,
    0x1001_000001e4_400c,
    0x1001_80000000_4010,
    0x1001_00000000_4014,
    0x1001_10200000_4020,
    0x1001_00000040_4024,
    0x1001_00000000_4030,
    0x1001_00000003_4034,
    0x1001_00000000_4038,
    0x1001_001f001f_403c,
    0x1001_00000053_4040,
    0x1001_00000000_4044,
    0x1001_00000000_4048,
    0x1001_00000000_404c,
    0x1001_000007fe_4050,
    0x1001_00000000_4054,
    0x1001_0000001f_4058,
    0x1001_00030000_405c,
    0x1001_00000053_4060,
    0x1001_00000000_4064,
    0x1001_00000000_4068,
    0x1001_00000000_406c,
    0x1001_00000383_4070,
    0x1001_00000000_4074,
    0x1001_00000001_4078,
    0x1001_00000000_407c,
    0x1001_00000000_4080,
    0x1001_00000001_4084,
    0x1001_00000000_4088,
    0x1001_00000000_4090,
    0x1001_00000000_4094,
    0x1001_00000000_4098,
    0x1001_00000000_409c,
    0x1001_00000000_40a0,
    0x1001_00000000_40a4,
    0x1001_00000000_40a8,
    0x1001_00000000_40ac,
    0x1001_00000200_40c0,
    0x1001_00000000_40c4,
    0x1001_00000000_4100,
    0x1001_00000000_4104,
    0x1001_00000000_4108,
    0x1001_00000000_410c,
    0x1001_00000000_4110,
    0x1001_00000000_4114,
    0x1001_00000000_4118,
    0x1001_00000000_411c,
    0x1001_00000000_4120,
    0x1001_00000000_4124,
    0x1001_00000000_4128,
    0x1001_00000000_412c,
    0x0000_00000000_0000,
    0x0101_00000000_0014,
    0x0041_00000000_0000,
    0x0081_0000000d_0008,
];

#[test]
fn matmul_regcmd_matches_the_golden_stream() {
    let got = task(4, 64, 32).encode().unwrap();
    for (i, (g, w)) in got.iter().zip(GOLDEN_4_64_32.iter()).enumerate() {
        assert_eq!(
            g,
            w,
            "entry {i}: got {:x?} want {:x?}",
            decode(*g),
            decode(*w)
        );
    }
}

#[test]
fn single_row_regcmd_takes_mtx512s_values() {
    // M = 1, K = 32, N = 32: the entries that depend on M and K (mtx512 gen_matmul_int8).
    let got = task(1, 32, 32).encode().unwrap();
    let want: [(usize, u64); 9] = [
        (2, 0x0201_00000020_1010),  // CONV_CON2: feature grains M + 1 = 2
        (7, 0x0201_00000001_102c),  // DATA_SIZE3: atomics 1
        (11, 0x0201_000000b1_1040), // CBUF_CON0: 11 weight banks, 1 data bank
        (12, 0x0201_00000001_1044), // CBUF_CON1: ceil(32 / 64) = 1 entry
        (25, 0x0201_0ffffffd_1080), // DMA_CON2: 4 * (0 - 1) + 1 = -3, 28 bits
        (26, 0x0201_00010001_1084), // FC_DATA_SIZE0: width 1, height 1
        (58, 0x1001_00000010_4024), // DST_SURF_STRIDE: M << 4
        (60, 0x1001_00000000_4034), // DATA_CUBE_HEIGHT: M - 1
        (90, 0x1001_00000080_40c0), // SURFACE_ADD: (8 * M) << 4
    ];
    for (i, w) in want {
        assert_eq!(got[i], w, "entry {i}: {:x?}", decode(got[i]));
    }
}

#[test]
fn chaining_and_kick_amounts_follow_mesa_and_rocket() {
    let mut list = task(4, 64, 32).encode().unwrap();
    chain(&mut list, 0x1234_5680, TASK_ENTRIES);
    // PC_BASE_ADDRESS (PC block write) <- next list; PC_REGISTER_AMOUNTS <- ALIGN(104 / 2, 2).
    assert_eq!(list[104], 0x0101_12345680_0010);
    assert_eq!(list[105], 0x0101_00000034_0014);
    assert_eq!(list[106..], GOLDEN_4_64_32[106..]);
    assert_eq!(regcmd::chained_amount(108), 52);
    // rocket: (108 + 1) / 2 - 1.
    assert_eq!(regcmd::kick_amount(108), 53);
    assert_eq!(regcmd::TASK_STRIDE, 896);
}

#[test]
fn cbuf_limits_refuse_what_does_not_fit() {
    // Features over 11 banks (mtx512 returns -1), a kernel over one bank (-2), and the
    // weights over the banks left (this crate's stricter rule).
    assert_eq!(task(12, 32 * 1024, 32).banks(), Err(JobError::TooLarge));
    assert_eq!(task(1, 32 * 1024 + 32, 32).banks(), Err(JobError::TooLarge));
    assert_eq!(task(4, 4096, 96).banks(), Err(JobError::TooLarge)); // 384 KiB > 11 banks
    assert_eq!(task(4, 4096, 88).banks().unwrap().weight, 11);
    assert_eq!(task(0, 64, 32).banks(), Err(JobError::ZeroDimension));
    let b = task(32, 2048, 160).banks().unwrap();
    assert_eq!((b.data, b.weight), (2, 10));
}

#[test]
fn packed_layouts_are_bijections_and_follow_the_formulas() {
    for &(m, k, n) in &[(1usize, 32usize, 32usize), (4, 64, 64), (12, 96, 96)] {
        let mut seen = vec![false; m * k];
        for r in 0..m {
            for c in 0..k {
                let o = feature_offset(m, r, c);
                assert!(!seen[o], "feature collision");
                seen[o] = true;
            }
        }
        let mut seen = vec![false; n * k];
        for r in 0..n {
            for c in 0..k {
                let o = weight_offset(k, r, c);
                assert!(!seen[o], "weight collision");
                seen[o] = true;
            }
        }
        let mut seen = vec![false; m * n];
        for r in 0..m {
            for c in 0..n {
                let o = output_index(m, r, c);
                assert!(!seen[o], "output collision");
                seen[o] = true;
            }
        }
    }
    // Spot values of mtx512's helpers (1-based there): feature_data(C=64, H=4, W=1, C2=16,
    // c=18, h=3, w=1) = plane 1 * 4 * 16 + 16 * 2 + 1 = 97; weight_int8(C=64, k=33, c=40) =
    // cpg 1 * 1024 + kpg 1 * 32 * 64 + 7 + 0 = 3079; output feature_data(N, H=4, 1, C2=4,
    // n=6, m=2) = plane 1 * 16 + 4 * 1 + 1 = 21.
    assert_eq!(feature_offset(4, 2, 17), 97);
    assert_eq!(weight_offset(64, 32, 39), 3079);
    assert_eq!(output_index(4, 1, 5), 21);
    let x: Vec<i8> = (0..4 * 64).map(|i| i as i8).collect();
    let mut px = vec![0u8; x.len()];
    layout::pack_features(&x, 4, 64, &mut px);
    assert_eq!(px[97] as i8, x[2 * 64 + 17]);
}

#[test]
fn shape_rules() {
    let ok = GemmJob::dense(Mode::I32, 4, 64, 64, W.into(), X.into(), Y.into());
    assert_eq!(layout::check(&ok), Ok(()));
    let bad = [
        (GemmJob { m: 2, ..ok }, JobError::BackendShape),
        (
            GemmJob {
                n: 48,
                y_stride: 192,
                ..ok
            },
            JobError::BackendShape,
        ),
        (
            GemmJob {
                y_stride: 260,
                ..ok
            },
            JobError::BackendShape,
        ),
        (GemmJob { k: 48, ..ok }, JobError::BackendShape),
        (GemmJob { m: 1024, ..ok }, JobError::TooLarge),
        (
            GemmJob {
                mode: Mode::Q8_0,
                ..ok
            },
            JobError::BadMode,
        ),
        (
            GemmJob {
                y: 0xffff_ff00,
                ..ok
            },
            JobError::Overflow,
        ),
    ];
    for (job, e) in bad {
        assert_eq!(layout::check(&job), Err(e), "{job:?}");
    }
}

#[test]
fn plan_splits_n_across_cores_and_into_cbuf_sized_tasks() {
    // 7 groups of 32 kernels over 3 cores: 2, 2, 3; K = 256 fits one task per core.
    let job = GemmJob::dense(Mode::I32, 8, 224, 256, W.into(), X.into(), Y.into());
    let p = plan(&job, 3).unwrap();
    let ns: Vec<Vec<u32>> = p
        .cores
        .iter()
        .map(|c| c.tasks().iter().map(|t| t.n).collect())
        .collect();
    assert_eq!(ns, vec![vec![64], vec![64], vec![96]]);
    let t1 = p.cores[1].tasks()[0];
    assert_eq!(t1.weights, W + 64 * 256); // groups are contiguous in W
    assert_eq!(t1.output, Y + (64 / 4) * 8 * 16); // and whole 4-channel planes of Y
    assert_eq!(t1.input, X);
    // K = 8192, M = 4: one data bank, 11 weight banks hold 44 kernels -> one group per task.
    let job = GemmJob::dense(Mode::I32, 4, 224, 8192, W.into(), X.into(), Y.into());
    let p = plan(&job, 3).unwrap();
    assert_eq!(p.task_count(), 7);
    assert_eq!(p.cores[2].tasks().len(), 3);
    // One core only.
    assert_eq!(plan(&job, 1).unwrap().cores[0].tasks().len(), 7);
    // More tasks than a core may take.
    let n = (3 * MAX_TASKS_PER_CORE as u32 + 3) * 32;
    let job = GemmJob::dense(Mode::I32, 4, n, 8192, 0, X.into(), 0x2000_0000);
    assert_eq!(plan(&job, 3), Err(JobError::TooLarge));
}
