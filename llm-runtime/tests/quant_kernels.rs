//! The Q4_0 / Q4_K / Q5_K / Q6_K kernels on every path this CPU can run, against the scalar
//! reference: per-block integer sums bit-identical on random blocks (any weight bits, and
//! activations including all -128 / all 127 extremes), and whole products bit-identical in f32
//! (the f32 combination is shared, `kernels::qdot`), single- and multi-threaded. Plus the
//! reference itself against a direct dequantize-and-multiply in f64.

use llm_runtime::kernels::quants::{
    BlockQ4_0, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, QK_K, blocks_q4_k, blocks_q6_k,
    dequantize_q4_0, dequantize_q4_k, dequantize_q5_k, dequantize_q6_k, quantize_row_q8_k,
};
use llm_runtime::kernels::{
    BlockQ8_0, KernelError, Kernels, Path, QActBlock, QActs, QBlock, QWeights, block_sums,
};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn u8(&mut self) -> u8 {
        self.next() as u8
    }
    fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    fn f16(&mut self) -> u16 {
        half::f16::from_f32(self.f32() * 0.05).to_bits()
    }
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        core::array::from_fn(|_| self.u8())
    }
}

fn q4_0(r: &mut Rng) -> BlockQ4_0 {
    BlockQ4_0 {
        d: r.f16(),
        qs: r.bytes(),
    }
}
fn q4_k(r: &mut Rng) -> BlockQ4K {
    BlockQ4K {
        d: r.f16(),
        dmin: r.f16(),
        scales: r.bytes(),
        qs: r.bytes(),
    }
}
fn q5_k(r: &mut Rng) -> BlockQ5K {
    BlockQ5K {
        d: r.f16(),
        dmin: r.f16(),
        scales: r.bytes(),
        qh: r.bytes(),
        qs: r.bytes(),
    }
}
fn q6_k(r: &mut Rng) -> BlockQ6K {
    BlockQ6K {
        ql: r.bytes(),
        qh: r.bytes(),
        scales: r.bytes::<16>().map(|b| b as i8),
        d: r.f16(),
    }
}

/// Activation int8: random, or (every few blocks) all -128, all 127, or a mix of the two.
fn act_i8<const N: usize>(r: &mut Rng, i: usize) -> [i8; N] {
    core::array::from_fn(|_| match i % 5 {
        1 => i8::MIN,
        2 => i8::MAX,
        3 => {
            if r.next() & 1 == 0 {
                i8::MIN
            } else {
                i8::MAX
            }
        }
        _ => r.u8() as i8,
    })
}

fn q8_0(r: &mut Rng, i: usize) -> BlockQ8_0 {
    BlockQ8_0 {
        d: r.f16(),
        qs: act_i8(r, i),
    }
}
fn q8_k(r: &mut Rng, i: usize) -> BlockQ8K {
    BlockQ8K::from_parts(r.f32(), act_i8(r, i))
}

/// Every weight block with the extremes of its bit patterns too: all-zero and all-one bytes.
fn extreme<T: Copy>(b: T, i: usize, f: impl Fn(&mut T, u8)) -> T {
    let mut b = b;
    match i % 7 {
        4 => f(&mut b, 0x00),
        6 => f(&mut b, 0xFF),
        _ => {}
    }
    b
}

fn paths() -> Vec<Path> {
    let v: Vec<Path> = Kernels::available(false).collect();
    println!("paths on this CPU: {v:?}");
    v
}

#[test]
fn block_sums_are_identical_on_every_path() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut checked = 0;
    for i in 0..400 {
        let xa = q8_0(&mut r, i);
        let xk = q8_k(&mut r, i);
        let w0 = extreme(q4_0(&mut r), i, |b, v| b.qs = [v; 16]);
        let w4 = extreme(q4_k(&mut r), i, |b, v| {
            b.qs = [v; 128];
            b.scales = [v; 12];
        });
        let w5 = extreme(q5_k(&mut r), i, |b, v| {
            b.qs = [v; 128];
            b.qh = [v; 32];
            b.scales = [v; 12];
        });
        let w6 = extreme(q6_k(&mut r), i, |b, v| {
            b.ql = [v; 128];
            b.qh = [v; 64];
            b.scales = [v as i8; 16];
        });
        let cases = [
            (QBlock::Q4_0(&w0), QActBlock::Q8_0(&xa)),
            (QBlock::Q4K(&w4), QActBlock::Q8K(&xk)),
            (QBlock::Q5K(&w5), QActBlock::Q8K(&xk)),
            (QBlock::Q6K(&w6), QActBlock::Q8K(&xk)),
        ];
        for (w, x) in cases {
            let want = block_sums(Path::Scalar, w, x).unwrap();
            for p in paths() {
                assert_eq!(
                    block_sums(p, w, x).unwrap(),
                    want,
                    "{p} block {i} {w:?} {x:?}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 1600);
}

#[test]
fn mismatched_formats_are_errors() {
    let mut r = Rng(5);
    let (w, x) = (q4_k(&mut r), q8_0(&mut r, 0));
    for p in paths() {
        assert_eq!(
            block_sums(p, QBlock::Q4K(&w), QActBlock::Q8_0(&x)),
            Err(KernelError::ActivationType)
        );
    }
    let k = Kernels::detect();
    let mut y = [0.0f32; 1];
    assert_eq!(
        k.qmatmul(QWeights::Q4K(&[w]), QActs::Q8_0(&[x; 8]), 1, &mut y),
        Err(KernelError::ActivationType)
    );
    // Shapes: 2 weight blocks cannot be 1 row x 1 block.
    let xk = [q8_k(&mut r, 0)];
    assert!(matches!(
        k.qmatmul(QWeights::Q4K(&[w, w]), QActs::Q8K(&xk), 1, &mut y),
        Err(KernelError::Shape { .. })
    ));
}

/// Exact (f64) dequantize-and-multiply of one row, for checking the reference's integer
/// decomposition and f32 combination.
fn f64_row(wf: &[f32], x: &[f32]) -> (f64, f64) {
    let dot = wf
        .iter()
        .zip(x)
        .map(|(&a, &b)| f64::from(a) * f64::from(b))
        .sum();
    let mag = wf
        .iter()
        .zip(x)
        .map(|(&a, &b)| (f64::from(a) * f64::from(b)).abs())
        .sum();
    (dot, mag)
}

#[test]
fn products_are_bit_identical_across_paths_and_threads_and_match_f64() {
    let mut r = Rng(0xdead_beef_cafe_f00d);
    let (rows, kb, n) = (13usize, 3usize, 5usize);
    let w0: Vec<BlockQ4_0> = (0..rows * kb * 8).map(|_| q4_0(&mut r)).collect();
    let w4: Vec<BlockQ4K> = (0..rows * kb).map(|_| q4_k(&mut r)).collect();
    let w5: Vec<BlockQ5K> = (0..rows * kb).map(|_| q5_k(&mut r)).collect();
    let w6: Vec<BlockQ6K> = (0..rows * kb).map(|_| q6_k(&mut r)).collect();
    let xa: Vec<BlockQ8_0> = (0..n * kb * 8).map(|i| q8_0(&mut r, i)).collect();
    let xk: Vec<BlockQ8K> = (0..n * kb).map(|i| q8_k(&mut r, i)).collect();
    let cases = [
        (QWeights::Q4_0(&w0), QActs::Q8_0(&xa)),
        (QWeights::Q4K(&w4), QActs::Q8K(&xk)),
        (QWeights::Q5K(&w5), QActs::Q8K(&xk)),
        (QWeights::Q6K(&w6), QActs::Q8K(&xk)),
    ];
    let cols = kb * QK_K;
    for (w, x) in cases {
        for tokens in [1, n] {
            let xs = match x {
                QActs::Q8_0(b) => QActs::Q8_0(&b[..tokens * kb * 8]),
                QActs::Q8K(b) => QActs::Q8K(&b[..tokens * kb]),
            };
            let mut want = vec![0.0f32; tokens * rows];
            Kernels::scalar().qmatmul(w, xs, tokens, &mut want).unwrap();
            // The reference against f64 over the dequantized values.
            let mut wf = vec![0.0f32; rows * cols];
            match w {
                QWeights::Q4_0(b) => dequantize_q4_0(b, &mut wf),
                QWeights::Q4K(b) => dequantize_q4_k(b, &mut wf),
                QWeights::Q5K(b) => dequantize_q5_k(b, &mut wf),
                QWeights::Q6K(b) => dequantize_q6_k(b, &mut wf),
            }
            let mut xf = vec![0.0f32; tokens * cols];
            match xs {
                QActs::Q8_0(b) => {
                    for (o, blk) in xf.chunks_exact_mut(32).zip(b) {
                        let d = half::f16::from_bits(blk.d).to_f32();
                        for (v, &q) in o.iter_mut().zip(&blk.qs) {
                            *v = f32::from(q) * d;
                        }
                    }
                }
                QActs::Q8K(b) => {
                    for (o, blk) in xf.chunks_exact_mut(QK_K).zip(b) {
                        for (v, &q) in o.iter_mut().zip(blk.qs()) {
                            *v = f32::from(q) * blk.d();
                        }
                    }
                }
            }
            for t in 0..tokens {
                for row in 0..rows {
                    let (e, mag) = f64_row(
                        &wf[row * cols..(row + 1) * cols],
                        &xf[t * cols..(t + 1) * cols],
                    );
                    let got = f64::from(want[t * rows + row]);
                    assert!(
                        (got - e).abs() <= 1e-5 * mag + 1e-30,
                        "{w:?}: row {row} token {t}: {got} vs {e} (mag {mag})"
                    );
                }
            }
            let mm = tokens > 1;
            for p in Kernels::available(mm) {
                for threads in [1, 2, 3] {
                    let k = if mm {
                        Kernels::with_paths(Path::Scalar, p)
                    } else {
                        Kernels::with_paths(p, Path::Scalar)
                    };
                    let k = k.unwrap().with_threads(threads);
                    let mut y = vec![f32::NAN; tokens * rows];
                    k.qmatmul(w, xs, tokens, &mut y).unwrap();
                    let same = y.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{p} x{threads} tokens {tokens}: {y:?} vs {want:?}");
                }
            }
        }
    }
}

#[test]
fn q8_k_quantizer_properties() {
    let mut r = Rng(77);
    let x: Vec<f32> = (0..QK_K * 3).map(|_| r.f32() * 3.0).collect();
    let mut q = vec![BlockQ8K::ZERO; 3];
    quantize_row_q8_k(&x, &mut q).unwrap();
    for (b, xs) in q.iter().zip(x.chunks_exact(QK_K)) {
        for (g, s) in b.bsums().iter().enumerate() {
            let want: i16 = b.qs()[16 * g..16 * g + 16]
                .iter()
                .map(|&v| i16::from(v))
                .sum();
            assert_eq!(*s, want);
        }
        // The largest-magnitude value maps to -127 (d carries the sign).
        let i = (0..QK_K)
            .max_by(|&a, &c| xs[a].abs().total_cmp(&xs[c].abs()))
            .unwrap();
        assert_eq!(b.qs()[i], -127);
        for (&qv, &xv) in b.qs().iter().zip(xs) {
            assert!((f32::from(qv) * b.d() - xv).abs() <= b.d().abs() * 0.5 + 1e-6);
        }
    }
    assert!(matches!(
        quantize_row_q8_k(&x[..10], &mut q),
        Err(KernelError::QuantizeShape { .. })
    ));
    // Hostile values do not panic.
    let mut bad = vec![f32::NAN; QK_K];
    bad[1] = f32::INFINITY;
    quantize_row_q8_k(&bad, &mut q[..1]).unwrap();
}

#[test]
fn views_check_length_and_alignment() {
    let buf = vec![0u16; 400];
    // SAFETY: reading initialized u16 storage as bytes.
    let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), 800) };
    assert_eq!(blocks_q4_k(&bytes[..288]).unwrap().len(), 2);
    assert_eq!(blocks_q6_k(&bytes[..420]).unwrap().len(), 2);
    assert_eq!(
        blocks_q4_k(&bytes[..100]),
        Err(KernelError::BytesNotWholeBlocks { len: 100 })
    );
    assert_eq!(
        blocks_q4_k(&bytes[1..145]),
        Err(KernelError::BytesMisaligned)
    );
}
