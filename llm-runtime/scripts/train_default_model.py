#!/usr/bin/env python3
"""Trains the default model: a ~1.8 M parameter llama on Debian's `fortunes` collection.

  apt-get install fortunes fortunes-min      # the text (BSD licence, see models/LICENSE.md)
  /opt/fs-venv/bin/python llm-runtime/scripts/train_default_model.py [--minutes 12]

Steps: read every fortune (the `%`-separated entries of /usr/share/games/fortunes/*, minus the
ASCII-art files); train a SentencePiece BPE tokenizer (llama settings: byte fallback, identity
normalisation, whitespace runs kept, digits split); train `LlamaForCausalLM` on
`<s> fortune </s>` sequences with AdamW for a fixed wall-clock budget on the CPU; write
`models/fortunes-q8_0.gguf` with gguf-py (Q/K rows permuted for llama.cpp's pairwise RoPE, norms
F32, tied output head) and `models/fortunes-reference.json` with the greedy continuations of a
few prompts: from the f32 torch model, and from llama.cpp on the Q8_0 file when
llama-cpp-python is installed (the test `tests/default_model.rs` checks the runtime against it).
Deterministic for a given seed and step count, up to torch's CPU kernels.
"""

import argparse
import glob
import math
import os
import random
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
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


def vocab_arrays(sp):
    n = sp.get_piece_size()
    tokens = [sp.id_to_piece(i) for i in range(n)]
    scores = [sp.get_score(i) for i in range(n)]
    types = [2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i)
             else 5 if sp.is_unused(i) else 1 for i in range(n)]
    return tokens, scores, types


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


def permute_qk(w, n_head):
    """HF -> GGUF row permutation for llama.cpp's pairwise RoPE (as convert_hf_to_gguf.py)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(
        w.shape)


def write_gguf(path, model, vocab, meta):
    import gguf

    tokens, scores, types = vocab
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("fortunes-1.8M")
    w.add_description(meta)
    w.add_license("MIT OR Apache-2.0 (weights); training text BSD-3-Clause (Regents of the "
                  "University of California), see LICENSE.md")
    w.add_context_length(CFG["ctx"])
    w.add_embedding_length(CFG["dim"])
    w.add_block_count(CFG["layers"])
    w.add_feed_forward_length(CFG["ffn"])
    w.add_rope_dimension_count(CFG["dim"] // CFG["heads"])
    w.add_head_count(CFG["heads"])
    w.add_head_count_kv(CFG["kv_heads"])
    w.add_layer_norm_rms_eps(CFG["eps"])
    w.add_rope_freq_base(CFG["theta"])
    w.add_vocab_size(CFG["vocab"])
    w.add_file_type(7)
    w.add_quantization_version(2)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(True)
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    H, KV = CFG["heads"], CFG["kv_heads"]

    def put(name, arr, quantize):
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if quantize:
            q = gguf.quants.quantize(arr, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(name, arr)

    put("token_embd.weight", sd["model.embed_tokens.weight"], True)
    for l in range(CFG["layers"]):
        p, b = f"model.layers.{l}.", f"blk.{l}."
        put(b + "attn_norm.weight", sd[p + "input_layernorm.weight"], False)
        put(b + "attn_q.weight", permute_qk(sd[p + "self_attn.q_proj.weight"], H), True)
        put(b + "attn_k.weight", permute_qk(sd[p + "self_attn.k_proj.weight"], KV), True)
        put(b + "attn_v.weight", sd[p + "self_attn.v_proj.weight"], True)
        put(b + "attn_output.weight", sd[p + "self_attn.o_proj.weight"], True)
        put(b + "ffn_norm.weight", sd[p + "post_attention_layernorm.weight"], False)
        put(b + "ffn_gate.weight", sd[p + "mlp.gate_proj.weight"], True)
        put(b + "ffn_up.weight", sd[p + "mlp.up_proj.weight"], True)
        put(b + "ffn_down.weight", sd[p + "mlp.down_proj.weight"], True)
    put("output_norm.weight", sd["model.norm.weight"], False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


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
    write_gguf(path, model, vocab_arrays(sp), meta)
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
