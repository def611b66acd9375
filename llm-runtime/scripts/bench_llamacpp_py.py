#!/usr/bin/env python3
"""llama.cpp decode speed (tg) through llama-cpp-python, for models llama-bench is not built
for: one prompt token, then `--tg` tokens decoded one at a time, timed by llama.cpp's own perf
counters (`llama_perf_context`: C-side eval time only, so the Python loop does not count).

    python bench_llamacpp_py.py MODEL.gguf [--threads 1,2] [--tg 64] [--reps 3]

Prints one line per thread count: `LLAMACPP model=... threads=T tg=N best_ts=... avg_ts=...`.
"""

import argparse
import statistics

import llama_cpp


def run(path, threads, tg):
    from llama_cpp import Llama

    m = Llama(model_path=path, n_ctx=tg + 8, n_batch=tg + 8, n_threads=threads,
              n_threads_batch=threads, verbose=False)
    m.reset()
    m.eval([1])
    llama_cpp.llama_perf_context_reset(m.ctx)
    tok = 1
    for _ in range(tg):
        m.eval([tok])
        tok = (tok * 7 + 3) % 1000 + 3
    p = llama_cpp.llama_perf_context(m.ctx)
    assert p.n_eval == tg, (p.n_eval, tg)
    return tg / (p.t_eval_ms / 1000.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--tg", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    for t in [int(x) for x in a.threads.split(",")]:
        ts = [run(a.model, t, a.tg) for _ in range(a.reps)]
        print(f"LLAMACPP model={a.model} threads={t} tg={a.tg} best_ts={max(ts):.2f} "
              f"avg_ts={statistics.mean(ts):.2f}")


if __name__ == "__main__":
    main()
