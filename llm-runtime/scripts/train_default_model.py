#!/usr/bin/env python3
"""Trains the default model: a ~1.8 M parameter llama on Debian's `fortunes` collection.

  apt-get install fortunes fortunes-min      # the text (BSD licence, see models/LICENSE.md)
  /opt/fs-venv/bin/python llm-runtime/scripts/train_default_model.py [--minutes 12]

Steps: read every fortune (the `%`-separated entries of /usr/share/games/fortunes/*, minus the
ASCII-art files); train a SentencePiece BPE tokenizer (llama settings: byte fallback, identity
normalisation, whitespace runs kept, digits split); train `LlamaForCausalLM` on
`<s> fortune </s>` sequences with AdamW for a fixed wall-clock budget on the CPU; write
`models/fortunes-q8_0.gguf` with llama_gguf.py (Q/K rows permuted for llama.cpp's pairwise RoPE,
norms F32, tied output head) and `models/fortunes-reference.tsv` with the greedy continuations of
a few prompts: from the f32 torch model, and from llama.cpp on the Q8_0 file when
llama-cpp-python is installed (the test `tests/default_model.rs` checks the runtime against it).
Deterministic for a given seed and step count, up to torch's CPU kernels.

Export only, no training: `--reference-only --out DIR` reloads `--work`'s model.pt. The committed
model's run saved no `minutes`, so add `--minutes 15` to reproduce its files byte for byte.
"""

import argparse
import glob
import math
import os
import random
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import llama_gguf  # noqa: E402  (next to this script)

MODELS = os.path.join(HERE, "..", "models")
FORTUNES = "/usr/share/games/fortunes"
SKIP = {"ascii-art", "art"}
LR = 3e-3
PROMPTS = ["The meaning of life is", "A computer", "Q: Why did the chicken cross the road?\nA:"]

CFG = dict(vocab=1024, dim=192, ffn=512, layers=4, heads=6, kv_heads=2, ctx=256, theta=10000.0,
           eps=1e-5)


def read_fortunes():
    out = []
    for path in sorted(glob.glob(os.path.join(FORTUNES, "*"))):
        name = os.path.basename(path)
        if "." in name or name in SKIP or os.path.isdir(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        for entry in text.split("\n%\n"):
            entry = entry.strip("\n%").rstrip()
            if entry.strip():
                out.append(entry)
    if not out:
        raise SystemExit("no fortunes: apt-get install fortunes fortunes-min")
    return out


def train_tokenizer(fortunes, workdir):
    import sentencepiece as spm

    if os.path.exists(os.path.join(workdir, "sp.model")):
        return spm.SentencePieceProcessor(model_file=os.path.join(workdir, "sp.model"))

    inp = os.path.join(workdir, "fortunes.txt")
    with open(inp, "w") as f:
        f.write("\n".join(fortunes))
    spm.SentencePieceTrainer.train(
        input=inp, model_prefix=os.path.join(workdir, "sp"), model_type="bpe",
        vocab_size=CFG["vocab"], byte_fallback=True, split_digits=True,
        remove_extra_whitespaces=False, normalization_rule_name="identity",
        allow_whitespace_only_pieces=True, character_coverage=0.9995, unk_id=0, bos_id=1,
        eos_id=2, pad_id=-1, minloglevel=2, num_threads=1, max_sentence_length=1 << 16)
    return spm.SentencePieceProcessor(model_file=os.path.join(workdir, "sp.model"))


def build_model(seed):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=CFG["vocab"], hidden_size=CFG["dim"], intermediate_size=CFG["ffn"],
        num_hidden_layers=CFG["layers"], num_attention_heads=CFG["heads"],
        num_key_value_heads=CFG["kv_heads"], max_position_embeddings=CFG["ctx"],
        rms_norm_eps=CFG["eps"], rope_theta=CFG["theta"], tie_word_embeddings=True,
        bos_token_id=1, eos_token_id=2, attention_bias=False, mlp_bias=False)
    return LlamaForCausalLM(cfg)


def train(model, data, minutes, seed, batch=16, seq=128):
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n_val = len(data) // 20
    val, tr = data[:n_val], data[n_val:]
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.1)
    budget = minutes * 60
    t0 = time.time()
    step = 0
    warm = 100

    def get(src, b):
        ix = rng.integers(0, len(src) - seq - 1, b)
        x = np.stack([src[i:i + seq + 1] for i in ix])
        return torch.from_numpy(x).long()

    def val_loss():
        model.eval()
        with torch.no_grad():
            xs = get(val, 64)
            loss = model(input_ids=xs[:, :-1], labels=xs[:, :-1]).loss.item()
        model.train()
        return loss

    model.train()
    while True:
        el = time.time() - t0
        if el > budget:
            break
        frac = el / budget
        lr = LR * min(1.0, (step + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        xs = get(tr, batch)
        loss = model(input_ids=xs[:, :-1], labels=xs[:, :-1]).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0:
            print(f"step {step:5d}  {el:6.0f}s  lr {lr:.2e}  train {loss.item():.3f}  "
                  f"val {val_loss():.3f}", flush=True)
        step += 1
    final = val_loss()
    print(f"done: {step} steps, {step * batch * seq / 1e6:.1f} M tokens, val loss {final:.3f}")
    return step, final


def write_gguf(path, model, vocab, meta):
    llama_gguf.write_llama_gguf(
        path, CFG, model, vocab, name="fortunes-1.8M", q8_0=True, tied=True, description=meta,
        license="MIT OR Apache-2.0 (weights); training text BSD-3-Clause (Regents of the "
                "University of California), see LICENSE.md",
        add_space_prefix=True)


def torch_greedy(model, ids, n):
    import torch

    model.eval()
    out = list(ids)
    with torch.no_grad():
        for _ in range(n):
            logits = model(input_ids=torch.tensor([out])).logits[0, -1]
            out.append(int(torch.argmax(logits)))
    return out[len(ids):]


def llamacpp_greedy(path, ids, n):
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    m = Llama(model_path=path, n_ctx=CFG["ctx"], n_threads=1, logits_all=True, verbose=False,
              type_k=0, type_v=0, flash_attn=False)
    out = []
    m.reset()
    m.eval(list(ids))
    for _ in range(n):
        tok = int(np.argmax(m.scores[m.n_tokens - 1]))
        out.append(tok)
        m.eval([tok])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=12.0)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=MODELS)
    ap.add_argument("--work", default="/tmp/fortunes-work",
                    help="keeps sp.model and the torch weights, for --reference-only")
    ap.add_argument("--reference-only", action="store_true",
                    help="reload the trained model from --work, rewrite the GGUF and references")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    fortunes = read_fortunes()
    random.Random(args.seed).shuffle(fortunes)
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    if not args.reference_only and os.path.exists(os.path.join(args.work, "sp.model")):
        os.remove(os.path.join(args.work, "sp.model"))
    sp = train_tokenizer(fortunes, args.work)
    data = []
    for f in fortunes:
        data += [1] + sp.encode(f) + [2]
    data = np.array(data, dtype=np.int32)
    print(f"{len(fortunes)} fortunes, {len(data)} tokens")
    model = build_model(args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{n_params / 1e6:.2f} M parameters")
    state = os.path.join(args.work, "model.pt")
    if args.reference_only:
        saved = torch.load(state)
        model.load_state_dict(saved["model"])
        steps, val = saved["steps"], saved["val"]
        args.minutes = saved.get("minutes", args.minutes)
    else:
        steps, val = train(model, data, args.minutes, args.seed)
        torch.save({"model": model.state_dict(), "steps": steps, "val": val,
                    "minutes": args.minutes}, state)
    meta = (f"llama {CFG}, {n_params} params, trained {args.minutes} min ({steps} steps) on Debian "
            f"fortunes, val loss {val:.3f}")
    path = os.path.join(args.out, "fortunes-q8_0.gguf")
    write_gguf(path, model, llama_gguf.sp_vocab(sp), meta)
    print(f"wrote {path}: {os.path.getsize(path)} bytes")

    n = 48
    lines = [f"# {meta}", "# prompt (utf-8 hex)\tprompt ids\ttorch f32 greedy\tllama.cpp Q8_0 greedy"]
    for p in PROMPTS:
        ids = [1] + sp.encode(p)
        t = torch_greedy(model, ids, n)
        l = llamacpp_greedy(path, ids, n)
        print(repr(p), "->", repr(sp.decode(t)))
        if l is not None:
            agree = next((i for i, (a, b) in enumerate(zip(t, l)) if a != b), n)
            print(f"   llama.cpp Q8_0 agrees with torch for {agree}/{n} tokens")
        ids_s = lambda v: " ".join(map(str, v)) if v is not None else "-"
        lines.append("\t".join([p.encode().hex(), ids_s(ids), ids_s(t), ids_s(l)]))
    with open(os.path.join(args.out, "fortunes-reference.tsv"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
