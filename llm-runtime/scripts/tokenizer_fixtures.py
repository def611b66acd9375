#!/usr/bin/env python3
"""Tokenizer parity fixtures: vocab-only GGUF files plus the reference tokenizers' ids.

Makes three tokenizers (and checks the default model's, see build_fortunes), trained here so no
third-party vocabulary (or its licence) is involved:
  spm       SentencePiece BPE, llama-style settings (byte fallback, identity normalisation,
            remove_extra_whitespaces=False, split digits, two user-defined pieces); reference =
            the `sentencepiece` package.
  bpe-llama3  byte-level BPE with the llama 3 split regex and ignore_merges; reference = HF
            `tokenizers`.
  bpe-gpt2  byte-level BPE with the GPT-2 regex; reference = HF `tokenizers`.

Each is written as a vocab-only GGUF (llama_gguf.py, the keys llama.cpp reads) and every test
string is encoded by the reference into `<name>.cases`: one line per string, `hex(utf8)<TAB>ids`.
The Rust test (`tests/tokenizer_parity.rs`) loads the GGUF through the crate's own reader and
must reproduce every line.

Training text: Debian's `fortunes` collection (apt-get install fortunes fortunes-min) plus the
generated strings of a different seed. Needs: sentencepiece, tokenizers, gguf (the shared venv).
Run: python3 llm-runtime/scripts/tokenizer_fixtures.py [--out llm-runtime/fixtures/tokenizer]
"""

import argparse
import glob
import json
import os
import random
import sys
import tempfile

import sentencepiece as spm
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_gguf  # noqa: E402  (next to this script)

LLAMA3_PAT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

UNICODE = [
    "héllo wörld", "naïve café", "Ærøskøbing", "Καλημέρα κόσμε", "Привет, мир!", "你好，世界",
    "こんにちは世界", "안녕하세요", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก",
    "👍🏽 🎉 👨‍👩‍👧", "∑ x² ≤ ∞", "e\u0301 vs é", "Ⅻ ⅓ ²³", "１２３ＡＢＣ", "٣٤٥ ۱۲۳", "a\u00a0b",
    "x\u3000y", "zero\u200bwidth", "\ufeffbom", "ﬁ ligature", "Ünïcödé", "straße", "İstanbul",
    "ǅemal", "ŉ", "\u2581already escaped", "tab\tsep", "«quotes» „low“ ‘single’", "€100 £5 ¥3",
    "🙂🙃😉", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "Ελλάδα's", "I'M CAPS'LL", "ℕ ℤ ℚ ℝ", "ꙮ", "ᚠᛇᚻ", "ⓐⓑⓒ",
]
WORDS = (
    "the of and to in is you that it he was for on are as with his they at be this have from or "
    "one had by word but not what all were we when your can said there use an each which she do "
    "how their if will up other about out many then them these so some her would make like him "
    "into time has look two more write go see number no way could people my than first water been "
    "call who oil its now find long down day did get come made may part don't it's we'll they're "
    "I've"
).split()
CODE = [
    "def {a}({b}, {c}=3):\n    return {b} + {c}\n",
    "fn {a}(x: &mut [u8]) -> Result<(), Error> {{\n    x[0] = 0x{n:X};\n    Ok(())\n}}",
    "if ({a} && !{b}) {{ return -{n}; }}",
    "SELECT * FROM {a} WHERE id = {n};",
    "let {a} = '{b}\\'s';",
    "#include <stdio.h>\nint main(void) {{ printf(\"%d\\n\", {n}); }}",
    "    for {a} in range({n}):\n        print({a}, end='')",
    "{a}.{b}({c}) // TODO: fix {n}",
    "<div class=\"{a}\">{b}</div>",
    "$ cargo run --release -- --n {n}",
    "x = [{n}, {n}, {n}]  # héllo wörld",
    "\t\t{a}:\n\t\t\t{b} = {c}\r\n",
    "/* {a} */ const {b}: u32 = {n}_000;",
    "{{\"{a}\": [{n}, null, true], \"{b}\": \"{c}\"}}",
]
SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\u00a0", "\u3000", "    ", " \t "]
SPECIAL_TEXT = ["<s>", "</s>", "<unk>", "<sep>", "<tool>", "<|begin_of_text|>", "<|end_of_text|>"]


def ident(r):
    return "_".join(r.choice(WORDS).replace("'", "") for _ in range(r.randint(1, 2)))


def number(r):
    k = r.randint(0, 6)
    if k == 0:
        return str(r.randint(0, 10 ** r.randint(1, 20)))
    if k == 1:
        return f"{r.uniform(-1000, 1000):.{r.randint(1, 6)}f}"
    if k == 2:
        return f"{r.randint(1, 999)},{r.randint(0, 999):03},{r.randint(0, 999):03}"
    if k == 3:
        return f"{r.randint(1900, 2100)}-{r.randint(1, 12):02}-{r.randint(1, 28):02}"
    if k == 4:
        return f"0x{r.getrandbits(32):08X}"
    if k == 5:
        return f"{ident(r)}{r.randint(0, 99999)}{ident(r)}"
    return f"+{r.randint(1, 99)} {r.randint(100, 999)} {r.randint(1000, 9999)}"


def make_strings(seed, fortune_lines):
    r = random.Random(seed)
    out = ["", " ", "  ", "\n", "\t", "a", "Hello world", "Hello  world", " leading", "trailing ",
           "   ", "\n\n\n", "don't stop", "1234567890", "<s>hi</s>", "a<sep>b<tool>c"]
    out += r.sample(fortune_lines, min(300, len(fortune_lines)))
    for _ in range(220):  # unicode
        parts = [r.choice(UNICODE) for _ in range(r.randint(1, 4))]
        out.append(r.choice(["", " "]) + r.choice([" ", "", "\n", ", "]).join(parts))
    for _ in range(200):  # whitespace runs
        s = ""
        for _ in range(r.randint(1, 6)):
            s += "".join(r.choice(SPACES) for _ in range(r.randint(0, 3))) + r.choice(WORDS)
        out.append(s + "".join(r.choice(SPACES) for _ in range(r.randint(0, 3))))
    for _ in range(200):  # digits
        out.append(" ".join(number(r) if r.random() < 0.6 else r.choice(WORDS)
                            for _ in range(r.randint(1, 6))))
    for _ in range(250):  # code
        t = r.choice(CODE)
        indent = r.choice(["", "    ", "\t", "        "])
        out.append(indent + t.format(a=ident(r), b=ident(r), c=ident(r), n=r.randint(0, 99999)))
    for _ in range(60):  # special-token texts inside text
        out.append(r.choice(WORDS) + r.choice(SPECIAL_TEXT) + r.choice(["", " "]) + r.choice(WORDS))
    return out


def fortune_corpus():
    lines = []
    for path in sorted(glob.glob("/usr/share/games/fortunes/*")):
        if os.path.splitext(path)[1] in (".dat", ".u8") or os.path.isdir(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.rstrip("\n")
                if line and line != "%":
                    lines.append(line)
    if not lines:
        raise SystemExit("no fortunes found: apt-get install fortunes fortunes-min")
    return lines


def write_cases(path, strings, ids):
    with open(path, "w") as f:
        for s, i in zip(strings, ids):
            f.write(s.encode("utf-8").hex() + "\t" + " ".join(map(str, i)) + "\n")


def build_spm(out, train_text, strings):
    with tempfile.TemporaryDirectory() as d:
        inp = os.path.join(d, "train.txt")
        with open(inp, "w") as f:
            f.write("\n".join(train_text))
        spm.SentencePieceTrainer.train(
            input=inp, model_prefix=os.path.join(d, "m"), model_type="bpe", vocab_size=2000,
            byte_fallback=True, split_digits=True, remove_extra_whitespaces=False,
            normalization_rule_name="identity", allow_whitespace_only_pieces=True,
            character_coverage=0.9995, user_defined_symbols=["<sep>", "<tool>"],
            unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2, num_threads=1,
            max_sentence_length=1 << 16)
        sp = spm.SentencePieceProcessor(model_file=os.path.join(d, "m.model"))
    tokens, scores, types = llama_gguf.sp_vocab(sp, user_defined=("<sep>", "<tool>"))
    llama_gguf.write_vocab_gguf(os.path.join(out, "spm.gguf"), "llama", tokens, scores, types,
                                bos=1, eos=2, unk=0, add_bos=True, add_space_prefix=True)
    write_cases(os.path.join(out, "spm.cases"), strings, [sp.encode(s) for s in strings])


def build_bpe(out, name, train_text, strings, llama3):
    tok = Tokenizer(models.BPE(ignore_merges=llama3))
    if llama3:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_PAT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|begin_of_text|>", "<|end_of_text|>"]
    trainer = trainers.BpeTrainer(vocab_size=2000, special_tokens=specials, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(train_text, trainer)
    tok.add_tokens([AddedToken("<tool>", special=False, normalized=False)])
    model = json.loads(tok.to_str())
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["model"]["merges"]]
    vocab = tok.get_vocab(with_added_tokens=True)
    n = len(vocab)
    tokens = [None] * n
    for t, i in vocab.items():
        tokens[i] = t
    assert all(t is not None for t in tokens), "vocab ids are not dense"
    types = [llama_gguf.CONTROL if t in specials else
             llama_gguf.USER_DEFINED if t == "<tool>" else llama_gguf.NORMAL for t in tokens]
    bos, eos = vocab[specials[0]], vocab[specials[1]]
    llama_gguf.write_vocab_gguf(os.path.join(out, f"{name}.gguf"), "gpt2", tokens, [0.0] * n,
                                types, merges=merges, pre="llama-bpe" if llama3 else "gpt-2",
                                bos=bos, eos=eos, add_bos=True)
    ids = [tok.encode(s, add_special_tokens=False).ids for s in strings]
    write_cases(os.path.join(out, f"{name}.cases"), strings, ids)


def build_fortunes(out, strings, sp_model, gguf_path):
    """The default model's own vocabulary: ids from its SentencePiece model (kept by
    train_default_model.py in --work), cross-checked against llama.cpp's tokenizer on the
    committed GGUF when llama-cpp-python is installed."""
    sp = spm.SentencePieceProcessor(model_file=sp_model)
    ids = [sp.encode(s) for s in strings]
    try:
        from llama_cpp import Llama
    except ImportError:
        Llama = None
    if Llama is not None:
        m = Llama(model_path=gguf_path, vocab_only=True, verbose=False)
        lc = [m.tokenize(s.encode(), add_bos=False, special=False) for s in strings]
        same = sum(a == b for a, b in zip(ids, lc))
        print(f"fortunes vocab: llama.cpp agrees with sentencepiece on {same}/{len(strings)}")
        assert same == len(strings)
    write_cases(os.path.join(out, "fortunes.cases"), strings, ids)


def llamacpp_crosscheck(out):
    """Informational: llama.cpp's tokenizer on the same vocab-only GGUFs. Measured 2026-11-27
    (llama-cpp-python 0.3.36): bpe-llama3 and bpe-gpt2 1246/1246; spm 1228/1246, the 18 others
    all contain a user-defined piece, after which llama.cpp adds a space prefix and
    SentencePiece does not (this crate follows SentencePiece)."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return
    for name, special in [("spm", False), ("bpe-llama3", True), ("bpe-gpt2", True)]:
        m = Llama(model_path=os.path.join(out, name + ".gguf"), vocab_only=True, verbose=False)
        n = same = 0
        for line in open(os.path.join(out, name + ".cases")):
            h, ids = line.rstrip("\n").split("\t")
            got = m.tokenize(bytes.fromhex(h), add_bos=False, special=special)
            n += 1
            same += got == [int(x) for x in ids.split()]
        print(f"{name}: llama.cpp agrees with the reference on {same}/{n}")


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "fixtures", "tokenizer"))
    ap.add_argument("--only", choices=["all", "trained", "fortunes"], default="all")
    ap.add_argument("--fortunes-sp", default="/tmp/fortunes-work/sp.model",
                    help="the default model's SentencePiece model (train_default_model.py --work)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    lines = fortune_corpus()
    r = random.Random(1)
    r.shuffle(lines)
    strings = make_strings(42, lines[:5000])
    if args.only in ("all", "fortunes"):
        build_fortunes(args.out, strings, args.fortunes_sp,
                       os.path.join(here, "..", "models", "fortunes-q8_0.gguf"))
    if args.only == "fortunes":
        return
    # Train on the rest of the fortunes plus strings of another seed, never on the test strings.
    train = lines[5000:] + make_strings(7, lines[5000:]) * 3
    build_spm(args.out, train, strings)
    build_bpe(args.out, "bpe-llama3", train, strings, llama3=True)
    build_bpe(args.out, "bpe-gpt2", train, strings, llama3=False)
    print(f"{len(strings)} strings -> {args.out}")
    llamacpp_crosscheck(args.out)


if __name__ == "__main__":
    main()
