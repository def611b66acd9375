#!/usr/bin/env python3
"""Oracle fixtures for llm-runtime: small random-weight LlamaForCausalLM models, written as GGUF
F32 and Q8_0, with logits from two implementations nobody here wrote:

- transformers (fp32, eager attention) for the F32 path,
- llama.cpp through llama-cpp-python (Q8_0 weights, F32 KV cache) for the Q8_0 path,

plus gguf-py Q8_0 bytes for edge-case blocks (the quantizer test).

Needs: torch transformers gguf sentencepiece numpy llama-cpp-python==0.3.36 (the shared venv at
/opt/fs-venv). CI does not run this; it reads the committed outputs under fixtures/oracle/.

    /opt/fs-venv/bin/python llm-runtime/scripts/fixtures.py [--out llm-runtime/fixtures/oracle]
    /opt/fs-venv/bin/python llm-runtime/scripts/fixtures.py --bench-shapes --out DIR   # speed models

Output (per model NAME): NAME-f32.gguf, NAME-q8_0.gguf, NAME-hf.f32 (transformers logits),
NAME-llamacpp-q8_0.f32 (llama.cpp logits); raw little-endian f32, [tokens, vocab] per prompt,
prompts concatenated in manifest order. manifest.json lists configs, prompts and token ids.
tokens.bin: u32 n_prompts, then per prompt u32 len + u32 token ids.
quant_cases.bin: u32 n_blocks, f32[n_blocks*32] input, then gguf-py's Q8_0 bytes [n_blocks*34].
"""

import argparse
import json
import os
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_gguf  # noqa: E402  (next to this script)

SEED = 1234
PROMPTS = [
    "def main():\n    return 42  # héllo wörld",
    "The quick brown fox, 1234 times:\tjumps!  Over   ünïcode ✓",
]


# --------------------------------------------------------------------------------------------
# Tokenizer: a SentencePiece BPE model trained on Python stdlib sources (no download needed).


def train_tokenizer(workdir: Path, vocab_size: int = 512):
    import sentencepiece as spm

    stdlib = Path(os.__file__).parent
    lines = []
    for name in ["textwrap.py", "argparse.py", "json/decoder.py", "string.py", "random.py"]:
        p = stdlib / name
        if p.exists():
            lines.extend(p.read_text(encoding="utf-8").splitlines())
    lines.extend(PROMPTS)
    corpus = workdir / "corpus.txt"
    corpus.write_text("\n".join(l for l in lines if l.strip()) + "\n", encoding="utf-8")
    prefix = workdir / "tok"
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        remove_extra_whitespaces=False,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    return spm.SentencePieceProcessor(model_file=str(prefix) + ".model")


# --------------------------------------------------------------------------------------------
# Models


def model_specs(vocab):
    base = dict(vocab=vocab, dim=64, ffn=128, layers=2, heads=4, ctx=256, eps=1e-5)
    return [
        dict(base, name="mha", kv_heads=4, theta=10000.0, tied=False, alignment=None),
        dict(base, name="gqa", kv_heads=2, theta=10000.0, tied=False, alignment=None),
        # Tied head and a non-default general.alignment (the reader must honour it).
        dict(base, name="tied", kv_heads=2, theta=10000.0, tied=True, alignment=256),
        dict(base, name="theta", kv_heads=2, theta=500000.0, tied=False, alignment=None),
    ]


def build_hf(spec):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=spec["vocab"],
        hidden_size=spec["dim"],
        intermediate_size=spec["ffn"],
        num_hidden_layers=spec["layers"],
        num_attention_heads=spec["heads"],
        num_key_value_heads=spec["kv_heads"],
        max_position_embeddings=spec["ctx"],
        rms_norm_eps=spec["eps"],
        rope_theta=spec["theta"],
        rope_parameters={"rope_type": "default", "rope_theta": spec["theta"]},
        tie_word_embeddings=spec["tied"],
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=1,
        eos_token_id=2,
    )
    cfg._attn_implementation = "eager"
    torch.manual_seed(SEED)
    m = LlamaForCausalLM(cfg).float().eval()
    g = torch.Generator().manual_seed(SEED + sum(map(ord, spec["name"])))
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "norm" in n:
                # Randomised norm weights, so a runtime that skips them fails.
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            elif "embed_tokens" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif "q_proj" in n or "k_proj" in n:
                # Large enough that attention is sharp, so RoPE mistakes show in the logits.
                p.copy_(torch.randn(p.shape, generator=g) * 0.15)
            elif "lm_head" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    # transformers 5 keeps the theta in rope_parameters; make sure the one we asked for is used.
    rp = getattr(m.config, "rope_parameters", None) or {}
    theta = rp.get("rope_theta", getattr(m.config, "rope_theta", None))
    assert abs(theta - spec["theta"]) < 1e-3, (theta, spec["theta"])
    if spec["tied"]:
        assert m.lm_head.weight.data_ptr() == m.model.embed_tokens.weight.data_ptr()
    return m


def write_gguf(path, spec, model, sp_vocab, qtype):
    llama_gguf.write_llama_gguf(path, spec, model, sp_vocab, name=f"oracle-{spec['name']}",
                                q8_0=qtype == "q8_0", tied=spec["tied"],
                                alignment=spec["alignment"])


def hf_logits(model, ids):
    import torch

    with torch.no_grad():
        out = model(torch.tensor([ids], dtype=torch.long)).logits[0]
    return out.float().numpy()


def llamacpp_logits(path, prompts_ids):
    from llama_cpp import Llama

    kw = dict(
        model_path=str(path),
        n_ctx=256,
        n_batch=256,
        n_threads=1,
        logits_all=True,
        type_k=0,  # GGML_TYPE_F32
        type_v=0,
        verbose=False,
    )
    try:
        m = Llama(flash_attn=False, **kw)
    except TypeError:
        m = Llama(**kw)
    outs = []
    for ids in prompts_ids:
        m.reset()
        m.eval(ids)
        outs.append(np.array(m.scores[: len(ids)], dtype=np.float32))
    return outs


def compare(a, b):
    d = np.abs(a - b)
    return dict(
        max_abs=float(d.max()),
        mean_abs=float(d.mean()),
        argmax_agree=float((a.argmax(-1) == b.argmax(-1)).mean()),
    )


# --------------------------------------------------------------------------------------------
# Quantizer edge cases


def quant_cases():
    import gguf

    rng = np.random.default_rng(SEED)
    blocks = []
    # Exact .5 ties with d = 1 (amax = 127): round-half-away vs half-even differ here.
    blocks.append(np.array([127.0] + [k + 0.5 for k in range(-15, 16)], dtype=np.float32))
    blocks.append(np.array([-127.0] + [-(k + 0.5) for k in range(31)], dtype=np.float32))
    # Ties with d = 2 (amax = 254).
    blocks.append(np.array([254.0] + [2 * k + 1.0 for k in range(-15, 16)], dtype=np.float32))
    blocks.append(np.zeros(32, dtype=np.float32))  # d = 0
    blocks.append(np.full(32, 1e-30, dtype=np.float32))  # subnormal fp16 scale
    blocks.append(np.full(32, -3.0e4, dtype=np.float32))  # large
    blocks.append(np.full(32, 1e-45, dtype=np.float32))  # f32 subnormal
    one_hot = np.zeros(32, dtype=np.float32)
    one_hot[17] = -0.001
    blocks.append(one_hot)
    for scale in [1e-3, 0.1, 1.0, 100.0]:
        for _ in range(8):
            blocks.append((rng.standard_normal(32) * scale).astype(np.float32))
    x = np.stack(blocks).astype(np.float32)
    q = gguf.quants.quantize(x.reshape(1, -1), gguf.GGMLQuantizationType.Q8_0).reshape(-1)
    assert q.size == x.shape[0] * 34
    return struct.pack("<I", x.shape[0]) + x.tobytes() + q.tobytes()


# --------------------------------------------------------------------------------------------
# Bench shapes (random weights, not committed)


def bench_specs(vocab):
    return [
        dict(name="stories15M", vocab=vocab, dim=288, ffn=768, layers=6, heads=6, kv_heads=6,
             ctx=1024, eps=1e-5, theta=10000.0, tied=False, alignment=None),
        dict(name="stories110M", vocab=vocab, dim=768, ffn=2048, layers=12, heads=12, kv_heads=12,
             ctx=1024, eps=1e-5, theta=10000.0, tied=False, alignment=None),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = Path(__file__).resolve().parent.parent
    ap.add_argument("--out", type=Path, default=here / "fixtures" / "oracle")
    ap.add_argument("--bench-shapes", action="store_true",
                    help="write stories15M/110M-shaped random Q8_0 GGUFs (32000 vocab) instead")
    ap.add_argument("--no-llamacpp", action="store_true", help="skip the llama.cpp oracle")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as td:
        if args.bench_shapes:
            # A real-size vocabulary; the tokenizer content does not matter for speed.
            sp = train_tokenizer(Path(td), vocab_size=512)
            tokens, scores, types = llama_gguf.sp_vocab(sp)
            n = 32000
            tokens = tokens + [f"<extra_{i}>" for i in range(n - len(tokens))]
            scores = scores + [-1e4] * (n - len(scores))
            types = types + [llama_gguf.UNUSED] * (n - len(types))
            for spec in bench_specs(n):
                m = build_hf(spec)
                path = args.out / f"{spec['name']}-q8_0.gguf"
                write_gguf(path, spec, m, (tokens, scores, types), "q8_0")
                print(f"wrote {path} ({path.stat().st_size} bytes)")
            return

        sp = train_tokenizer(Path(td))
        vocab = sp.get_piece_size()
        sp_vocab = llama_gguf.sp_vocab(sp)
        prompts_ids = [[1] + sp.encode(p) for p in PROMPTS]

    manifest = dict(
        generator="llm-runtime/scripts/fixtures.py",
        seed=SEED,
        prompts=PROMPTS,
        prompt_tokens=prompts_ids,
        vocab=vocab,
        models=[],
        versions={},
    )
    import gguf
    import torch
    import transformers

    manifest["versions"] = dict(torch=torch.__version__, transformers=transformers.__version__,
                                gguf=getattr(gguf, "__version__", "0.19.0"), numpy=np.__version__)
    have_llama = not args.no_llamacpp
    if have_llama:
        import llama_cpp

        manifest["versions"]["llama_cpp_python"] = llama_cpp.__version__

    for spec in model_specs(vocab):
        model = build_hf(spec)
        name = spec["name"]
        f32 = args.out / f"{name}-f32.gguf"
        q8 = args.out / f"{name}-q8_0.gguf"
        write_gguf(f32, spec, model, sp_vocab, "f32")
        write_gguf(q8, spec, model, sp_vocab, "q8_0")
        hf = [hf_logits(model, ids) for ids in prompts_ids]
        (args.out / f"{name}-hf.f32").write_bytes(np.concatenate(hf).astype("<f4").tobytes())
        entry = dict(spec, files=dict(f32=f32.name, q8_0=q8.name, hf=f"{name}-hf.f32"))
        if have_llama:
            lc_q8 = llamacpp_logits(q8, prompts_ids)
            lc_f32 = llamacpp_logits(f32, prompts_ids)
            (args.out / f"{name}-llamacpp-q8_0.f32").write_bytes(
                np.concatenate(lc_q8).astype("<f4").tobytes())
            entry["files"]["llamacpp_q8_0"] = f"{name}-llamacpp-q8_0.f32"
            entry["checks"] = dict(
                llamacpp_f32_vs_hf=compare(np.concatenate(lc_f32), np.concatenate(hf)),
                llamacpp_q8_0_vs_hf=compare(np.concatenate(lc_q8), np.concatenate(hf)),
            )
            print(name, json.dumps(entry["checks"]))
        manifest["models"].append(entry)

    (args.out / "quant_cases.bin").write_bytes(quant_cases())
    # Prompt token ids for the Rust tests: u32 n_prompts, then per prompt u32 len + u32 ids.
    toks = struct.pack("<I", len(prompts_ids))
    for ids in prompts_ids:
        toks += struct.pack(f"<I{len(ids)}I", len(ids), *ids)
    (args.out / "tokens.bin").write_bytes(toks)
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    total = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"fixtures in {args.out}: {total} bytes")


if __name__ == "__main__":
    sys.exit(main())
