//! Prefill and decode speed of the runtime on one GGUF model, in llama-bench's terms.
//!
//! ```text
//! cargo bench -p llm-runtime --bench runtime -- --model M.gguf [--threads 1,2] [--pp 128]
//!     [--tg 64] [--reps 3] [--kernels auto|scalar|neon|sdot|smmla|avx2|avx512vnni]
//! ```
//!
//! Like `llama-bench -p 128 -n 64 -r 3`: `ppN` is one batch of N random tokens from an empty
//! context; `tgN` decodes N tokens one at a time from an empty context; one warm-up run, then
//! the mean and standard deviation of tokens/s over the repetitions. Prints one `RESULT` line per
//! test and a `MEMORY` line (machine-readable; `cargo xtask bench runtime` parses them).

use std::time::Instant;

use llm_runtime::gguf::Gguf;
use llm_runtime::kernels::{Kernels, Path};
use llm_runtime::model::{self, Model, ModelOptions};

struct Args {
    model: String,
    threads: Vec<usize>,
    pp: usize,
    tg: usize,
    reps: usize,
    kernels: String,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        model: String::new(),
        threads: vec![1, 2],
        pp: 128,
        tg: 64,
        reps: 3,
        kernels: "auto".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || it.next().ok_or(format!("{k} needs a value"));
        let num = |s: String| s.parse::<usize>().map_err(|e| format!("{s}: {e}"));
        match k.as_str() {
            "--model" => a.model = val()?,
            "--threads" => {
                a.threads = val()?
                    .split(',')
                    .map(|s| num(s.to_string()))
                    .collect::<Result<_, _>>()?
            }
            "--pp" => a.pp = num(val()?)?,
            "--tg" => a.tg = num(val()?)?,
            "--reps" => a.reps = num(val()?)?.max(1),
            "--kernels" => a.kernels = val()?,
            // `cargo bench` passes `--bench`; ignore it.
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.model.is_empty() {
        return Err("--model M.gguf is required".into());
    }
    Ok(a)
}

fn kernels(choice: &str) -> Result<Kernels, String> {
    if choice == "auto" {
        return Ok(Kernels::detect());
    }
    let p = Path::ALL
        .into_iter()
        .find(|p| p.name() == choice)
        .ok_or(format!("unknown kernel path {choice}"))?;
    // Matvec cannot use SMMLA; pair it with SDOT like `detect()` does.
    let mv = if p == Path::Smmla { Path::Sdot } else { p };
    Kernels::with_paths(mv, p).map_err(|e| e.to_string())
}

/// Peak resident set of this process (Linux `VmHWM`), in bytes.
fn peak_rss() -> Option<usize> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Mean, sample standard deviation and best of the per-repetition rates.
fn mean_sd(v: &[f64]) -> (f64, f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, var.sqrt(), v.iter().copied().fold(0.0, f64::max))
}

fn run() -> Result<(), String> {
    let a = parse_args()?;
    let bytes = std::fs::read(&a.model).map_err(|e| format!("{}: {e}", a.model))?;
    let g = Gguf::parse(&bytes).map_err(|e| format!("{}: {e}", a.model))?;
    let (cfg, w) = model::load(&g).map_err(|e| format!("{}: {e}", a.model))?;
    let weight_bytes = w.bytes();
    // Deterministic pseudo-random tokens (xorshift), like llama-bench's random prompt.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut tok = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % cfg.vocab_size as u64) as u32
    };
    let prompt: Vec<u32> = (0..a.pp).map(|_| tok()).collect();
    let decode_tokens: Vec<u32> = (0..a.tg).map(|_| tok()).collect();
    let mut report = None;
    for &t in &a.threads {
        let k = kernels(&a.kernels)?.with_threads(t);
        let paths = k.describe();
        let opts = ModelOptions {
            seq_len: a.pp.max(a.tg).max(1).min(cfg.context_length),
            max_batch: a.pp.max(1),
            all_logits: false,
        };
        let mut m = Model::new(cfg, opts, k).map_err(|e| e.to_string())?;
        report = Some(m.memory_report(weight_bytes));
        if a.pp > 0 {
            let mut rates = Vec::new();
            for rep in 0..=a.reps {
                m.reset();
                let t0 = Instant::now();
                m.prefill(&w, &prompt, 0).map_err(|e| e.to_string())?;
                let dt = t0.elapsed().as_secs_f64();
                if rep > 0 {
                    rates.push(a.pp as f64 / dt);
                }
            }
            let (mean, sd, best) = mean_sd(&rates);
            println!(
                "RESULT test=pp{} threads={t} kernels={paths} avg_ts={mean:.3} stddev_ts={sd:.3} \
                 best_ts={best:.3}",
                a.pp
            );
        }
        if a.tg > 0 {
            let mut rates = Vec::new();
            for rep in 0..=a.reps {
                m.reset();
                let t0 = Instant::now();
                for (pos, &tk) in decode_tokens.iter().enumerate() {
                    m.forward(&w, tk, pos).map_err(|e| e.to_string())?;
                }
                let dt = t0.elapsed().as_secs_f64();
                if rep > 0 {
                    rates.push(a.tg as f64 / dt);
                }
            }
            let (mean, sd, best) = mean_sd(&rates);
            println!(
                "RESULT test=tg{} threads={t} kernels={paths} avg_ts={mean:.3} stddev_ts={sd:.3} \
                 best_ts={best:.3}",
                a.tg
            );
        }
    }
    if let Some(r) = report {
        println!(
            "MEMORY weights={} kv_cache={} kv_bytes_per_token={} activations={} model_peak={} \
             peak_rss={}",
            r.weights,
            r.kv_cache,
            r.kv_bytes_per_token,
            r.activations,
            r.peak(),
            peak_rss().unwrap_or(0)
        );
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench runtime: {e}");
        std::process::exit(1);
    }
}
