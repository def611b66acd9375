//! Every kernel path this CPU can run, against the scalar reference.
//!
//! - Integer exactness: with power-of-two scales every f32 step is exact, so each path's output
//!   must equal the exact integer result bit for bit (any int8 value, including -128).
//! - Random fp16 scales: within `1e-5` of the sum of absolute scaled int8 products (SIMD paths
//!   convert partial int32 lane sums to f32 and add them in another order).
//! - `FLEXSERVE_EXPECT_KERNELS` (e.g. `sdot,smmla`, `neon`, `avx512vnni`): the paths `detect()`
//!   picks must be exactly these, so a silent fallback to another path fails.

use llm_runtime::kernels::{
    BlockQ8_0, CpuFeatures, KernelError, Kernels, Path, QK8_0, blocks_from_bytes, scalar,
};

/// xorshift64*: deterministic test data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn i8(&mut self) -> i8 {
        self.next() as i8
    }
    fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// Blocks with random int8 (every 7th block is all -128 / 127 extremes) and the given scales.
fn blocks(rng: &mut Rng, n: usize, scale: &mut dyn FnMut(&mut Rng) -> u16) -> Vec<BlockQ8_0> {
    (0..n)
        .map(|i| {
            let mut b = BlockQ8_0::ZERO;
            for q in b.qs.iter_mut() {
                *q = match i % 7 {
                    3 => i8::MIN,
                    5 => {
                        if rng.next() & 1 == 0 {
                            i8::MIN
                        } else {
                            i8::MAX
                        }
                    }
                    _ => rng.i8(),
                };
            }
            b.d = scale(rng);
            b
        })
        .collect()
}

const ONE: u16 = 0x3C00; // fp16 1.0
const POW2: [u16; 4] = [0x3C00, 0x3800, 0x4000, 0x3400]; // 1, 0.5, 2, 0.25

const ROWS: [usize; 9] = [1, 2, 3, 4, 5, 7, 8, 13, 33];
const KBS: [usize; 5] = [1, 2, 3, 9, 16];
const TOKENS: [usize; 6] = [1, 2, 3, 4, 5, 9];

/// Exact result with power-of-two scales (no rounding anywhere for these magnitudes).
fn exact(w: &[BlockQ8_0], x: &[BlockQ8_0], kb: usize, rows: usize, n: usize) -> Vec<f32> {
    let mut y = vec![0.0f32; n * rows];
    for t in 0..n {
        for r in 0..rows {
            let mut s = 0.0f64;
            for b in 0..kb {
                let (wb, xb) = (&w[r * kb + b], &x[t * kb + b]);
                let d = half::f16::from_bits(wb.d).to_f64() * half::f16::from_bits(xb.d).to_f64();
                s += f64::from(scalar::dot_block(wb, xb)) * d;
            }
            y[t * rows + r] = s as f32;
        }
    }
    y
}

fn paths(mm: bool) -> Vec<Path> {
    let v: Vec<Path> = Kernels::available(mm).collect();
    println!(
        "{} paths on this CPU: {:?} (detected {:?})",
        if mm { "matmul" } else { "matvec" },
        v,
        CpuFeatures::detect()
    );
    v
}

fn kernels(mv: Path, mm: Path) -> Kernels {
    Kernels::with_paths(mv, mm).expect("path listed as available")
}

#[test]
fn detected_paths_match_expectation() {
    let k = Kernels::detect();
    println!("detect(): {k:?} -> {}", k.describe());
    match std::env::var("FLEXSERVE_EXPECT_KERNELS") {
        Ok(want) => {
            let mut want: Vec<&str> = want.split(',').map(str::trim).collect();
            want.sort();
            let got = k.describe();
            assert_eq!(
                got,
                want.join(","),
                "FLEXSERVE_EXPECT_KERNELS={want:?} but detect() chose {got}"
            );
        }
        Err(_) => println!("FLEXSERVE_EXPECT_KERNELS not set: not checking the choice"),
    }
    // Whatever was chosen must be the best available.
    let mv = paths(false);
    let mm = paths(true);
    assert!(mv.contains(&k.matvec_path()) && mm.contains(&k.matmul_path()));
}

#[test]
fn integer_dots_are_exact_on_every_path() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for mm in [false, true] {
        for path in paths(mm) {
            let k = if mm {
                kernels(Path::Scalar, path)
            } else {
                kernels(path, Path::Scalar)
            };
            let mut checked = 0;
            for &rows in &ROWS {
                for &kb in &KBS {
                    for &n in if mm { &TOKENS[..] } else { &TOKENS[..1] } {
                        let mut pick = |r: &mut Rng| POW2[(r.next() % 4) as usize];
                        let w = blocks(&mut rng, rows * kb, &mut pick);
                        let x = blocks(&mut rng, n * kb, &mut |_| ONE);
                        let want = exact(&w, &x, kb, rows, n);
                        let mut y = vec![f32::NAN; n * rows];
                        if mm {
                            k.matmul(&w, &x, n, &mut y).unwrap();
                        } else {
                            k.matvec(&w, &x, &mut y).unwrap();
                        }
                        assert_eq!(
                            y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                            "{path} {}: rows {rows} kb {kb} n {n}",
                            if mm { "matmul" } else { "matvec" }
                        );
                        checked += 1;
                    }
                }
            }
            println!(
                "{path} ({}): {checked} shapes exact",
                if mm { "matmul" } else { "matvec" }
            );
        }
    }
}

#[test]
fn random_scales_agree_within_tolerance() {
    let mut rng = Rng(0xfeed_beef_0bad_cafe);
    let mut scale = |r: &mut Rng| half::f16::from_f32(r.f32() * 0.05).to_bits();
    for &rows in &ROWS {
        for &kb in &KBS {
            for &n in &TOKENS {
                let w = blocks(&mut rng, rows * kb, &mut scale);
                let x = blocks(&mut rng, n * kb, &mut scale);
                // Tolerance: relative to the sum of |scaled int8 products| of each output.
                let mut mag = vec![0.0f64; n * rows];
                for t in 0..n {
                    for r in 0..rows {
                        for b in 0..kb {
                            let (wb, xb) = (&w[r * kb + b], &x[t * kb + b]);
                            let d = half::f16::from_bits(wb.d).to_f64()
                                * half::f16::from_bits(xb.d).to_f64();
                            let abs: i32 = wb
                                .qs
                                .iter()
                                .zip(&xb.qs)
                                .map(|(&a, &b)| (i32::from(a) * i32::from(b)).abs())
                                .sum();
                            mag[t * rows + r] += f64::from(abs) * d.abs();
                        }
                    }
                }
                let mut want = vec![0.0f32; n * rows];
                Kernels::scalar().matmul(&w, &x, n, &mut want).unwrap();
                for mm in [false, true] {
                    for path in Kernels::available(mm) {
                        let k = if mm {
                            kernels(Path::Scalar, path)
                        } else {
                            kernels(path, Path::Scalar)
                        };
                        let mut y = vec![f32::NAN; n * rows];
                        if mm {
                            k.matmul(&w, &x, n, &mut y).unwrap();
                        } else {
                            // matvec one token at a time
                            for t in 0..n {
                                k.matvec(
                                    &w,
                                    &x[t * kb..(t + 1) * kb],
                                    &mut y[t * rows..(t + 1) * rows],
                                )
                                .unwrap();
                            }
                        }
                        for i in 0..n * rows {
                            let err = f64::from((y[i] - want[i]).abs());
                            assert!(
                                err <= 1e-5 * mag[i] + 1e-30,
                                "{path}: rows {rows} kb {kb} n {n} out {i}: {} vs {} (mag {})",
                                y[i],
                                want[i],
                                mag[i]
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn threads_give_identical_results() {
    let mut rng = Rng(42);
    let mut scale = |r: &mut Rng| half::f16::from_f32(r.f32() * 0.05).to_bits();
    let (rows, kb, n) = (37, 9, 5);
    let w = blocks(&mut rng, rows * kb, &mut scale);
    let x = blocks(&mut rng, n * kb, &mut scale);
    let one = Kernels::detect();
    for threads in [2, 3, 8] {
        let many = Kernels::detect().with_threads(threads);
        assert_eq!(many.threads(), threads);
        for _ in 0..50 {
            let (mut a, mut b) = (vec![0.0f32; rows], vec![1.0f32; rows]);
            one.matvec(&w, &x[..kb], &mut a).unwrap();
            many.matvec(&w, &x[..kb], &mut b).unwrap();
            assert_eq!(a, b, "matvec, {threads} threads");
            let (mut a, mut b) = (vec![0.0f32; n * rows], vec![1.0f32; n * rows]);
            one.matmul(&w, &x, n, &mut a).unwrap();
            many.matmul(&w, &x, n, &mut b).unwrap();
            assert_eq!(a, b, "matmul, {threads} threads");
        }
    }
}

#[test]
fn bad_shapes_are_errors() {
    let k = Kernels::detect();
    let w = vec![BlockQ8_0::ZERO; 12];
    let x = vec![BlockQ8_0::ZERO; 3];
    let mut y = vec![0.0f32; 5];
    assert!(matches!(
        k.matvec(&w, &x, &mut y),
        Err(KernelError::Shape { .. })
    ));
    assert!(matches!(k.matvec(&w, &x, &mut y[..4]), Ok(())));
    assert!(matches!(
        k.matvec(&w[..11], &x, &mut y[..4]),
        Err(KernelError::Shape { .. })
    ));
    assert!(matches!(
        k.matmul(&w, &x, 2, &mut y[..4]),
        Err(KernelError::Shape { .. })
    ));
    assert!(matches!(
        k.matmul(&w, &x[..2], 0, &mut []),
        Err(KernelError::Shape { .. })
    ));
    assert!(matches!(k.matmul(&w, &[], 0, &mut []), Ok(())));
    let mut q = vec![BlockQ8_0::ZERO; 2];
    assert!(matches!(
        k.quantize(&[0.0; 63], &mut q),
        Err(KernelError::QuantizeShape {
            values: 63,
            blocks: 2
        })
    ));
}

#[test]
fn quantize_is_the_reference_rounding() {
    let k = Kernels::detect();
    // amax 127 -> d = 1, so q = round_half_away(x).
    let mut x = [0.0f32; QK8_0];
    x[0] = 127.0;
    x[1] = 0.5;
    x[2] = -0.5;
    x[3] = 1.5;
    x[4] = 2.5;
    x[5] = -2.5;
    x[6] = 0.49999997;
    let mut q = [BlockQ8_0::ZERO; 1];
    k.quantize(&x, &mut q).unwrap();
    assert_eq!(q[0].d, 0x3C00);
    assert_eq!(&q[0].qs[..7], &[127, 1, -1, 2, 3, -3, 0]);
    // All-zero block: d = 0, q = 0.
    k.quantize(&[0.0; QK8_0], &mut q).unwrap();
    assert_eq!(q[0], BlockQ8_0::ZERO);
    // q uses the unrounded d: amax 1.0 gives d = 1/127 (fp16 0x2008), and 0.3 * 127 = 38.1.
    let mut x = [0.0f32; QK8_0];
    x[0] = -1.0;
    x[1] = 0.3;
    k.quantize(&x, &mut q).unwrap();
    assert_eq!(q[0].d, half::f16::from_f32(1.0 / 127.0).to_bits());
    assert_eq!(&q[0].qs[..2], &[-127, 38]);
}

#[test]
fn id_register_decoding() {
    let none = CpuFeatures::from_aarch64_id_regs(0, 0);
    assert!(none.neon && !none.dotprod && !none.i8mm);
    let dp = CpuFeatures::from_aarch64_id_regs(1 << 44, 0);
    assert!(dp.dotprod && !dp.i8mm);
    let mm = CpuFeatures::from_aarch64_id_regs(0, 1 << 52);
    assert!(!mm.dotprod && mm.i8mm);
    // Neighbouring fields must not leak in.
    let other = CpuFeatures::from_aarch64_id_regs(0xf << 40 | 0xf << 48, 0xf << 48 | 0xf << 56);
    assert!(!other.dotprod && !other.i8mm);
}

#[test]
fn for_cpu_never_adds_features() {
    let all = CpuFeatures {
        neon: true,
        dotprod: true,
        i8mm: true,
        avx2: true,
        avx512vnni: true,
    };
    let k = Kernels::for_cpu(all);
    assert_eq!(k.describe(), Kernels::detect().describe());
    let s = Kernels::for_cpu(CpuFeatures::NONE);
    assert_eq!(s.describe(), "scalar");
}

#[test]
fn blocks_from_bytes_checks() {
    let mut buf = [0u8; 80];
    let off = buf.as_ptr().align_offset(2);
    let view = &mut buf[off..off + 70];
    // Block 0: d = 1.0 (little-endian, as in GGUF), qs[0] = -128, qs[1] = 127.
    view[..4].copy_from_slice(&[0x00, 0x3C, 0x80, 0x7f]);
    let blocks = blocks_from_bytes(&view[..68]).unwrap();
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0].d, 0x3C00);
    assert_eq!((blocks[0].qs[0], blocks[0].qs[1]), (-128, 127));
    assert_eq!(
        blocks_from_bytes(&view[..67]),
        Err(KernelError::BytesNotWholeBlocks { len: 67 })
    );
    assert_eq!(
        blocks_from_bytes(&view[1..35]),
        Err(KernelError::BytesMisaligned)
    );
    assert_eq!(blocks_from_bytes(&[]).unwrap().len(), 0);
}

#[test]
fn rounding_matches_libm_roundf() {
    let reference = |v: f32| libm::roundf(v) as i8;
    let mut rng = Rng(7);
    let mut specials = vec![
        0.0,
        -0.0,
        0.5,
        -0.5,
        1.5,
        -1.5,
        126.5,
        -127.5,
        127.49999,
        127.5,
        -128.5,
        128.0,
        1e10,
        -1e10,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        0.49999997,
        -0.49999997,
        f32::MIN_POSITIVE,
        8388607.5,
    ];
    for i in -300..300 {
        specials.push(i as f32 * 0.5);
        specials.push(f32::from_bits((i as f32 * 0.5).to_bits().wrapping_add(1)));
        specials.push(f32::from_bits((i as f32 * 0.5).to_bits().wrapping_sub(1)));
    }
    for &v in &specials {
        assert_eq!(scalar::round_to_i8(v), reference(v), "v = {v:e}");
    }
    for _ in 0..200_000 {
        let v = rng.f32() * 140.0;
        assert_eq!(scalar::round_to_i8(v), reference(v), "v = {v:e}");
    }
}
