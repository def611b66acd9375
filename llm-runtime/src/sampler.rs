//! Next-token sampling: greedy, temperature, top-k, top-p, from a seeded PCG32.
//!
//! The order is HF `transformers`' (temperature, then top-k, then top-p, then a draw). All
//! buffers are sized for the vocabulary when the [`Sampler`] is made, so [`Sampler::sample`]
//! does not allocate.

use alloc::vec::Vec;

/// PCG-XSH-RR 64/32 (O'Neill 2014): small, `no_std`, reproducible across targets.
#[derive(Clone, Debug)]
pub struct Pcg32 {
    state: u64,
    inc: u64,
}

impl Pcg32 {
    const MUL: u64 = 6364136223846793005;

    pub fn new(seed: u64) -> Pcg32 {
        // Derive the stream from the seed too, so nearby seeds give unrelated sequences.
        let mut rng = Pcg32 {
            state: 0,
            inc: (splitmix64(seed ^ 0x9E37_79B9_7F4A_7C15) << 1) | 1,
        };
        rng.next_u32();
        rng.state = rng.state.wrapping_add(splitmix64(seed));
        rng.next_u32();
        rng
    }

    pub fn next_u32(&mut self) -> u32 {
        let old = self.state;
        self.state = old.wrapping_mul(Self::MUL).wrapping_add(self.inc);
        let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
        let rot = (old >> 59) as u32;
        xorshifted.rotate_right(rot)
    }

    /// Uniform in [0, 1), 24 random bits.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How to pick the next token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplerConfig {
    /// 0 = greedy (argmax); otherwise logits are divided by it.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 = no limit.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose mass reaches `top_p`; 1 = no limit.
    pub top_p: f32,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

/// Why sampling settings or logits were refused.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SamplerError {
    /// Temperature negative or not finite.
    BadTemperature(f32),
    /// top-p outside (0, 1].
    BadTopP(f32),
    /// A vocabulary of 0 tokens, or more than fit a `u32` id.
    BadVocabSize(usize),
    /// `logits` length differs from the vocabulary size given at construction.
    LogitsLength { expected: usize, got: usize },
}

/// A sampler for one generation stream.
#[derive(Clone, Debug)]
pub struct Sampler {
    cfg: SamplerConfig,
    rng: Pcg32,
    vocab_size: usize,
    /// (probability or logit, token id), capacity `vocab_size`.
    cand: Vec<(f32, u32)>,
}

/// Index of the largest value; the first one on ties; NaN counts as smallest.
pub fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        let b = logits[best];
        if v > b || (b.is_nan() && !v.is_nan()) {
            best = i;
        }
    }
    best
}

impl Sampler {
    pub fn new(cfg: SamplerConfig, vocab_size: usize) -> Result<Sampler, SamplerError> {
        if !cfg.temperature.is_finite() || cfg.temperature < 0.0 {
            return Err(SamplerError::BadTemperature(cfg.temperature));
        }
        if !(cfg.top_p > 0.0 && cfg.top_p <= 1.0) {
            return Err(SamplerError::BadTopP(cfg.top_p));
        }
        if vocab_size == 0 || u32::try_from(vocab_size).is_err() {
            return Err(SamplerError::BadVocabSize(vocab_size));
        }
        Ok(Sampler {
            cfg,
            rng: Pcg32::new(cfg.seed),
            vocab_size,
            cand: Vec::with_capacity(vocab_size),
        })
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Picks the next token from `logits` (one per vocabulary entry).
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32, SamplerError> {
        if logits.len() != self.vocab_size {
            return Err(SamplerError::LogitsLength {
                expected: self.vocab_size,
                got: logits.len(),
            });
        }
        if self.cfg.temperature == 0.0 || self.cfg.top_k == 1 {
            return Ok(argmax(logits) as u32);
        }
        let inv_t = 1.0 / self.cfg.temperature;
        self.cand.clear();
        self.cand.extend(
            logits
                .iter()
                .enumerate()
                // NaN logits can never be picked.
                .map(|(i, &l)| {
                    (
                        if l.is_nan() {
                            f32::NEG_INFINITY
                        } else {
                            l * inv_t
                        },
                        i as u32,
                    )
                }),
        );
        // Most likely first; the id breaks ties so the order does not depend on the sort.
        let desc = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        let k = self.cfg.top_k;
        if k > 0 && k < self.cand.len() {
            self.cand.select_nth_unstable_by(k - 1, desc);
            self.cand.truncate(k);
        }

        // Softmax over the candidates.
        let max = self
            .cand
            .iter()
            .map(|c| c.0)
            .fold(f32::NEG_INFINITY, f32::max);
        if max == f32::NEG_INFINITY {
            // Every logit was -inf or NaN: nothing is more likely than anything else.
            return Ok(argmax(logits) as u32);
        }
        let mut sum = 0.0f32;
        for c in self.cand.iter_mut() {
            c.0 = libm::expf(c.0 - max);
            sum += c.0;
        }
        for c in self.cand.iter_mut() {
            c.0 /= sum;
        }

        let top_p = self.cfg.top_p;
        if top_p < 1.0 {
            // A token below (1 - p) / (n - 1) cannot be in the nucleus (llama2.c's cut),
            // which keeps the sort short.
            let n = self.cand.len();
            if n > 1 {
                let cutoff = (1.0 - top_p) / (n - 1) as f32;
                self.cand.retain(|c| c.0 >= cutoff);
            }
            self.cand.sort_unstable_by(desc);
            let mut mass = 0.0f32;
            let mut keep = self.cand.len();
            for (i, c) in self.cand.iter().enumerate() {
                mass += c.0;
                if mass >= top_p {
                    keep = i + 1;
                    break;
                }
            }
            self.cand.truncate(keep.max(1));
        }

        let total: f32 = self.cand.iter().map(|c| c.0).sum();
        let r = self.rng.next_f32() * total;
        let mut acc = 0.0f32;
        for c in &self.cand {
            acc += c.0;
            if r < acc {
                return Ok(c.1);
            }
        }
        // Rounding left r at or above the last partial sum: take the last candidate.
        Ok(self.cand.last().map_or(argmax(logits) as u32, |c| c.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn cfg(temperature: f32, top_k: usize, top_p: f32, seed: u64) -> SamplerConfig {
        SamplerConfig {
            temperature,
            top_k,
            top_p,
            seed,
        }
    }

    fn counts(c: SamplerConfig, logits: &[f32], n: usize) -> Vec<usize> {
        let mut s = Sampler::new(c, logits.len()).unwrap();
        let mut h = vec![0; logits.len()];
        for _ in 0..n {
            h[s.sample(logits).unwrap() as usize] += 1;
        }
        h
    }

    #[test]
    fn greedy_is_first_argmax() {
        let mut s = Sampler::new(SamplerConfig::default(), 5).unwrap();
        assert_eq!(s.sample(&[0.0, 3.0, -1.0, 3.0, f32::NAN]).unwrap(), 1);
        assert_eq!(argmax(&[f32::NAN, -5.0]), 1);
        // top_k = 1 is greedy at any temperature.
        let mut s = Sampler::new(cfg(5.0, 1, 1.0, 7), 3).unwrap();
        assert_eq!(s.sample(&[0.0, 0.1, 0.2]).unwrap(), 2);
    }

    #[test]
    fn seeded_runs_repeat_and_seeds_differ() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let run = |seed| {
            let mut s = Sampler::new(cfg(1.0, 0, 1.0, seed), logits.len()).unwrap();
            (0..64)
                .map(|_| s.sample(&logits).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn temperature_sampling_follows_softmax() {
        let p = [0.1f32, 0.2, 0.7];
        let logits: Vec<f32> = p.iter().map(|x| libm::logf(*x)).collect();
        let n = 40_000;
        let h = counts(cfg(1.0, 0, 1.0, 3), &logits, n);
        for (i, &c) in h.iter().enumerate() {
            let f = c as f32 / n as f32;
            assert!((f - p[i]).abs() < 0.015, "token {i}: {f} vs {}", p[i]);
        }
        // Temperature 0.5 squares the odds: 0.7^2 / (0.01 + 0.04 + 0.49).
        let h = counts(cfg(0.5, 0, 1.0, 4), &logits, n);
        let f = h[2] as f32 / n as f32;
        assert!((f - 0.49 / 0.54).abs() < 0.015, "{f}");
    }

    #[test]
    fn top_k_and_top_p_restrict_the_support() {
        let logits = [0.0f32, 3.0, 1.0, 2.0, -1.0];
        let h = counts(cfg(2.0, 2, 1.0, 5), &logits, 5000);
        assert_eq!((h[0], h[2], h[4]), (0, 0, 0));
        assert!(h[1] > 0 && h[3] > 0);

        let p = [0.5f32, 0.3, 0.15, 0.05];
        let logits: Vec<f32> = p.iter().map(|x| libm::logf(*x)).collect();
        // 0.5 < 0.7 <= 0.8: the nucleus is {0, 1}, renormalised to 5/8, 3/8.
        let h = counts(cfg(1.0, 0, 0.7, 6), &logits, 20_000);
        assert_eq!((h[2], h[3]), (0, 0));
        assert!((h[0] as f32 / 20_000.0 - 0.625).abs() < 0.02);
        // Smallest p keeps only the top token.
        let h = counts(cfg(1.0, 0, 0.01, 6), &logits, 1000);
        assert_eq!(h[0], 1000);
    }

    #[test]
    fn rejects_bad_settings_and_logits() {
        assert_eq!(
            Sampler::new(cfg(-1.0, 0, 1.0, 0), 3).err(),
            Some(SamplerError::BadTemperature(-1.0))
        );
        assert!(matches!(
            Sampler::new(cfg(1.0, 0, 0.0, 0), 3),
            Err(SamplerError::BadTopP(_))
        ));
        assert!(matches!(
            Sampler::new(cfg(1.0, 0, 1.0, 0), 0),
            Err(SamplerError::BadVocabSize(0))
        ));
        let mut s = Sampler::new(cfg(1.0, 0, 1.0, 0), 3).unwrap();
        assert_eq!(
            s.sample(&[1.0]),
            Err(SamplerError::LogitsLength {
                expected: 3,
                got: 1
            })
        );
        assert!(s.sample(&[f32::NEG_INFINITY; 3]).is_ok());
    }
}
