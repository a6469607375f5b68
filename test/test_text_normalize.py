"""Text normalisation shared by references, hypotheses and tokenizers."""
import pytest

from speechkit.text.normalize import NormalizerConfig, normalize_text, read_text_file


@pytest.mark.parametrize("raw,expected", [
    ("Hello, world!", "HELLO WORLD"),
    ("  don't   STOP\tbelieving. ", "DON'T STOP BELIEVING"),
    ("it\u2019s James' 'tis", "IT'S JAMES TIS"),  # typographic apostrophe kept in-word, edge ones dropped
    ("well-known U.S. co-op", "WELL KNOWN U S CO OP"),
    ("<unk> hello [noise] world <sil>", "HELLO WORLD"),
    ("[laughter]", ""),
    ("caf\u00e9 na\u00efve 42nd", "CAF\u00c9 NA\u00cfVE 42ND"),
    ("a -- b ... c", "A B C"),
    ("", ""),
])
def test_default_rules(raw, expected):
    assert normalize_text(raw) == expected


def test_rules_can_be_switched_off():
    raw = "Hello, <unk> World!"
    assert normalize_text(raw, NormalizerConfig(upper=False)) == "Hello World"
    assert normalize_text(raw, NormalizerConfig(remove_noise=False)) == "HELLO UNK WORLD"
    assert normalize_text(raw, NormalizerConfig(remove_punct=False)) == "HELLO, WORLD!"
    keep_all = NormalizerConfig(upper=False, remove_punct=False, remove_noise=False)
    assert normalize_text("  Hello,  <unk>\nWorld! ", keep_all) == "Hello, <unk> World!"
    custom = NormalizerConfig(noise_pattern=r"\{[^}]*\}")
    assert normalize_text("a {breath} b <unk>", custom) == "A B UNK"


def test_idempotent():
    for raw in ["Hello, world!", "it's <unk> a [noise] well-known fact", "x' 'y z'z"]:
        once = normalize_text(raw)
        assert normalize_text(once) == once


def test_config_round_trip_and_unknown_keys():
    cfg = NormalizerConfig(upper=False, remove_noise=False)
    assert NormalizerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="lowercase"):
        NormalizerConfig.from_dict({"lowercase": True})


def test_read_text_file(tmp_path):
    p = tmp_path / "text"
    p.write_text("u1 HELLO WORLD\nu2\n\nu3   spaced   out  \n")
    assert read_text_file(p) == {"u1": "HELLO WORLD", "u2": "", "u3": "spaced   out"}
    with pytest.raises(ValueError, match=r"text:2: utterance 'u2' has an empty transcript"):
        read_text_file(p, allow_empty=False)
    p.write_text("u1 A\nu1 B\n")
    with pytest.raises(ValueError, match=r"text:2: duplicate utterance id 'u1'"):
        read_text_file(p)
