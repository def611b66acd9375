#!/usr/bin/env python3
"""llama.cpp decode speed (tg) through llama-cpp-python, without building llama-bench: like
llama-bench's tgN, `--tg` tokens decoded one at a time from an empty context, each a bare
`llama_decode` call of a one-token batch (the low-level API, so Python adds only the call
overhead, a few microseconds per token), wall-clock timed; one warm-up run first.

    python bench_llamacpp_py.py MODEL.gguf [--threads 1,2] [--tg 64] [--reps 3]

Prints one line per thread count: `LLAMACPP model=... threads=T tg=N best_ts=... avg_ts=...`.
"""

import argparse
import statistics

import llama_cpp


def run(path, threads, tg, reps):
    import time

    from llama_cpp import Llama

    m = Llama(model_path=path, n_ctx=tg + 8, n_batch=tg + 8, n_threads=threads,
              n_threads_batch=threads, verbose=False)
    ctx = m._ctx.ctx
    out = []
    for rep in range(reps + 1):
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        tok = (llama_cpp.llama_token * 1)(1)
        t0 = time.perf_counter()
        for i in range(tg):
            rc = llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(tok, 1))
            assert rc == 0, rc
            tok[0] = (i * 7 + 3) % 1000 + 3
        dt = time.perf_counter() - t0
        if rep > 0:
            out.append(tg / dt)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--tg", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    for t in [int(x) for x in a.threads.split(",")]:
        ts = run(a.model, t, a.tg, a.reps)
        print(f"LLAMACPP model={a.model} threads={t} tg={a.tg} best_ts={max(ts):.2f} "
              f"avg_ts={statistics.mean(ts):.2f}")


if __name__ == "__main__":
    main()
