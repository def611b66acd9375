#!/usr/bin/env python3
"""Oracle fixtures for the Llama 3.x / Qwen2 / Qwen3 / Gemma 2 / Gemma 3 / Phi-3 architectures: tiny random-weight HF models
built offline from a config, their transformers logits (fp32, eager attention), converted to GGUF
F32 and Q8_0 by llama.cpp's own `convert_hf_to_gguf.py`, and llama.cpp's logits of both files.

Models (dim 128, 2 layers, 4 heads, 2 KV heads, ffn 256, vocab 512):
- llama3: LlamaConfig with rope_scaling llama3 (factor 8, low/high frequency factors 1/4,
  original context 32, so most frequencies are divided and the rule shows in 47 tokens);
- qwen2:  Qwen2Config (Q/K/V biases, tied head);
- qwen3:  Qwen3Config (per-head Q/K RMSNorm, head_dim 32);
- qwen3wide: Qwen3Config as Qwen3 0.6B is shaped: dim 64, 4 heads of 32 (wider than dim/heads),
  ffn 128, tied head.

Gemma and Phi-3 (SentencePiece vocabularies of 512 pieces trained here, `tokenizer.model`):
- gemma2: Gemma2Config, dim 64, 2 layers (local, global), 4 heads of 32 (wider than dim/heads),
  2 KV heads, ffn 128, sliding window 8, attention / final soft-caps 3 / 8 (small, so that
  they matter), norm weights around 0 (the file holds 1 + w);
- gemma3: Gemma3TextConfig, dim 64, 6 layers (5 local, 1 global), 2 heads of 48, 1 KV head,
  ffn 64, window 8, local RoPE base 10000, global base 1e6 with linear scaling 8;
- phi3: Phi3Config, dim 64, 2 layers, 2 heads of 32, 1 KV head, ffn 128 (fused gate/up),
  fused QKV, partial rotary 0.75 (24 of 32 dimensions), untied head.
Q4_K_M only (K-quant blocks are 256 wide): gemma2k, phi3k, gemma3k (2 layers, both local) and
qwen3widek (4 heads of 128 on a 256-wide model), those shapes at dim 256.
`--models` regenerates only the named models (the others' files and manifest entries stay).

The token ids are those of ../fixtures/oracle/tokens.bin, fed directly: the GGUF vocabulary is a
byte-level BPE made here (256 byte tokens + merges learnt from TEXTS), and the converter's pre-tokenizer hash
check is answered with a fixed name (`llama-bpe`, `qwen2`), as it cannot know this tokenizer.

Two venvs (CI needs neither; it reads the committed files):
    /opt/hf-venv/bin/python llm-runtime/scripts/arch_fixtures.py \
        --llama-cpp DIR/vendor/llama.cpp --llamacpp-python /opt/quant-venv/bin/python
hf-venv: torch transformers numpy (the converter runs here, with DIR's gguf-py on the path);
quant-venv: llama-cpp-python==0.3.36 numpy. One venv with all of them works too (/opt/fs-venv:
torch transformers gguf numpy sentencepiece tokenizers safetensors, and llama-cpp-python built from
the sdist, which also provides DIR).

Output in fixtures/arch/: NAME-{f32,q8_0}.gguf (converter), NAME-q4_0.gguf (llama.cpp's quantizer
from the F32 file), NAME-hf.f32, NAME-llamacpp-{f32,q8_0,q4_0}.f32
(raw little-endian f32, [tokens, vocab] per prompt, prompts concatenated), manifest.json,
tokens-llamacpp.bin (llama.cpp's token ids of TEXTS with the llama3 and qwen2 vocabularies:
u32 n, then per text u32 byte length + UTF-8, u32 count + ids (llama3), u32 count + ids (qwen2)),
tokens-spm-llamacpp.bin (the same layout for the gemma2 and phi3 SentencePiece vocabularies, over
TEXTS and 300 lines of llama.cpp's docs/build.md).
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SEED = 4321
HERE = Path(__file__).resolve().parent
VOCAB = 512


def prompts():
    b = (HERE.parent / "fixtures/oracle/tokens.bin").read_bytes()
    (n,) = struct.unpack_from("<I", b, 0)
    at, out = 4, []
    for _ in range(n):
        (k,) = struct.unpack_from("<I", b, at)
        out.append(list(struct.unpack_from(f"<{k}I", b, at + 4)))
        at += 4 + 4 * k
    return out


BASE = dict(vocab_size=VOCAB, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
            rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)

SPECS = {
    "llama3": ("llama-bpe", dict(BASE, tie_word_embeddings=False, attention_bias=False,
                                 mlp_bias=False,
                                 rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0,
                                                  "factor": 8.0, "low_freq_factor": 1.0,
                                                  "high_freq_factor": 4.0,
                                                  "original_max_position_embeddings": 32})),
    "qwen2": ("qwen2", dict(BASE, tie_word_embeddings=True, use_sliding_window=False,
                            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
    "qwen3": ("qwen2", dict(BASE, tie_word_embeddings=False, head_dim=32, attention_bias=False,
                            use_sliding_window=False,
                            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
    # Qwen3 0.6B's shape: heads wider than dim / n_heads (4 x 32 on a 64-wide model).
    "qwen3wide": ("qwen2", dict(BASE, hidden_size=64, intermediate_size=128,
                                tie_word_embeddings=True, head_dim=32, attention_bias=False,
                                use_sliding_window=False,
                                rope_parameters={"rope_type": "default",
                                                 "rope_theta": 1000000.0})),
    # llama.cpp does not read query_pre_attn_scalar (it uses the head width, or dim/heads for
    # the 27B models): the tiny models use the head width, as Gemma 2B/9B and Gemma 3 do.
    "gemma2": (None, dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128,
                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          head_dim=32, max_position_embeddings=256, rms_norm_eps=1e-6,
                          sliding_window=8, query_pre_attn_scalar=32,
                          attn_logit_softcapping=3.0, final_logit_softcapping=8.0,
                          pad_token_id=0, eos_token_id=1, bos_token_id=2,
                          rope_parameters={"rope_type": "default", "rope_theta": 10000.0})),
    "gemma3": (None, dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=64,
                          num_hidden_layers=6, num_attention_heads=2, num_key_value_heads=1,
                          head_dim=48, max_position_embeddings=256, rms_norm_eps=1e-6,
                          sliding_window=8, query_pre_attn_scalar=48,
                          pad_token_id=0, eos_token_id=1, bos_token_id=2,
                          rope_parameters={
                              "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                              "full_attention": {"rope_type": "linear", "factor": 8.0,
                                                 "rope_theta": 1000000.0}})),
    "phi3": (None, dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128,
                        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                        max_position_embeddings=256, original_max_position_embeddings=256,
                        rms_norm_eps=1e-5, tie_word_embeddings=False, pad_token_id=0,
                        bos_token_id=1, eos_token_id=2,
                        rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                         "partial_rotary_factor": 0.75})),
}
# Q4_K_M only (K-quant blocks are 256 wide: these are the gemma2 / phi3 / gemma3 / qwen3wide shapes
# at dim 256; their F32 and HF logits are not kept, llama.cpp's Q4_K_M logits are).
SPECS["gemma2k"] = (None, dict(SPECS["gemma2"][1], hidden_size=256, intermediate_size=256,
                               num_attention_heads=2, num_key_value_heads=1, head_dim=128,
                               query_pre_attn_scalar=128))
SPECS["phi3k"] = (None, dict(SPECS["phi3"][1], hidden_size=256, intermediate_size=256,
                             num_attention_heads=2, num_key_value_heads=1))
# gemma3k: the gemma3 shape at dim 256 with 2 layers (6 would not fit a small file); llama.cpp's
# default pattern (every 6th layer global) and HF's both make the two layers local.
SPECS["gemma3k"] = (None, dict(SPECS["gemma3"][1], hidden_size=256, intermediate_size=256,
                               num_hidden_layers=2, num_attention_heads=2,
                               num_key_value_heads=1, head_dim=128, query_pre_attn_scalar=128))
# qwen3widek: Qwen3 0.6B's shape at dim 256: 4 heads of 128 (q 512 wide), 2 KV heads.
SPECS["qwen3widek"] = ("qwen2", dict(SPECS["qwen3wide"][1], hidden_size=256,
                                     intermediate_size=256, num_attention_heads=4,
                                     num_key_value_heads=2, head_dim=128))
KQUANT_MODELS = ("gemma2k", "phi3k", "gemma3k", "qwen3widek")
SPM_MODELS = ("gemma2", "gemma3", "phi3", "gemma2k", "phi3k", "gemma3k")
NEW_MODELS = SPM_MODELS + ("qwen3wide",)


def build_hf(name, kw):
    import torch
    from transformers import (Gemma2Config, Gemma2ForCausalLM, Gemma3ForCausalLM,
                              Gemma3TextConfig, LlamaConfig, LlamaForCausalLM, Phi3Config,
                              Phi3ForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config,
                              Qwen3ForCausalLM)

    base = name[:-1] if name in KQUANT_MODELS else name
    cls = {"llama3": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM),
           "qwen3": (Qwen3Config, Qwen3ForCausalLM), "qwen3wide": (Qwen3Config, Qwen3ForCausalLM),
           "gemma2": (Gemma2Config, Gemma2ForCausalLM),
           "gemma3": (Gemma3TextConfig, Gemma3ForCausalLM),
           "phi3": (Phi3Config, Phi3ForCausalLM)}[base]
    cfg = cls[0](**kw)
    cfg._attn_implementation = "eager"
    torch.manual_seed(SEED)
    m = cls[1](cfg).float().eval()
    g = torch.Generator().manual_seed(SEED + sum(map(ord, name)))
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "norm" in n and name.startswith("gemma"):
                # Gemma's RMSNorm multiplies by 1 + w: w around 0 (the converter adds the 1).
                p.copy_(torch.rand(p.shape, generator=g) - 0.5)
            elif "norm" in n:
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            elif n.endswith(".bias"):
                # Large enough that dropping them shows.
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif "embed_tokens" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif "q_proj" in n or "k_proj" in n or "qkv_proj" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.15)
            elif "lm_head" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    rp = m.config.rope_parameters
    assert rp == kw["rope_parameters"] or rp["rope_type"] == kw["rope_parameters"]["rope_type"], rp
    if name == "qwen2":
        assert m.model.layers[0].self_attn.q_proj.bias is not None
    if name == "qwen3wide":
        assert m.model.layers[0].self_attn.q_proj.weight.shape == (128, 64)
    if name == "qwen3":
        assert m.model.layers[0].self_attn.q_proj.bias is None
        assert m.model.layers[0].self_attn.q_norm.weight.shape == (32,)
    if name == "gemma2":
        assert m.config.layer_types == ["sliding_attention", "full_attention"], m.config.layer_types
    if name == "gemma3":
        assert m.config.layer_types == ["sliding_attention"] * 5 + ["full_attention"]
        assert m.model.layers[0].self_attn.q_norm.weight.shape == (48,)
    if name == "phi3":
        assert m.model.layers[0].self_attn.qkv_proj.weight.shape == (64 + 2 * 32, 64)
        assert m.model.layers[0].mlp.gate_up_proj.weight.shape == (2 * 128, 64)
    return m


def save_spm(out, name):
    """A SentencePiece BPE vocabulary of VOCAB pieces with byte fallback (`tokenizer.model`):
    Gemma's special-token layout (pad 0, eos 1, bos 2, unk 3, no dummy prefix) or Llama's (unk
    0, bos 1, eos 2, dummy prefix, user-defined `<|endoftext|>`) for phi3. Trained on TEXTS and the converter's own sources,
    fixed files, so the pieces do not depend on this machine."""
    import sentencepiece as spm

    gemma = name.startswith("gemma")
    corpus = TEXTS * 8
    for f in sorted((Path(LLAMA_CPP) / "conversion").glob("[a-g]*.py")):
        corpus += f.read_text().splitlines()
    with tempfile.TemporaryDirectory() as d:
        inp = Path(d) / "train.txt"
        inp.write_text("\n".join(corpus))
        # llama.cpp's vocabulary loader looks up Phi-3's `<|endoftext|>` by text when the
        # model name says phi3.
        ids = dict(pad_id=0, eos_id=1, bos_id=2, unk_id=3) if gemma else dict(
            unk_id=0, bos_id=1, eos_id=2, pad_id=-1, user_defined_symbols=["<|endoftext|>"])
        spm.SentencePieceTrainer.train(
            input=str(inp), model_prefix=str(Path(d) / "m"), model_type="bpe",
            vocab_size=VOCAB, byte_fallback=True, split_digits=True,
            remove_extra_whitespaces=False, normalization_rule_name="identity",
            add_dummy_prefix=not gemma, allow_whitespace_only_pieces=True,
            character_coverage=1.0, minloglevel=2, num_threads=1,
            max_sentence_length=1 << 16, **ids)
        (Path(out) / "tokenizer.model").write_bytes((Path(d) / "m.model").read_bytes())


def save_tokenizer(out):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from tokenizers import trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # llama.cpp refuses a BPE vocabulary without merges: learn a few from the tokenizer texts.
    trainer = trainers.BpeTrainer(vocab_size=320, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TEXTS * 4, trainer)
    PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(out)


CONVERT = """
import sys
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/gguf-py")
pre = sys.argv[2]
import conversion.base as base
if pre:
    base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
import convert_hf_to_gguf
sys.argv = ["convert_hf_to_gguf.py"] + sys.argv[3:]
convert_hf_to_gguf.main()
"""


def convert(llama_cpp, pre, model_dir, out, outtype):
    subprocess.run([sys.executable, "-c", CONVERT, llama_cpp, pre or "", str(model_dir), "--outfile",
                    str(out), "--outtype", outtype], check=True)


# llama.cpp's own quantizer (`llama_model_quantize`, the library behind `llama-quantize`); Q4_0
# only: these 128-wide rows are too narrow for the K-quants (256-value blocks).
QUANTIZE = """
import ctypes, sys, llama_cpp
p = llama_cpp.llama_model_quantize_default_params()
p.ftype = int(sys.argv[3])  # llama_ftype: 2 Q4_0, 15 Q4_K_M
p.nthread = 1
assert llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p)) == 0
"""

LLAMACPP = """
import sys, numpy as np
from llama_cpp import Llama
path, out = sys.argv[1], sys.argv[2]
ids = [list(map(int, p.split(","))) for p in sys.argv[3:]]
m = Llama(model_path=path, n_ctx=256, n_batch=256, n_threads=1, logits_all=True, type_k=0,
          type_v=0, flash_attn=False, verbose=False)
outs = []
for p in ids:
    m.reset()
    m.eval(p)
    outs.append(np.array(m.scores[: len(p)], dtype=np.float32))
np.concatenate(outs).astype("<f4").tofile(out)
"""


TEXTS = [
    "def main():\n    return 42  # h\u00e9llo w\u00f6rld",
    "The quick brown fox, 1234 times:\tjumps!  Over   \u00fcn\u00efcode \u2713",
    "I'M  12345 ok's  \n\n  x+=1;\r\n 2026-12-03 3.14159 \u0661\u0662\u0663 ABC'LL",
    "    for t in [\"f32\", \"q8_0\"]:\n        print(t)  \n",
]

TOKENIZE = """
import json, sys
from llama_cpp import Llama
m = Llama(model_path=sys.argv[1], vocab_only=True, verbose=False)
texts = json.loads(sys.argv[2])
print(json.dumps([m.tokenize(t.encode(), add_bos=False, special=False) for t in texts]))
"""


def compare(a, b):
    d = np.abs(a - b)
    return dict(max_abs=float(d.max()), mean_abs=float(d.mean()),
                argmax_agree=float((a.argmax(-1) == b.argmax(-1)).mean()))


LLAMA_CPP = None


def main():
    global LLAMA_CPP
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-cpp", required=True, help="llama.cpp source tree (the sdist's vendor/llama.cpp)")
    ap.add_argument("--llamacpp-python", required=True, help="python with llama-cpp-python 0.3.36")
    ap.add_argument("--out", default=str(HERE.parent / "fixtures/arch"))
    ap.add_argument("--models", default=",".join(SPECS), help="comma-separated subset")
    args = ap.parse_args()
    LLAMA_CPP = args.llama_cpp
    only = args.models.split(",")
    import torch
    import transformers

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ps = prompts()
    versions = dict(torch=torch.__version__, transformers=transformers.__version__,
                    llama_cpp_python="0.3.36")
    manifest = dict(generator="llm-runtime/scripts/arch_fixtures.py", seed=SEED, vocab=VOCAB,
                    prompt_tokens=ps, versions=versions, models=[])
    if (out / "manifest.json").exists() and len(only) < len(SPECS):
        manifest = json.loads((out / "manifest.json").read_text())
        manifest["models"] = [e for e in manifest["models"] if e["name"] not in only]
    for name, (pre, kw) in SPECS.items():
        if name not in only:
            continue
        m = build_hf(name, kw)
        with torch.no_grad():
            hf = np.concatenate([m(torch.tensor([p])).logits[0].float().numpy() for p in ps])
        if name in KQUANT_MODELS:
            checks = kquant(args, m, name, pre, hf, out, ps)
            manifest["models"].append(dict(name=name, pre_tokenizer=pre, versions=versions,
                                           config=dict(kw), checks=checks))
            print(name, json.dumps(checks))
            continue
        hf.astype("<f4").tofile(out / f"{name}-hf.f32")
        with tempfile.TemporaryDirectory() as tmp:
            # The converter names the model after its directory: a fixed name, stable bytes.
            d = Path(tmp) / f"oracle-{name}"
            m.save_pretrained(d)
            if name in SPM_MODELS:
                save_spm(d, name)
            else:
                save_tokenizer(d)
            for t in ["f32", "q8_0"]:
                convert(args.llama_cpp, pre, d, out / f"{name}-{t}.gguf", t)
        subprocess.run([args.llamacpp_python, "-c", QUANTIZE, str(out / f"{name}-f32.gguf"),
                        str(out / f"{name}-q4_0.gguf"), "2"], check=True)
        checks = {}
        for t in ["f32", "q8_0", "q4_0"]:
            lc = out / f"{name}-llamacpp-{t}.f32"
            subprocess.run([args.llamacpp_python, "-c", LLAMACPP, str(out / f"{name}-{t}.gguf"),
                            str(lc)] + [",".join(map(str, p)) for p in ps], check=True)
            checks[f"llamacpp_{t}_vs_hf"] = compare(np.fromfile(lc, "<f4").reshape(hf.shape), hf)
        cfg = {k: v for k, v in kw.items()}
        entry = dict(name=name, pre_tokenizer=pre, config=cfg, checks=checks)
        if name in NEW_MODELS:
            entry["versions"] = versions
        manifest["models"].append(entry)
        print(name, json.dumps(checks))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    if "gemma2" in only and "phi3" in only:
        write_token_ids(args, out, ["gemma2", "phi3"], "tokens-spm-llamacpp.bin", spm_texts())
    if "llama3" in only and "qwen2" in only:
        write_token_ids(args, out, ["llama3", "qwen2"], "tokens-llamacpp.bin")


def kquant(args, m, name, pre, hf, out, ps):
    """NAME-q4_k_m.gguf (llama.cpp's quantizer from a temporary F32 conversion) and its
    llama.cpp logits; returns the check against transformers."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / f"oracle-{name}"
        m.save_pretrained(d)
        if name in SPM_MODELS:
            save_spm(d, name)
        else:
            save_tokenizer(d)
        f32 = Path(tmp) / "f32.gguf"
        convert(args.llama_cpp, pre, d, f32, "f32")
        q = out / f"{name}-q4_k_m.gguf"
        subprocess.run([args.llamacpp_python, "-c", QUANTIZE, str(f32), str(q), "15"], check=True)
    lc = out / f"{name}-llamacpp-q4_k_m.f32"
    subprocess.run([args.llamacpp_python, "-c", LLAMACPP, str(q), str(lc)]
                   + [",".join(map(str, p)) for p in ps], check=True)
    return {"llamacpp_q4_k_m_vs_hf": compare(np.fromfile(lc, "<f4").reshape(hf.shape), hf)}


def spm_texts():
    """TEXTS and 300 lines the vocabularies were not trained on (llama.cpp's docs/build.md:
    markdown, shell, paths, runs of spaces), a few with leading spaces and unicode."""
    lines = (Path(LLAMA_CPP) / "docs/build.md").read_text().splitlines()
    extra = [ln for ln in lines if ln.strip()][:300]
    return TEXTS + extra + ["  leading", "\u00fcber na\u00efve caf\u00e9 \U0001F600 \u4e2d\u6587",
                            "tabs\tand\nnewlines\n\n", " ", "", "a  b   c    d"]


def write_token_ids(args, out, names, file, texts=None):
    # llama.cpp's tokenization with two of the vocabularies these files carry.
    texts = TEXTS if texts is None else texts
    ids = {}
    for name in names:
        r = subprocess.run([args.llamacpp_python, "-c", TOKENIZE, str(out / f"{name}-f32.gguf"),
                            json.dumps(texts)], check=True, capture_output=True, text=True)
        ids[name] = json.loads(r.stdout)
    b = struct.pack("<I", len(texts))
    for i, t in enumerate(texts):
        raw = t.encode()
        b += struct.pack("<I", len(raw)) + raw
        for name in names:
            b += struct.pack(f"<I{len(ids[name][i])}I", len(ids[name][i]), *ids[name][i])
    (out / file).write_bytes(b)


if __name__ == "__main__":
    main()
