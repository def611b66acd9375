//! Runs a GGUF model (llama, qwen2, qwen3, gemma2, gemma3, phi3) on the host, without the secure world.
//!
//! ```text
//! cargo run -p llm-runtime --release --example generate -- \
//!     [--model M.gguf] [--prompt P] [--n N] [--temp T] [--top-k K] [--top-p P] [--seed S]
//!     [--threads T] [--raw]
//! ```
//! The default model is the committed `models/fortunes-q8_0.gguf`; any supported architecture
//! runs the same way, e.g. `--model llm-runtime/fixtures/arch/gemma3-q8_0.gguf` (random weights,
//! its own SentencePiece vocabulary). `--temp 0` (the default) is
//! greedy. Text goes to stdout as it is produced; timings and the stop reason go to stderr.
//! Generation stops at an end-of-generation token, `--n` tokens, or a full context.

use std::io::Write;
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::time::Instant;

use llm_runtime::generate::Generator;
use llm_runtime::gguf::Gguf;
use llm_runtime::kernels::Kernels;
use llm_runtime::model::{self, Model, ModelOptions};
use llm_runtime::sampler::{Sampler, SamplerConfig};
use llm_runtime::tokenizer::{StreamDecoder, Tokenizer};

const USAGE: &str = "usage: generate [--model M.gguf] [--prompt P] [--n N] [--temp T] \
[--top-k K] [--top-p P] [--seed S] [--threads T] [--raw]";

struct Args {
    model: String,
    prompt: String,
    n: usize,
    sampling: SamplerConfig,
    threads: usize,
    /// Print the prompt's and the output's token ids too.
    raw: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        model: concat!(env!("CARGO_MANIFEST_DIR"), "/models/fortunes-q8_0.gguf").into(),
        prompt: "The meaning of life is".into(),
        n: 64,
        sampling: SamplerConfig::default(),
        threads: 1,
        raw: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--raw" {
            a.raw = true;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        let v = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {v}: {e}");
        match flag.as_str() {
            "--model" | "-m" => a.model = v,
            "--prompt" | "-p" => a.prompt = v,
            "--n" | "-n" => a.n = v.parse().map_err(|e| bad(&e))?,
            "--temp" => a.sampling.temperature = v.parse().map_err(|e| bad(&e))?,
            "--top-k" => a.sampling.top_k = v.parse().map_err(|e| bad(&e))?,
            "--top-p" => a.sampling.top_p = v.parse().map_err(|e| bad(&e))?,
            "--seed" => a.sampling.seed = v.parse().map_err(|e| bad(&e))?,
            "--threads" | "-t" => a.threads = v.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    Ok(a)
}

fn run(a: &Args) -> Result<(), String> {
    let storage =
        llm_runtime::gguf::AlignedBuf::read(&a.model).map_err(|e| format!("{}: {e}", a.model))?;
    let bytes = storage.as_bytes();
    let g = Gguf::parse(bytes).map_err(|e| format!("{}: {e}", a.model))?;
    let tok = Tokenizer::from_gguf(&g).map_err(|e| format!("tokenizer: {e}"))?;
    let (cfg, w) = model::load(&g).map_err(|e| format!("model: {e}"))?;
    let kernels = Kernels::detect().with_threads(a.threads);
    eprintln!(
        "model {}: {} params, kernels {}",
        a.model,
        cfg.n_params(),
        kernels.describe()
    );
    let opts = ModelOptions::for_config(&cfg);
    let mut m = Model::new(cfg, opts, kernels).map_err(|e| format!("model: {e}"))?;
    let mut sampler = Sampler::new(a.sampling, cfg.vocab_size).map_err(|e| format!("{e:?}"))?;

    let ids = tok.encode(&a.prompt, true, false);
    if a.raw {
        eprintln!("prompt ids {ids:?}");
    }
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{}", a.prompt);
    let _ = out.flush();

    // The prompt was printed already: keep the space the first new token may start with.
    let mut dec = StreamDecoder::continuing();
    let mut text = String::new();
    let mut generated = Vec::with_capacity(a.n);
    let start = Instant::now();
    let clock = || start.elapsed().as_nanos() as u64;
    let done = Generator {
        model: &mut m,
        weights: &w,
        tokenizer: &tok,
    }
    .generate(&mut sampler, &ids, a.n, &clock, |id| {
        generated.push(id);
        text.clear();
        dec.push(&tok, id, &mut text);
        let _ = write!(out, "{text}");
        let _ = out.flush();
        ControlFlow::Continue(())
    })
    .map_err(|e| format!("generate: {e}"))?;
    text.clear();
    dec.finish(&mut text);
    let _ = writeln!(out, "{text}");
    if a.raw {
        eprintln!("output ids {generated:?}");
    }
    let rate = |n: usize, ns: u64| n as f64 * 1e9 / (ns as f64).max(1.0);
    eprintln!(
        "prefill {} tokens {:.1} tok/s (first token after {:.1} ms), decode {} tokens {:.1} tok/s; \
         stopped: {:?}",
        done.prompt_tokens,
        rate(done.prompt_tokens, done.prefill_ticks),
        done.prefill_ticks as f64 / 1e6,
        done.generated,
        rate(done.generated.saturating_sub(1), done.decode_ticks),
        done.stop
    );
    Ok(())
}

fn main() -> ExitCode {
    match parse_args().and_then(|a| run(&a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
