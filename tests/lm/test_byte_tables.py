"""Token → bytes tables: concatenated token bytes spell the text, on every tokenizer family.

Random texts mix ASCII, accented Latin, Greek, Cyrillic, CJK, emoji (with ZWJ sequences and
skin tones), combining marks, control characters and whitespace runs. U+2581 ("▁") is left
out: SentencePiece tokenizers normalise a space *to* it, so a literal "▁" in a text cannot
round-trip through any such tokenizer (the tokenizer itself is not injective there).
"""

from __future__ import annotations

import numpy as np
import pytest

from potentia.lm.tokenizer import byte_table, bytes_to_unicode

PIECES = [
    *"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    *".,;:!?'\"()[]{}<>-_+=*/\\|@#$%^&~`",
    " ",
    "  ",
    "   ",
    "\t",
    "\n",
    "\n\n",
    "\r\n",
    " \n ",
    "\t\t  \n",
    "é",
    "ü",
    "ñ",
    "ç",
    "ø",
    "ß",
    "Å",
    "œ",
    "α",
    "β",
    "Ω",
    "ж",
    "Щ",
    "я",
    "中",
    "文",
    "日本語",
    "한국어",
    "ไทย",
    "עברית",
    "العربية",
    "🙂",
    "🚀",
    "👍🏽",
    "👩‍💻",
    "🇫🇷",
    "❤️",
    "e\u0301",
    "a\u0308",  # combining marks
    "\u00a0",
    "\u200b",
    "\x00",
    "\x7f",  # nbsp, zero-width space, control characters
    "Paris",
    " Paris",
    " the",
    "<eos>",
    "<|endoftext|>",
    "<start_of_turn>",
    "<table>",
]


def random_texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(rng.integers(0, 30))
        out.append("".join(PIECES[i] for i in rng.integers(0, len(PIECES), k)))
    return out


def test_random_texts_have_the_pieces_they_claim():
    texts = random_texts(1000, 0)
    assert len(texts) == 1000 and len(set(texts)) > 950
    assert sum(not t.isascii() for t in texts) > 500
    joined = "".join(texts)
    for must in ("🙂", "\r\n", "日本語", "  ", "\u0301"):
        assert must in joined
    assert "\u2581" not in joined


@pytest.mark.real_model
@pytest.mark.parametrize("name", ["gemma", "smollm"])
def test_token_bytes_concatenate_to_the_text(name, request):
    lm = request.getfixturevalue(name)
    for text in random_texts(1000, seed=1 if name == "gemma" else 2):
        pos = lm.encode(text)  # raises if the bytes do not spell the text
        assert lm.vocab.decode_bytes(pos) == text.encode("utf-8"), text
        assert lm.vocab.decode(pos) == text


@pytest.mark.real_model
def test_gemma_table_details(gemma):
    v = gemma.vocab
    tok = gemma.tokenizer
    assert gemma.table.kind == "sentencepiece"
    # duplicates: "\n" is both a piece and the byte-fallback token <0x0A>; both are kept
    newline_ids = sorted(int(v.ids[i]) for i, t in enumerate(v.tokens) if t == b"\n")
    assert newline_ids == sorted(
        [tok.convert_tokens_to_ids("\n"), tok.convert_tokens_to_ids("<0x0A>")]
    )
    assert not v.has_unique_bytes
    # byte fallback pieces are single (possibly non-UTF-8) bytes
    pos = {int(i): p for p, i in enumerate(v.ids)}
    assert v.tokens[pos[tok.convert_tokens_to_ids("<0xF0>")]] == b"\xf0"
    assert v.tokens[pos[tok.convert_tokens_to_ids("▁Paris")]] == b" Paris"
    # specials and EOS are not positions; non-special added tokens are
    for name in ("<eos>", "<bos>", "<pad>", "<start_of_turn>", "<end_of_turn>", "<unused0>"):
        assert tok.convert_tokens_to_ids(name) not in pos, name
    assert v.tokens[pos[tok.convert_tokens_to_ids("<table>")]] == b"<table>"


@pytest.mark.real_model
def test_gemma_newline_eos_takes_every_newline_token(gemma):
    from potentia.lm import LM

    lm = LM(gemma.backend, gemma.tokenizer, eos=["<eos>", "<end_of_turn>", "\n"])
    tok = gemma.tokenizer
    want = {*gemma.eos_ids, tok.convert_tokens_to_ids("\n"), tok.convert_tokens_to_ids("<0x0A>")}
    assert set(lm.eos_ids) == want
    assert b"\n" not in lm.vocab.tokens and b"\n\n" in lm.vocab.tokens
    v = lm.potential("Hello").logw_next([])
    w = gemma.potential("Hello").logw_next([])
    nl = [i for i, t in enumerate(gemma.vocab.tokens) if t == b"\n"]
    both = np.logaddexp.reduce(np.append(w[nl], w[-1]))
    # EOS mass = the default EOS set's + both newline tokens
    assert v[-1] == pytest.approx(both, abs=1e-9)


@pytest.mark.real_model
def test_smollm_table_details(smollm):
    v, tok = smollm.vocab, smollm.tokenizer
    assert smollm.table.kind == "byte_level"
    assert v.has_unique_bytes  # byte-level BPE has one id per byte string
    pos = {int(i): p for p, i in enumerate(v.ids)}
    assert v.tokens[pos[tok.convert_tokens_to_ids("ĠParis")]] == b" Paris"
    assert v.tokens[pos[tok.convert_tokens_to_ids("Ċ")]] == b"\n"
    singles = {t[0] for t in v.tokens if len(t) == 1}
    # printable ASCII, UTF-8 continuation bytes and 2-4 byte leads are single tokens (the
    # GGUF vocabulary lacks a few control bytes and never-used leads such as 0xC0, 0xF5+)
    assert set(range(0x20, 0x7F)) | set(range(0x80, 0xC0)) | {0xC3, 0xE2, 0xF0} <= singles
    for name in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        assert tok.convert_tokens_to_ids(name) not in pos


def test_bytes_to_unicode_is_a_bijection_onto_printables():
    m = bytes_to_unicode()
    assert sorted(m) == list(range(256))
    assert len(set(m.values())) == 256
    assert all(c.isprintable() and not c.isspace() for c in m.values())
    assert m[ord("A")] == "A" and m[ord(" ")] == "Ġ" and m[ord("\n")] == "Ċ"


@pytest.mark.parametrize("which", ["tiny_tokenizer", "tiny_sp_tokenizer"])
def test_tiny_tokenizers_round_trip(which, request):
    tok = request.getfixturevalue(which)
    table = byte_table(tok)
    for text in random_texts(300, seed=3):
        ids = tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        got = b"".join(table.tokens[i] for i in ids)
        assert got == text.encode("utf-8"), (text, ids)


def test_sentencepiece_pieces_and_special_exclusion(tiny_sp_tokenizer):
    tok = tiny_sp_tokenizer
    table = byte_table(tok)
    assert table.kind == "sentencepiece"
    get = tok.convert_tokens_to_ids
    assert table.tokens[get("▁the")] == b" the"
    assert table.tokens[get("<0x41>")] == b"A"
    assert table.tokens[get("<0xFF>")] == b"\xff"
    for s in ("<bos>", "<eos>", "<pad>", "<unk>"):
        assert table.tokens[get(s)] is None and get(s) in table.special
    kept = byte_table(tok, exclude_special=False)
    assert kept.tokens[get("<eos>")] == b"<eos>"
