#!/usr/bin/env python3
"""Oracle fixtures for the Llama 3.x / Qwen2 / Qwen3 architectures: tiny random-weight HF models
built offline from a config, their transformers logits (fp32, eager attention), converted to GGUF
F32 and Q8_0 by llama.cpp's own `convert_hf_to_gguf.py`, and llama.cpp's logits of both files.

Models (dim 128, 2 layers, 4 heads, 2 KV heads, ffn 256, vocab 512):
- llama3: LlamaConfig with rope_scaling llama3 (factor 8, low/high frequency factors 1/4,
  original context 32, so most frequencies are divided and the rule shows in 47 tokens);
- qwen2:  Qwen2Config (Q/K/V biases, tied head);
- qwen3:  Qwen3Config (per-head Q/K RMSNorm, head_dim 32).

The token ids are those of ../fixtures/oracle/tokens.bin, fed directly: the GGUF vocabulary is a
byte-level BPE made here (256 byte tokens + merges learnt from TEXTS), and the converter's pre-tokenizer hash
check is answered with a fixed name (`llama-bpe`, `qwen2`), as it cannot know this tokenizer.

Two venvs (CI needs neither; it reads the committed files):
    /opt/hf-venv/bin/python llm-runtime/scripts/arch_fixtures.py \
        --llama-cpp DIR/vendor/llama.cpp --llamacpp-python /opt/quant-venv/bin/python
hf-venv: torch transformers numpy (the converter runs here, with DIR's gguf-py on the path);
quant-venv: llama-cpp-python==0.3.36 numpy.

Output in fixtures/arch/: NAME-{f32,q8_0}.gguf (converter), NAME-q4_0.gguf (llama.cpp's quantizer
from the F32 file), NAME-hf.f32, NAME-llamacpp-{f32,q8_0,q4_0}.f32
(raw little-endian f32, [tokens, vocab] per prompt, prompts concatenated), manifest.json,
tokens-llamacpp.bin (llama.cpp's token ids of TEXTS with the llama3 and qwen2 vocabularies:
u32 n, then per text u32 byte length + UTF-8, u32 count + ids (llama3), u32 count + ids (qwen2)).
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
}


def build_hf(name, kw):
    import torch
    from transformers import (LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM,
                              Qwen3Config, Qwen3ForCausalLM)

    cls = {"llama3": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM),
           "qwen3": (Qwen3Config, Qwen3ForCausalLM)}[name]
    cfg = cls[0](**kw)
    cfg._attn_implementation = "eager"
    torch.manual_seed(SEED)
    m = cls[1](cfg).float().eval()
    g = torch.Generator().manual_seed(SEED + sum(map(ord, name)))
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "norm" in n:
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            elif n.endswith(".bias"):
                # Large enough that dropping them shows.
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif "embed_tokens" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif "q_proj" in n or "k_proj" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.15)
            elif "lm_head" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    rp = m.config.rope_parameters
    assert rp["rope_type"] == kw["rope_parameters"]["rope_type"], rp
    if name == "qwen2":
        assert m.model.layers[0].self_attn.q_proj.bias is not None
    if name == "qwen3":
        assert m.model.layers[0].self_attn.q_proj.bias is None
        assert m.model.layers[0].self_attn.q_norm.weight.shape == (32,)
    return m


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
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
import convert_hf_to_gguf
sys.argv = ["convert_hf_to_gguf.py"] + sys.argv[3:]
convert_hf_to_gguf.main()
"""


def convert(llama_cpp, pre, model_dir, out, outtype):
    subprocess.run([sys.executable, "-c", CONVERT, llama_cpp, pre, str(model_dir), "--outfile",
                    str(out), "--outtype", outtype], check=True)


# llama.cpp's own quantizer (`llama_model_quantize`, the library behind `llama-quantize`); Q4_0
# only: these 128-wide rows are too narrow for the K-quants (256-value blocks).
QUANTIZE = """
import ctypes, sys, llama_cpp
p = llama_cpp.llama_model_quantize_default_params()
p.ftype = 2  # LLAMA_FTYPE_MOSTLY_Q4_0
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-cpp", required=True, help="llama.cpp source tree (the sdist's vendor/llama.cpp)")
    ap.add_argument("--llamacpp-python", required=True, help="python with llama-cpp-python 0.3.36")
    ap.add_argument("--out", default=str(HERE.parent / "fixtures/arch"))
    args = ap.parse_args()
    import torch
    import transformers

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ps = prompts()
    manifest = dict(generator="llm-runtime/scripts/arch_fixtures.py", seed=SEED, vocab=VOCAB,
                    prompt_tokens=ps, versions=dict(torch=torch.__version__,
                                                    transformers=transformers.__version__,
                                                    llama_cpp_python="0.3.36"), models=[])
    for name, (pre, kw) in SPECS.items():
        m = build_hf(name, kw)
        with torch.no_grad():
            hf = np.concatenate([m(torch.tensor([p])).logits[0].float().numpy() for p in ps])
        hf.astype("<f4").tofile(out / f"{name}-hf.f32")
        with tempfile.TemporaryDirectory() as tmp:
            # The converter names the model after its directory: a fixed name, stable bytes.
            d = Path(tmp) / f"oracle-{name}"
            m.save_pretrained(d)
            save_tokenizer(d)
            for t in ["f32", "q8_0"]:
                convert(args.llama_cpp, pre, d, out / f"{name}-{t}.gguf", t)
        subprocess.run([args.llamacpp_python, "-c", QUANTIZE, str(out / f"{name}-f32.gguf"),
                        str(out / f"{name}-q4_0.gguf")], check=True)
        checks = {}
        for t in ["f32", "q8_0", "q4_0"]:
            lc = out / f"{name}-llamacpp-{t}.f32"
            subprocess.run([args.llamacpp_python, "-c", LLAMACPP, str(out / f"{name}-{t}.gguf"),
                            str(lc)] + [",".join(map(str, p)) for p in ps], check=True)
            checks[f"llamacpp_{t}_vs_hf"] = compare(np.fromfile(lc, "<f4").reshape(hf.shape), hf)
        cfg = {k: v for k, v in kw.items()}
        manifest["models"].append(dict(name=name, pre_tokenizer=pre, config=cfg, checks=checks))
        print(name, json.dumps(checks))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    # llama.cpp's tokenization with the two BPE pre-tokenizers these files carry.
    ids = {}
    for name in ["llama3", "qwen2"]:
        r = subprocess.run([args.llamacpp_python, "-c", TOKENIZE, str(out / f"{name}-f32.gguf"),
                            json.dumps(TEXTS)], check=True, capture_output=True, text=True)
        ids[name] = json.loads(r.stdout)
    b = struct.pack("<I", len(TEXTS))
    for i, t in enumerate(TEXTS):
        raw = t.encode()
        b += struct.pack("<I", len(raw)) + raw
        for name in ["llama3", "qwen2"]:
            b += struct.pack(f"<I{len(ids[name][i])}I", len(ids[name][i]), *ids[name][i])
    (out / "tokens-llamacpp.bin").write_bytes(b)


if __name__ == "__main__":
    main()
