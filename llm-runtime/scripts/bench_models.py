#!/usr/bin/env python3
"""Random-weight Q8_0 llama GGUFs of the stories15M and stories110M shapes, for speed runs.

Only numpy and gguf-py (no torch): weights ~ N(0, 0.02), norms ~ 1, a 32000-entry llama (SPM)
vocabulary of byte tokens and filler pieces, so llama.cpp loads the same file. Values do not
affect speed; the output head is untied, as in the real models. Q8_0 bytes come from gguf-py's
reference quantizer (byte-identical to llama-quantize, llm-facts.md sec. 1.1).

    python bench_models.py --out DIR [--only stories15M] [--quant q4_0,q4_k_m]

Writes DIR/<name>-q8_0.gguf unless it already exists. With `--quant`, also
DIR/<name>-<type>.gguf: the same random weights written as F32 and quantized by llama.cpp's
own quantizer (`llama_model_quantize`, needs llama-cpp-python); K-quants need widths that are
multiples of 256, so stories110M only.
"""

import argparse
from pathlib import Path

import numpy as np
import gguf

SHAPES = {
    # name: dim, ffn, layers, heads, kv_heads, vocab, ctx (llama2.c's stories checkpoints)
    "stories15M": (288, 768, 6, 6, 6, 32000, 256),
    "stories110M": (768, 2048, 12, 12, 12, 32000, 1024),
}


def vocab(n):
    tokens, scores, types = ["<unk>", "<s>", "</s>"], [0.0, 0.0, 0.0], [2, 3, 3]
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        scores.append(0.0)
        types.append(6)
    i = 0
    while len(tokens) < n:
        tokens.append(f"\u2581p{i}")
        scores.append(-float(i))
        types.append(1)
        i += 1
    return tokens, scores, types


# llama_ftype values (llama.h).
FTYPES = {"q4_0": 2, "q4_k_m": 15, "q5_k_m": 17}


def write(path, name, shape, seed, f32=False):
    dim, ffn, layers, heads, kv_heads, n_vocab, ctx = shape
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(f"bench-{name}-random")
    w.add_context_length(ctx)
    w.add_embedding_length(dim)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_rope_dimension_count(dim // heads)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(n_vocab)
    w.add_file_type(0 if f32 else 7)  # ALL_F32 / MOSTLY_Q8_0
    w.add_quantization_version(2)
    tokens, scores, types = vocab(n_vocab)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)

    def q(name, rows, cols):
        a = rng.standard_normal((rows, cols), dtype=np.float32) * 0.02
        if f32:
            w.add_tensor(name, a)
            return
        w.add_tensor(name, gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0),
                     raw_dtype=gguf.GGMLQuantizationType.Q8_0)

    def norm(name, n):
        w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32))

    kv_dim = dim // heads * kv_heads
    q("token_embd.weight", n_vocab, dim)
    for l in range(layers):
        b = f"blk.{l}."
        norm(b + "attn_norm.weight", dim)
        q(b + "attn_q.weight", dim, dim)
        q(b + "attn_k.weight", kv_dim, dim)
        q(b + "attn_v.weight", kv_dim, dim)
        q(b + "attn_output.weight", dim, dim)
        norm(b + "ffn_norm.weight", dim)
        q(b + "ffn_gate.weight", ffn, dim)
        q(b + "ffn_up.weight", ffn, dim)
        q(b + "ffn_down.weight", dim, ffn)
    norm("output_norm.weight", dim)
    q("output.weight", n_vocab, dim)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--only", choices=sorted(SHAPES), action="append")
    ap.add_argument("--quant", default="", help="comma-separated: " + ",".join(FTYPES))
    args = ap.parse_args()
    quants = [q for q in args.quant.split(",") if q]
    args.out.mkdir(parents=True, exist_ok=True)
    for i, (name, shape) in enumerate(SHAPES.items()):
        if args.only and name not in args.only:
            continue
        path = args.out / f"{name}-q8_0.gguf"
        if path.exists():
            print(f"have {path}")
            continue
        tmp = path.with_suffix(".tmp")
        write(tmp, name, shape, seed=1000 + i)
        tmp.rename(path)
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    for i, (name, shape) in enumerate(SHAPES.items()):
        # K-quants need rows that are multiples of 256 (llama.cpp would silently fall back).
        todo = [q for q in quants if not (args.out / f"{name}-{q}.gguf").exists()
                and ("_k" not in q or shape[0] % 256 == 0)]
        if (args.only and name not in args.only) or not todo:
            continue
        import ctypes

        import llama_cpp

        f32 = args.out / f"{name}-f32.tmp"
        write(f32, name, shape, seed=1000 + i, f32=True)
        for q in todo:
            path = args.out / f"{name}-{q}.gguf"
            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype = FTYPES[q]
            rc = llama_cpp.llama_model_quantize(str(f32).encode(), str(path).encode(),
                                                ctypes.byref(params))
            assert rc == 0, f"quantize {path}: {rc}"
            print(f"wrote {path} ({path.stat().st_size} bytes)")
        f32.unlink()


if __name__ == "__main__":
    main()
