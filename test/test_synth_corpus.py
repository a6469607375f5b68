"""The synthetic corpus: espeak binding, voices, grammar, alignments, and the generated corpus
(determinism, LibriSpeech layout, frame alignments, SPEAKERS.TXT, closed vocabulary, caching)."""
from __future__ import annotations

import hashlib
import logging
import random
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechkit.corpora.synth import (
    PARTS,
    PHONE_SET,
    SIL,
    VOCABULARY,
    Voice,
    frame_labels,
    generate_corpus,
    make_voices,
    synthesize,
)
from speechkit.corpora.synth.espeak import EspeakError
from speechkit.corpora.synth.phones import map_phoneme
from speechkit.corpora.synth.speak import resample
from speechkit.corpora.synth.text import Grammar, text_bucket

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return generate_corpus(tmp_path_factory.mktemp("synth") / "tiny", size="tiny", seed=0, num_jobs=2)


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _transcripts(root: Path, part: str) -> dict[str, str]:
    out = {}
    for trans in (root / "LibriSpeech" / part).glob("*/*/*.trans.txt"):
        for line in trans.read_text().splitlines():
            utt, text = line.split(" ", 1)
            out[utt] = text
    return out


# ------------------------------------------------------------------------------ small components
def test_phone_mapping():
    assert map_phoneme("'aI") == "AY" and map_phoneme(",oU") == "OW" and map_phoneme("@2") == "AH"
    assert map_phoneme("_:") == SIL and map_phoneme("_") == SIL and map_phoneme(";") is None
    assert map_phoneme("tS") == "CH" and map_phoneme("D") == "DH"
    assert len(PHONE_SET) == 40 and SIL in PHONE_SET


def test_make_voices_distinct_and_deterministic():
    a, b = make_voices(40, seed=0), make_voices(40, seed=0)
    assert a == b
    assert len({v.name for v in a}) == 40 and len({v.speaker_id for v in a}) == 40
    assert {v.sex for v in a} == {"F", "M"}
    assert len({v.accent for v in a[:6]}) == 6  # even a tiny corpus has six accents
    assert make_voices(40, seed=1) != a
    with pytest.raises(ValueError, match="n >= 1"):
        make_voices(0)


def test_grammar_deterministic_and_closed():
    s1 = [" ".join(Grammar(random.Random(3)).sentence()) for _ in range(1)]
    g1, g2 = Grammar(random.Random(5)), Grammar(random.Random(5))
    sents = [g1.sentence() for _ in range(3000)]
    assert sents == [g2.sentence() for _ in range(3000)]
    assert s1 == [" ".join(Grammar(random.Random(3)).sentence())]
    assert all(w in VOCABULARY for s in sents for w in s)
    assert 300 <= len(VOCABULARY) <= 600
    lengths = [len(s) for s in sents]
    assert min(lengths) <= 3 and max(lengths) >= 12  # varied lengths
    assert len({" ".join(s) for s in sents}) > 2900  # a large sentence space
    assert text_bucket("the old dog slept") == text_bucket("the old dog slept")
    assert {text_bucket(" ".join(s)) for s in sents} == set(range(20))


def test_resample_matches_a_sine():
    x = np.sin(2 * np.pi * 440 * np.arange(22050) / 22050).astype(np.float32)
    y = resample(x, 22050, 16000)
    assert len(y) == 16000 and y.dtype == np.float32
    ref = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    assert np.abs(y - ref)[50:-50].max() < 1e-3


def test_synthesize_segments_cover_the_audio():
    voice = Voice("en-us+f3", pitch=50, range=50, rate=175)
    utt = synthesize("The quick brown fox, jumps over the lazy dog!", voice, sample_rate=16000)
    assert utt.text == "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG"
    assert utt.audio.dtype == np.float32 and 2.0 < utt.duration < 5.0
    assert 0.05 < np.abs(utt.audio).max() <= 1.0
    assert utt.phones[0][1] == 0 and utt.phones[-1][2] == len(utt.audio)
    for (_, _, end), (_, start, _) in zip(utt.phones, utt.phones[1:]):
        assert end == start  # contiguous
    assert all(e > s for _, s, e in utt.phones)
    assert [w for w, _, _ in utt.words] == utt.text.split()
    starts = [s for _, s, _ in utt.words]
    assert starts == sorted(starts) and all(0 <= s < e <= len(utt.audio) for _, s, e in utt.words)
    syms = [p for p, _, _ in utt.phones]
    assert set(syms) <= set(PHONE_SET)
    assert syms[:3] == [SIL, "DH", "AH"]  # en-us "the"
    labels = frame_labels(utt.phones, len(utt.audio))
    assert len(labels) == 1 + (len(utt.audio) - 400) // 160
    # A 8 kHz request gets its own resampling and boundaries.
    utt8 = synthesize("hello world", voice, sample_rate=8000)
    assert utt8.sample_rate == 8000 and utt8.phones[-1][2] == len(utt8.audio)


def test_synthesize_unknown_voice_is_an_error():
    with pytest.raises(EspeakError, match="no-such-voice"):
        synthesize("hello", Voice("no-such-voice"))


def test_frame_labels_use_the_centre_sample():
    phones = [(SIL, 0, 500), ("AH", 500, 1000), (SIL, 1000, 1200)]
    labels = frame_labels(phones, 1200)
    assert len(labels) == 1 + (1200 - 400) // 160 == 6
    # centres: 200, 360, 520, 680, 840, 1000
    assert labels == [SIL, SIL, "AH", "AH", "AH", SIL]
    with pytest.raises(ValueError, match="do not cover"):
        frame_labels([(SIL, 0, 800)], 1200)


# ------------------------------------------------------------------------------ generated corpus
def test_generation_is_deterministic(tiny, tmp_path):
    again = generate_corpus(tmp_path / "again", size="tiny", seed=0, num_jobs=1)
    assert _hashes(again) == _hashes(tiny)
    assert any(k.endswith(".flac") for k in _hashes(tiny))


def test_rerun_is_skipped_and_foreign_folder_refused(tiny, tmp_path, caplog):
    before = _hashes(tiny)
    with caplog.at_level(logging.INFO):
        generate_corpus(tiny, size="tiny", seed=0, num_jobs=2)
    assert "skipping" in caplog.text
    assert _hashes(tiny) == before
    (tmp_path / "LibriSpeech").mkdir()
    with pytest.raises(FileExistsError, match="not made"):
        generate_corpus(tmp_path, size="tiny")
    with pytest.raises(ValueError, match="unknown corpus size"):
        generate_corpus(tmp_path / "x", size="huge")


def test_layout_and_audio(tiny):
    root = tiny / "LibriSpeech"
    speakers_by_part = {}
    chapters_by_part = {}
    texts_by_part = {}
    for part in PARTS:
        trans = _transcripts(tiny, part)
        flacs = sorted((root / part).glob("*/*/*.flac"))
        assert len(flacs) == len(trans) > 0
        for flac in flacs:
            spk, chapter = flac.parent.parent.name, flac.parent.name
            assert re.fullmatch(rf"{spk}-{chapter}-\d{{4}}", flac.stem), flac
            assert flac.stem in trans
            info = sf.info(str(flac))
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert 1.0 <= info.duration <= 6.0
            assert (flac.parent / f"{spk}-{chapter}.trans.txt").is_file()
        for text in trans.values():
            assert text == text.upper() and re.fullmatch(r"[A-Z' ]+", text)
        speakers_by_part[part] = {u.split("-")[0] for u in trans}
        chapters_by_part[part] = {u.rsplit("-", 1)[0] for u in trans}
        texts_by_part[part] = set(trans.values())
    # every speaker reads in every part, in different chapters and different sentences
    assert speakers_by_part["train-clean-100"] == speakers_by_part["dev-clean"] == speakers_by_part["test-clean"]
    assert len(speakers_by_part["dev-clean"]) == 6
    for a in PARTS:
        for b in PARTS:
            if a < b:
                assert not chapters_by_part[a] & chapters_by_part[b]
                assert not texts_by_part[a] & texts_by_part[b]
    wav, _ = sf.read(str(next(iter(sorted(root.glob("dev-clean/*/*/*.flac"))))), dtype="int16")
    lead_rms = np.sqrt(np.mean(wav[:1600].astype(np.float64) ** 2)) / 32768
    assert 10 ** (-70 / 20) < lead_rms < 10 ** (-45 / 20)  # leading silence: a faint noise floor
    assert np.abs(wav).max() / 32768 > 0.25


def test_alignments_cover_every_frame(tiny):
    for part in PARTS:
        trans = _transcripts(tiny, part)
        lines = (tiny / "alignments" / f"{part}.phones").read_text().splitlines()
        ids = [l.split(" ", 1)[0] for l in lines]
        assert ids == sorted(ids, key=str.encode) and set(ids) == set(trans)
        for line in lines:
            utt, *labels = line.split()
            spk, chapter, _ = utt.split("-")
            flac = tiny / "LibriSpeech" / part / spk / chapter / f"{utt}.flac"
            n = sf.info(str(flac)).frames
            assert len(labels) == 1 + (n - 400) // 160, utt
            assert set(labels) <= set(PHONE_SET), utt
            assert labels[0] == SIL and labels[-1] == SIL
            speech = [l for l in labels if l != SIL]
            assert len(speech) > 0.4 * len(labels), utt
            # roughly 2+ phones per word: the phone sequence follows the words
            runs = [l for i, l in enumerate(labels) if i == 0 or labels[i - 1] != l]
            assert len(runs) >= len(trans[utt].split()), utt


def test_speakers_txt_parses(tiny):
    root = tiny / "LibriSpeech"
    rows = [l for l in (root / "SPEAKERS.TXT").read_text().splitlines() if not l.startswith(";")]
    minutes = defaultdict(float)
    for part in PARTS:
        for flac in (root / part).glob("*/*/*.flac"):
            minutes[flac.parent.parent.name] += sf.info(str(flac)).duration / 60
    assert len(rows) == len(minutes) == 6
    for row in rows:
        spk, sex, subset, mins, name = [f.strip() for f in row.split("|")]
        assert spk in minutes and sex in ("F", "M") and subset == "train-clean-100"
        assert float(mins) == pytest.approx(minutes[spk], abs=0.01)
        assert name.startswith("en")
    chapters = [l for l in (root / "CHAPTERS.TXT").read_text().splitlines() if not l.startswith(";")]
    assert len(chapters) == 18


def test_vocabulary_closed(tiny):
    for part in PARTS:
        for text in _transcripts(tiny, part).values():
            for word in text.split():
                assert word.lower() in VOCABULARY, (part, word)


def test_prepared_data_dirs_match_alignments(tiny, tmp_path):
    from speechkit.corpora.librispeech import prepare_librispeech
    from speechkit.io.datadir import DataDir

    made = prepare_librispeech(tiny, tmp_path / "data", parts=list(PARTS), num_jobs=2)
    assert sorted(made) == ["dev_clean", "test_clean", "train_clean_100"]
    for part in PARTS:
        d = DataDir.load(made[part.replace("-", "_")])
        align = dict(l.split(" ", 1) for l in (tiny / "alignments" / f"{part}.phones").read_text().splitlines())
        assert d.utt_ids == sorted(align, key=str.encode)
        for utt in d.utt_ids:
            assert len(align[utt].split()) == 1 + (int(d.utt2num_samples[utt]) - 400) // 160


def test_cli_help():
    for mod in ("make_synth_corpus", "prepare_librispeech"):
        out = subprocess.run([sys.executable, "-m", f"speechkit.bin.{mod}", "--help"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
        assert "usage:" in out and "--out" in out


def test_synthesize_keeps_words_espeak_folds_into_a_neighbour():
    """espeak-ng reports no word for the article in "at a zero"; the word list is still the sentence."""
    utt = synthesize("bin blue at a zero again", Voice("en-us+m3", pitch=50, range=50, rate=175))
    assert [w for w, _, _ in utt.words] == utt.text.split() == "BIN BLUE AT A ZERO AGAIN".split()
    at, a, zero = utt.words[2:5]
    assert a[1] == a[2] == at[2] and zero[1] >= a[2]  # an empty segment where AT ends
