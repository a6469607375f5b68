"""Character and sentencepiece tokenizers: round trips, blank id, save/load, determinism."""
import json

import pytest

from speechkit.bin import train_tokenizer as cli
from speechkit.text.normalize import NormalizerConfig
from speechkit.text.tokenizer import CharTokenizer, SentencePieceTokenizer, load_tokenizer, train_tokenizer

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "don't stop believing, hold on to that feeling",
    "she sells sea shells by the sea shore",
    "peter piper picked a peck of pickled peppers",
    "how much wood would a woodchuck chuck",
] * 6


def test_char_tokenizer_layout_and_round_trip():
    tok = train_tokenizer(TEXTS, "char")
    assert tok.tokens[:3] == ["<blank>", "<unk>", "|"]
    assert tok.blank_id == 0 and tok.unk_id == 1
    assert tok.tokens[3] == "'" and tok.tokens[-1] == "Z"
    assert tok.vocab_size == 3 + 27  # apostrophe + A..Z
    ids = tok.encode("Don't  stop!")
    assert [tok.tokens[i] for i in ids] == list("DON'T") + ["|"] + list("STOP")
    assert tok.decode(ids) == "DON'T STOP"
    # blanks and repeated boundaries are ignored when decoding
    assert tok.decode([0, *tok.encode("a b"), 0, 2, 2, 0]) == "A B"
    assert tok.encode("") == [] and tok.decode([]) == ""


def test_char_unknown_and_bad_ids():
    tok = CharTokenizer(list("AB"))
    assert tok.encode("abc") == [3, 4, 1]
    assert tok.decode([3, 1]) == "A<unk>"
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([3, 99])
    with pytest.raises(ValueError, match="invalid character"):
        CharTokenizer(["A", "|"])


@pytest.mark.parametrize("kind,vocab", [("bpe", 60), ("unigram", 50)])
def test_sentencepiece_round_trip(kind, vocab):
    tok = train_tokenizer(TEXTS, kind, vocab)
    assert isinstance(tok, SentencePieceTokenizer)
    assert tok.vocab_size == vocab
    assert tok.tokens[0] == "<blank>" and tok.tokens[1] == "<unk>"
    for s in TEXTS[:5]:
        ids = tok.encode(s)
        assert ids and 0 not in ids
        assert all(0 < i < vocab for i in ids)
        assert tok.decode(ids) == tok.normalize(s)
    assert tok.decode([0] + tok.encode("sea shore") + [0]) == "SEA SHORE"


def test_sentencepiece_deterministic(tmp_path):
    a = train_tokenizer(TEXTS, "bpe", 50).save(tmp_path / "a")
    b = train_tokenizer(TEXTS, "bpe", 50).save(tmp_path / "b")
    for name in ["spm.model", "tokens.txt", "tokenizer.json"]:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_sentencepiece_vocab_too_large_is_explained():
    with pytest.raises(ValueError, match="lower --vocab-size"):
        train_tokenizer(TEXTS[:2], "bpe", 5000)


@pytest.mark.parametrize("kind,vocab", [("char", 0), ("bpe", 40)])
def test_save_load(tmp_path, kind, vocab):
    norm = NormalizerConfig(remove_noise=False)
    tok = train_tokenizer(TEXTS, kind, vocab, norm)
    tok.save(tmp_path / "tok")
    lines = (tmp_path / "tok" / "tokens.txt").read_text().splitlines()
    assert lines[0] == "<blank> 0" and len(lines) == tok.vocab_size
    back = load_tokenizer(tmp_path / "tok")
    assert back.tokens == tok.tokens and back.normalizer == norm
    s = "How much <unk> wood?"
    assert back.encode(s) == tok.encode(s)
    meta = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())
    meta["vocab_size"] += 1
    (tmp_path / "tok" / "tokenizer.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="does not match"):
        load_tokenizer(tmp_path / "tok")


def test_cli_trains_from_text_file(tmp_path):
    text = tmp_path / "text"
    text.write_text("".join(f"utt{i:02d} {s}\n" for i, s in enumerate(TEXTS)))
    assert cli.main(["--text", str(text), "--out", str(tmp_path / "bpe"), "--type", "bpe", "--vocab-size", "45"]) == 0
    tok = load_tokenizer(tmp_path / "bpe")
    assert tok.vocab_size == 45
    assert not any("UTT" in t or "0" in t for t in tok.tokens)  # utterance ids are not training text
    assert cli.main(["--text", str(text), "--out", str(tmp_path / "chr")]) == 0
    assert load_tokenizer(tmp_path / "chr").decode(load_tokenizer(tmp_path / "chr").encode("sea")) == "SEA"


def test_unknown_chars_are_counted_for_both_kinds():
    from speechkit.text.tokenizer import train_tokenizer

    text = ["HELLO WORLD", "THE CAT SAT ON THE MAT", "A DOG AND A CAT"]
    char = train_tokenizer(text, "char")
    assert char.unknown_chars("hello zebra!") == {"Z": 1, "B": 1}  # normalised first: lower case is known
    assert char.encode("ZEBRA").count(char.unk_id) == 2
    bpe = train_tokenizer(text, "bpe", vocab_size=20)
    assert bpe.unknown_chars("THE ZEBRA") == {"Z": 1, "B": 1}
    assert bpe.unknown_chars("THE CAT") == {} and bpe.encode("THE CAT").count(bpe.unk_id) == 0
