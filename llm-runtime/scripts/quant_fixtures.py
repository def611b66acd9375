#!/usr/bin/env python3
"""Oracle fixtures for the sub-8-bit weight formats (Q4_0, Q4_K, Q5_K, Q6_K): a random-weight
llama model with K-quant-compatible widths (dim 256, ffn 512: ggml's K-quants need rows that are
multiples of 256, so the dim-64 oracle models of fixtures.py would fall back to Q5_0/Q8_0),
written as F32 GGUF by gguf-py, quantized by llama.cpp's own quantizer (`llama_model_quantize`,
the library behind `llama-quantize`) to Q4_0, Q4_K_M and Q5_K_M, with llama.cpp's logits for
each; plus random blocks of each format with gguf-py's dequantization (an implementation
nobody here wrote).

Needs: gguf sentencepiece numpy llama-cpp-python==0.3.36 (no torch). CI only reads the outputs.

    PY=/opt/quant-venv/bin/python; $PY llm-runtime/scripts/quant_fixtures.py \
        [--out llm-runtime/fixtures/quant]

Output:
- tiny256-{q4_0,q4_k_m,q5_k_m}.gguf and tiny256-{...}-llamacpp.f32 (raw little-endian f32
  logits, [tokens, 512] per prompt, prompts concatenated in the order of ../oracle/tokens.bin);
- dequant_cases.bin: per format u32 ggml type code, u32 n_blocks, the block bytes, then gguf-py's
  dequantized f32 values [n_blocks * values_per_block]; formats in the order Q4_0, Q4_K, Q5_K,
  Q6_K, then u32 0;
- q8_k_cases.bin: u32 n, f32 activations [n * 256], then ggml's quantize_row_q8_K_ref bytes
  [n * 292] (f32 d, 256 int8, 16 int16 sums);
- manifest.json: config, tensor types per file, package versions.
"""

import argparse
import ctypes
import json
import os
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixtures  # noqa: E402  (train_tokenizer, PROMPTS, llamacpp_logits)
import llama_gguf  # noqa: E402

SEED = 4242
CFG = dict(vocab=512, dim=256, ffn=512, layers=2, heads=4, kv_heads=2, ctx=256, eps=1e-5,
           theta=10000.0)
# llama_ftype values (llama.h).
FTYPES = {"q4_0": 2, "q4_k_m": 15, "q5_k_m": 17}


def random_weights(cfg):
    rng = np.random.default_rng(SEED)
    d, f, v = cfg["dim"], cfg["ffn"], cfg["vocab"]
    kv = d // cfg["heads"] * cfg["kv_heads"]

    def mat(rows, cols, gain):
        return (rng.standard_normal((rows, cols)) * gain / np.sqrt(cols)).astype(np.float32)

    def norm(n):
        return (0.5 + rng.random(n)).astype(np.float32)

    t = {"token_embd.weight": (rng.standard_normal((v, d)) * 0.5).astype(np.float32)}
    for l in range(cfg["layers"]):
        b = f"blk.{l}."
        t[b + "attn_norm.weight"] = norm(d)
        # Gains large enough that attention is sharp and the logits spread.
        t[b + "attn_q.weight"] = mat(d, d, 2.0)
        t[b + "attn_k.weight"] = mat(kv, d, 2.0)
        t[b + "attn_v.weight"] = mat(kv, d, 1.0)
        t[b + "attn_output.weight"] = mat(d, d, 1.0)
        t[b + "ffn_norm.weight"] = norm(d)
        t[b + "ffn_gate.weight"] = mat(f, d, 1.0)
        t[b + "ffn_up.weight"] = mat(f, d, 1.0)
        t[b + "ffn_down.weight"] = mat(d, f, 1.0)
    t["output_norm.weight"] = norm(d)
    t["output.weight"] = mat(v, d, 3.0)
    return t


def write_f32(path, cfg, tensors, vocab):
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    llama_gguf.add_general(w, "oracle-tiny256")
    llama_gguf.add_llama_hparams(w, cfg, q8_0=False)
    llama_gguf.add_sp_llama_tokenizer(w, vocab)
    for name, arr in tensors.items():
        w.add_tensor(name, arr)
    llama_gguf.finish(w)


def quantize(src, dst, ftype):
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 1
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(),
                                        ctypes.byref(params))
    assert rc == 0, f"llama_model_quantize({dst}) = {rc}"


def tensor_types(path):
    import gguf

    r = gguf.GGUFReader(str(path))
    return {t.name: t.tensor_type.name for t in r.tensors}


def dequant_cases():
    """Random blocks (random bytes, finite random fp16 scales) and gguf-py's dequantization."""
    import gguf

    rng = np.random.default_rng(SEED + 1)
    T = gguf.GGMLQuantizationType
    out = b""
    # (type, block bytes, offsets of fp16 scale fields)
    for qt, size, scale_offsets in [(T.Q4_0, 18, [0]), (T.Q4_K, 144, [0, 2]),
                                    (T.Q5_K, 176, [0, 2]), (T.Q6_K, 210, [208])]:
        n = 24
        raw = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
        for i in range(n):
            for off in scale_offsets:
                # Mostly ordinary magnitudes, a few extremes (fp16 max, subnormal, zero, sign).
                choice = [rng.standard_normal() * 0.05, 65504.0, -65504.0, 6e-8, 0.0, -1.0][
                    0 if i < 18 else i - 18]
                raw[i, off:off + 2] = np.frombuffer(np.float16(choice).tobytes(), np.uint8)
        values = gguf.quants.dequantize(raw.reshape(-1), qt).astype("<f4").reshape(-1)
        per = gguf.GGML_QUANT_SIZES[qt][0]
        assert values.size == n * per
        out += struct.pack("<II", int(qt), n) + raw.tobytes() + values.tobytes()
    return out + struct.pack("<I", 0)


def q8_k_cases():
    """Activation blocks and ggml's own `quantize_row_q8_K_ref` bytes (called in the
    libggml-base that llama-cpp-python ships), for a byte-exact test of our Q8_K quantizer."""
    import llama_cpp

    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    base = ctypes.CDLL(str(next(lib_dir.glob("libggml-base.so*"))))
    fn = base.quantize_row_q8_K_ref
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    rng = np.random.default_rng(SEED + 2)
    blocks = []
    # max = 127 gives iscale = -1 exactly: every k + 0.5 is a tie (nearest_int rounds to even).
    blocks.append(np.concatenate([[127.0], np.arange(-127, 128)[:255] + 0.5]))
    blocks.append(np.concatenate([[-127.0], -(np.arange(255) % 120 + 0.5)]))
    blocks.append(np.zeros(256))  # d = 0
    b = np.zeros(256)
    b[[3, 200]] = [2.5, -2.5]  # +-max tie: the first one wins
    blocks.append(b)
    blocks.append(np.full(256, 1e-30))  # tiny
    blocks.append(np.full(256, -3.0e4))  # one value everywhere
    for scale in [1e-3, 0.1, 1.0, 100.0]:
        for _ in range(4):
            blocks.append(rng.standard_normal(256) * scale)
    x = np.ascontiguousarray(np.stack(blocks), dtype=np.float32)
    out = np.zeros(x.shape[0] * 292, dtype=np.uint8)
    fn(x.ctypes.data, out.ctypes.data, x.size)
    # ggml leaves bsums unwritten for an all-zero block; define them as 0 (they are sums of qs).
    for i in range(x.shape[0]):
        blk = out[i * 292:(i + 1) * 292]
        qs = blk[4:260].view(np.int8).astype(np.int32)
        sums = qs.reshape(16, 16).sum(1).astype("<i2")
        if not x[i].any():
            blk[260:] = np.frombuffer(sums.tobytes(), np.uint8)
        assert (blk[260:].view("<i2") == sums).all()
    return struct.pack("<I", x.shape[0]) + x.tobytes() + out.tobytes()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = Path(__file__).resolve().parent.parent
    ap.add_argument("--out", type=Path, default=here / "fixtures" / "quant")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        sp = fixtures.train_tokenizer(td)
        vocab = llama_gguf.sp_vocab(sp)
        assert len(vocab[0]) == CFG["vocab"]
        prompts_ids = [[1] + sp.encode(p) for p in fixtures.PROMPTS]
        f32 = td / "tiny256-f32.gguf"
        write_f32(f32, CFG, random_weights(CFG), vocab)

        import gguf
        import llama_cpp

        manifest = dict(generator="llm-runtime/scripts/quant_fixtures.py", seed=SEED,
                        config=CFG, prompts=fixtures.PROMPTS, prompt_tokens=prompts_ids,
                        versions=dict(llama_cpp_python=llama_cpp.__version__,
                                      gguf=getattr(gguf, "__version__", "0.19.0"),
                                      numpy=np.__version__),
                        files={})
        f32_logits = np.concatenate(fixtures.llamacpp_logits(f32, prompts_ids))
        for name, ftype in FTYPES.items():
            q = args.out / f"tiny256-{name}.gguf"
            quantize(f32, q, ftype)
            lg = np.concatenate(fixtures.llamacpp_logits(q, prompts_ids))
            (args.out / f"tiny256-{name}-llamacpp.f32").write_bytes(lg.astype("<f4").tobytes())
            types = tensor_types(q)
            manifest["files"][name] = dict(
                gguf=q.name, logits=f"tiny256-{name}-llamacpp.f32", tensor_types=types,
                llamacpp_vs_llamacpp_f32=fixtures.compare(lg, f32_logits))
            print(name, sorted(set(types.values())),
                  json.dumps(manifest["files"][name]["llamacpp_vs_llamacpp_f32"]))

    (args.out / "dequant_cases.bin").write_bytes(dequant_cases())
    (args.out / "q8_k_cases.bin").write_bytes(q8_k_cases())
    (args.out / "manifest.json").write_text(
        json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    total = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"fixtures in {args.out}: {total} bytes")


if __name__ == "__main__":
    sys.exit(main())
