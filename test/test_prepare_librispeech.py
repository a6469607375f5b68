"""LibriSpeech data prep on a small fake corpus in the official layout, and on bad input."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechkit.bin.prepare_librispeech import main as cli_main
from speechkit.corpora.librispeech import LIBRISPEECH_PARTS, LibriSpeechError, prepare_librispeech
from speechkit.io.datadir import DataDir, validate_data_dir

WORDS = "THE CAT SAT ON A MAT WITH HER OLD DOG AND IT WAS GOOD".split()


def make_fake_librispeech(root: Path, parts=LIBRISPEECH_PARTS, speakers=(19, 103), chapters=2,
                          utts=2, seed=0) -> dict[str, int]:
    """Write ``root/LibriSpeech/<part>/<spk>/<chapter>/...`` with short flac files; returns
    utt id -> number of samples. Chapter ids differ per part, as in LibriSpeech."""
    rng = np.random.default_rng(seed)
    lengths: dict[str, int] = {}
    for p, part in enumerate(parts):
        for spk in speakers:
            for c in range(chapters):
                chapter = 1000 * (p + 1) + 10 * c + spk % 7
                d = root / "LibriSpeech" / part / str(spk) / str(chapter)
                d.mkdir(parents=True)
                lines = []
                for u in range(utts):
                    utt = f"{spk}-{chapter}-{u:04d}"
                    n = int(rng.integers(1600, 4800))
                    sf.write(str(d / f"{utt}.flac"), (rng.standard_normal(n) * 0.1).astype(np.float32),
                             16000, format="FLAC", subtype="PCM_16")
                    lines.append(f"{utt} " + " ".join(rng.choice(WORDS, size=int(rng.integers(2, 6)))))
                    lengths[utt] = n
                (d / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return lengths


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("ls")
    return root, make_fake_librispeech(root)


def test_all_parts_and_combined_sets(fake, tmp_path):
    root, lengths = fake
    made = prepare_librispeech(root, tmp_path / "data", num_jobs=2)
    expected = {p.replace("-", "_") for p in LIBRISPEECH_PARTS} | {"train_960", "dev"}
    assert set(made) == expected
    for name, path in made.items():
        validate_data_dir(path)
        assert path == tmp_path / "data" / name
    d = DataDir.load(made["dev_clean"])
    assert len(d.utt_ids) == 2 * 2 * 2
    for utt in d.utt_ids:
        spk, chapter, _ = utt.split("-")
        assert d.utt2spk[utt] == f"{spk}-{chapter}"  # speaker = reader-chapter
        flac = Path(d.wav_scp[utt])
        assert flac.is_absolute() and flac.is_file()
        assert flac == (root / "LibriSpeech" / "dev-clean" / spk / chapter / f"{utt}.flac").resolve()
        assert int(d.utt2num_samples[utt]) == lengths[utt]
        assert d.text[utt] == d.text[utt].upper() and len(d.text[utt].split()) >= 2
    assert sorted(d.spk2utt) == sorted(set(d.utt2spk.values()))
    train = DataDir.load(made["train_960"])
    assert len(train.utt_ids) == 3 * 8
    dev = DataDir.load(made["dev"])
    assert set(dev.utt_ids) == set(d.utt_ids) | set(DataDir.load(made["dev_other"]).utt_ids)


def test_librispeech_folder_itself_and_selected_parts(fake, tmp_path, caplog):
    root, _ = fake
    made = prepare_librispeech(root / "LibriSpeech", tmp_path / "data", parts=["dev-clean", "dev-other"])
    assert set(made) == {"dev_clean", "dev_other", "dev"}
    assert "absent" not in caplog.text
    with pytest.raises(LibriSpeechError, match="requested parts train-clean-5 are absent"):
        prepare_librispeech(root, tmp_path / "data2", parts=["dev-clean", "train-clean-5"])


def test_missing_parts_are_reported(tmp_path, caplog):
    make_fake_librispeech(tmp_path / "corpus", parts=("dev-clean", "test-clean"), speakers=(7,), chapters=1)
    with caplog.at_level(logging.WARNING):
        made = prepare_librispeech(tmp_path / "corpus", tmp_path / "data")
    assert set(made) == {"dev_clean", "test_clean"}  # no combined sets from incomplete groups
    assert "5 LibriSpeech parts are absent" in caplog.text
    assert "train-clean-360" in caplog.text and "dev-other" in caplog.text


def test_missing_flac_and_flac_without_transcript(tmp_path, caplog):
    corpus = tmp_path / "corpus"
    lengths = make_fake_librispeech(corpus, parts=("dev-clean",), speakers=(19,), chapters=2, utts=3)
    chapter_dir = next((corpus / "LibriSpeech" / "dev-clean" / "19").iterdir())
    gone = sorted(chapter_dir.glob("*.flac"))[1]
    gone.unlink()
    orphan = chapter_dir / f"19-{chapter_dir.name}-0099.flac"
    sf.write(str(orphan), np.zeros(1600, np.float32), 16000, format="FLAC")
    with caplog.at_level(logging.WARNING):
        made = prepare_librispeech(corpus, tmp_path / "data", parts=["dev-clean"])
    d = DataDir.load(made["dev_clean"])
    assert gone.stem not in d.utt_ids and orphan.stem not in d.utt_ids
    assert len(d.utt_ids) == len(lengths) - 1
    assert f"1 transcript lines have no flac file and were skipped (first: {gone.stem})" in caplog.text
    assert "1 flac files have no transcript line" in caplog.text and orphan.name in caplog.text


def test_empty_part_is_an_error(tmp_path):
    corpus = tmp_path / "corpus"
    make_fake_librispeech(corpus, parts=("dev-clean",), speakers=(19,), chapters=1)
    (corpus / "LibriSpeech" / "test-clean").mkdir()
    with pytest.raises(LibriSpeechError, match=r"test-clean: empty part .*expected <corpus_dir>/LibriSpeech/<part>"):
        prepare_librispeech(corpus, tmp_path / "data")
    # chapter folders whose transcripts all lack audio: no utterance left is an error too
    corpus2 = tmp_path / "corpus2"
    make_fake_librispeech(corpus2, parts=("dev-clean",), speakers=(19,), chapters=1)
    for flac in (corpus2 / "LibriSpeech").rglob("*.flac"):
        flac.unlink()
    with pytest.raises(LibriSpeechError, match="no utterance with both a transcript line and a flac"):
        prepare_librispeech(corpus2, tmp_path / "data2")


def test_wrong_folder_is_an_error(tmp_path):
    (tmp_path / "wrong").mkdir()
    (tmp_path / "wrong" / "audio.wav").write_bytes(b"")
    with pytest.raises(LibriSpeechError, match=r"neither a LibriSpeech/ folder.*found: audio.wav.*expected"):
        prepare_librispeech(tmp_path / "wrong", tmp_path / "data")
    with pytest.raises(LibriSpeechError, match="no such folder"):
        prepare_librispeech(tmp_path / "absent", tmp_path / "data")
    (tmp_path / "LibriSpeech").mkdir()
    with pytest.raises(LibriSpeechError, match="no LibriSpeech part folders"):
        prepare_librispeech(tmp_path / "LibriSpeech", tmp_path / "data")


def test_transcript_id_not_matching_folder_names_the_line(tmp_path):
    corpus = tmp_path / "corpus"
    make_fake_librispeech(corpus, parts=("dev-clean",), speakers=(19,), chapters=1)
    trans = next((corpus / "LibriSpeech").rglob("*.trans.txt"))
    lines = trans.read_text().splitlines()
    lines[1] = "20-1-0001 WRONG SPEAKER"
    trans.write_text("\n".join(lines) + "\n")
    with pytest.raises(LibriSpeechError, match=rf"{trans.name}:2: utterance id '20-1-0001' does not match"):
        prepare_librispeech(corpus, tmp_path / "data")


def test_cli(fake, tmp_path):
    root, _ = fake
    cli_main(["--corpus-dir", str(root), "--out", str(tmp_path / "data"), "--parts", "test-clean", "--nj", "2"])
    validate_data_dir(tmp_path / "data" / "test_clean")
    assert not (tmp_path / "data" / "dev_clean").exists()


def test_other_sample_rate_is_counted_at_16k_and_warned(tmp_path, caplog):
    from speechkit.io.audio import AudioReader

    corpus = tmp_path / "corpus"
    make_fake_librispeech(corpus, parts=("dev-clean",), speakers=(19,), chapters=1, utts=2)
    flac = sorted((corpus / "LibriSpeech" / "dev-clean").rglob("*.flac"))[0]
    sf.write(str(flac), np.full(2001, 0.1, np.float32), 8000, format="FLAC", subtype="PCM_16")
    with caplog.at_level(logging.WARNING):
        made = prepare_librispeech(corpus, tmp_path / "data", parts=["dev-clean"])
    d = DataDir.load(made["dev_clean"])
    reader = AudioReader(d, sample_rate=16000)  # what features and labels are computed from
    assert d.utt2num_samples[flac.stem] == len(reader[flac.stem]) == 4002  # not 2001, the native count
    assert all(d.utt2num_samples[u] == len(reader[u]) for u in d.utt_ids)
    assert "1 flac files are not at 16000 Hz: they will be resampled" in caplog.text
    assert f"{flac.stem} at 8000 Hz" in caplog.text
