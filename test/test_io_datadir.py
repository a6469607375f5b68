"""Data dirs: table round trips, every validation error, fix/split/subset/combine, CLI wrappers."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from speechkit.io.datadir import (
    DataDir,
    DataDirError,
    read_segments,
    read_table,
    validate_data_dir,
    write_data_dir,
    write_table,
)
from speechkit.io.datadir_ops import combine_data_dirs, fix_data_dir, split_data_dir, subset_data_dir

ROOT = pathlib.Path(__file__).resolve().parents[1]
SPK = {"spkA": 3, "spkB": 2, "spkC": 4}


def make_dir(path: pathlib.Path, segments: bool = False) -> pathlib.Path:
    utts = [f"{s}-u{i}" for s, n in SPK.items() for i in range(n)]
    utt2spk = {u: u.split("-")[0] for u in utts}
    if segments:
        wav = {f"{s}-rec": f"/data/{s}.wav" for s in SPK}
        seg = {u: (f"{utt2spk[u]}-rec", 1.0 * int(u[-1]), 1.0 * int(u[-1]) + 0.75) for u in utts}
    else:
        wav = {u: f"/data/{u}.flac" for u in utts}
        seg = None
    return write_data_dir(
        path, wav_scp=wav, segments=seg, text={u: f"WORD {u.upper()}" for u in utts}, utt2spk=utt2spk,
        utt2num_samples={u: 16000 + i for i, u in enumerate(utts)},
        utt2num_frames={u: 98 + i for i, u in enumerate(utts)},
        feats_scp={u: f"dump/feats.1.ark:{10 * i + 5}" for i, u in enumerate(utts)},
        extra={"km.mfcc100": {u: [1, 2, 3 + i] for i, u in enumerate(utts)}, "utt2dur": {u: 1.0 for u in utts}},
    )


def lines(p: pathlib.Path) -> list[str]:
    return p.read_text().splitlines()


# ---- tables --------------------------------------------------------------------------------
def test_table_round_trip_sorted_c_locale(tmp_path):
    m = {"b": "2", "B": "upper", "a_1": [1, 2.5, "x"], "a": 3, "é": "accent", "a-1": 0.1}
    write_table(tmp_path / "t", m)
    keys = [ln.split()[0] for ln in lines(tmp_path / "t")]
    assert keys == sorted(keys, key=lambda k: k.encode("utf-8"))  # C locale = byte order
    assert keys[0] == "B" and keys[-1] == "é"
    back = read_table(tmp_path / "t")
    assert back == {"b": "2", "B": "upper", "a_1": "1 2.5 x", "a": "3", "é": "accent", "a-1": "0.1"}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # atomic write left nothing


def test_read_table_keeps_file_order_and_empty_values(tmp_path):
    (tmp_path / "t").write_text("z one  two\ny\nx 3\n")
    assert list(read_table(tmp_path / "t").items()) == [("z", "one  two"), ("y", ""), ("x", "3")]


@pytest.mark.parametrize("content,lineno,needle", [
    ("a 1\na 2\n", 2, "duplicate key 'a' (first seen on line 1)"),
    ("a 1\n\nb 2\n", 2, "empty line"),
    ("a 1\n  b 2\n", 2, "empty key"),
])
def test_read_table_errors_name_file_and_line(tmp_path, content, lineno, needle):
    (tmp_path / "t").write_text(content)
    with pytest.raises(DataDirError) as e:
        read_table(tmp_path / "t")
    assert f"{tmp_path / 't'}:{lineno}:" in str(e.value) and needle in str(e.value)


def test_write_table_rejects_bad_keys(tmp_path):
    with pytest.raises(DataDirError, match="invalid key"):
        write_table(tmp_path / "t", {"a b": 1})


def test_read_segments(tmp_path):
    (tmp_path / "segments").write_text("u1 rec1 0.5 1.25\nu2 rec1 2 3\n")
    assert read_segments(tmp_path / "segments") == {"u1": ("rec1", 0.5, 1.25), "u2": ("rec1", 2.0, 3.0)}
    (tmp_path / "segments").write_text("u1 rec1 0.5\n")
    with pytest.raises(DataDirError, match=r"segments:1: expected '<utt> <recording> <start> <end>'"):
        read_segments(tmp_path / "segments")
    (tmp_path / "segments").write_text("u1 rec1 0.5 x\n")
    with pytest.raises(DataDirError, match=r"segments:1: .* not numbers"):
        read_segments(tmp_path / "segments")


# ---- DataDir round trip --------------------------------------------------------------------
@pytest.mark.parametrize("segments", [False, True])
def test_data_dir_round_trip_every_file(tmp_path, segments):
    p = make_dir(tmp_path / "d", segments)
    names = {x.name for x in p.iterdir()}
    expected = {"wav.scp", "text", "utt2spk", "spk2utt", "utt2num_samples", "utt2num_frames", "feats.scp",
                "km.mfcc100", "utt2dur"} | ({"segments"} if segments else set())
    assert names == expected
    d = DataDir.load(p)
    assert len(d.utt_ids) == 9 and d.utt_ids == sorted(d.utt_ids)
    assert d.spk2utt == {"spkA": ["spkA-u0", "spkA-u1", "spkA-u2"], "spkB": ["spkB-u0", "spkB-u1"],
                         "spkC": [f"spkC-u{i}" for i in range(4)]}
    assert d.text["spkB-u1"] == "WORD SPKB-U1"
    assert d.utt2num_samples["spkA-u0"] == 16000 and d.utt2num_frames["spkA-u0"] == 98
    assert d.feats_scp["spkA-u1"] == "dump/feats.1.ark:15"
    assert d.extra == {"km.mfcc100": {u: f"1 2 {3 + i}" for i, u in enumerate(d.utt_ids)},
                       "utt2dur": {u: "1.0" for u in d.utt_ids}}
    if segments:
        assert d.segments["spkC-u3"] == ("spkC-rec", 3.0, 3.75) and len(d.wav_scp) == 3
    else:
        assert d.segments is None and d.wav_scp["spkA-u0"] == "/data/spkA-u0.flac"
    d.save(tmp_path / "copy")
    for name in expected:
        assert (tmp_path / "copy" / name).read_text() == (p / name).read_text(), name
    validate_data_dir(tmp_path / "copy")


def test_save_removes_tables_the_object_no_longer_has(tmp_path):
    p = make_dir(tmp_path / "d")
    d = DataDir.load(p)
    d.text = None
    del d.extra["km.mfcc100"]
    d.save()
    assert not (p / "text").exists() and not (p / "km.mfcc100").exists()
    validate_data_dir(p)


def test_write_data_dir_without_speakers_uses_utterance_as_speaker(tmp_path):
    p = write_data_dir(tmp_path / "d", wav_scp={"u2": "b.wav", "u1": "a.wav"})
    assert read_table(p / "spk2utt") == {"u1": "u1", "u2": "u2"}


def test_write_data_dir_rejects_unrecognised_extra_name(tmp_path):
    with pytest.raises(DataDirError, match="extra table name 'labels'"):
        write_data_dir(tmp_path / "d", wav_scp={"u1": "a.wav"}, extra={"labels": {"u1": "1"}})


# ---- validation: every error, with file and line -----------------------------------------
def _edit(path: pathlib.Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (old, text)
    path.write_text(text.replace(old, new, 1))


def _expect(p: pathlib.Path, *needles: str) -> str:
    with pytest.raises(DataDirError) as e:
        validate_data_dir(p)
    msg = str(e.value)
    for n in needles:
        assert n in msg, (n, msg)
    return msg


def test_validate_unsorted(tmp_path):
    p = make_dir(tmp_path / "d")
    t = lines(p / "text")
    t[1], t[2] = t[2], t[1]
    (p / "text").write_text("\n".join(t) + "\n")
    _expect(p, f"{p}/text:3:", "key 'spkA-u1' comes after 'spkA-u2'", "sorted in C-locale")


def test_validate_duplicate_key(tmp_path):
    p = make_dir(tmp_path / "d")
    _edit(p / "utt2spk", "spkB-u0 spkB\n", "spkB-u0 spkB\nspkB-u0 spkB\n")
    _expect(p, f"{p}/utt2spk:5:", "duplicate key 'spkB-u0' (first seen on line 4)")


def test_validate_missing_utterance_in_a_file(tmp_path):
    p = make_dir(tmp_path / "d")
    _edit(p / "km.mfcc100", "spkB-u1 1 2 7\n", "")
    _expect(p, f"{p}/km.mfcc100:", "1 of 9 utterances of wav.scp are missing", "'spkB-u1'", "wav.scp line 5")


def test_validate_extra_utterance_in_a_file(tmp_path):
    p = make_dir(tmp_path / "d")
    with open(p / "text", "a") as f:
        f.write("spkD-u0 EXTRA\n")
    _expect(p, f"{p}/text:10:", "utterance 'spkD-u0' is not in wav.scp")


def test_validate_spk2utt_disagrees_with_utt2spk(tmp_path):
    p = make_dir(tmp_path / "d")
    _edit(p / "spk2utt", "spkA spkA-u0 spkA-u1 spkA-u2", "spkA spkA-u0 spkA-u1 spkB-u0")
    _expect(p, f"{p}/spk2utt:1:", "'spkB-u0' is listed under speaker 'spkA'", "utt2spk line 4")


def test_validate_spk2utt_missing_utterance(tmp_path):
    p = make_dir(tmp_path / "d")
    _edit(p / "spk2utt", "spkA spkA-u0 spkA-u1 spkA-u2", "spkA spkA-u0 spkA-u1")
    _expect(p, f"{p}/spk2utt:", "'spkA-u2' (utt2spk line 3) is not listed", "inverse of utt2spk")


def test_validate_speaker_prefix_order(tmp_path):
    # each file is sorted, but sorting by speaker gives a2, a1: ids must start with the speaker
    with pytest.raises(DataDirError, match=r"utt2spk:2: utterance 'a2' of speaker 's1' sorts differently"):
        write_data_dir(tmp_path / "d", wav_scp={"a1": "x", "a2": "y"}, utt2spk={"a1": "s2", "a2": "s1"})


def test_validate_segment_errors(tmp_path):
    p = make_dir(tmp_path / "d", segments=True)
    orig = (p / "segments").read_text()
    _edit(p / "segments", "spkA-u1 spkA-rec 1.0 1.75", "spkA-u1 spkA-rec 1.75 1.0")
    _expect(p, f"{p}/segments:2:", "end 1.0 of 'spkA-u1' is not after start 1.75")
    (p / "segments").write_text(orig)
    _edit(p / "segments", "spkA-u1 spkA-rec 1.0 1.75", "spkA-u1 spkA-rec -1.0 1.75")
    _expect(p, f"{p}/segments:2:", "start -1.0 of 'spkA-u1' is negative")
    (p / "segments").write_text(orig)
    _edit(p / "segments", "spkB-u0 spkB-rec", "spkB-u0 spkZ-rec")
    _expect(p, f"{p}/segments:4:", "recording 'spkZ-rec' of utterance 'spkB-u0' is not in wav.scp")
    (p / "segments").write_text(orig)
    _edit(p / "segments", "spkB-u0 spkB-rec 0.0 0.75", "spkB-u0 spkB-rec zero 0.75")
    _expect(p, f"{p}/segments:4:", "not numbers")


def test_validate_bad_counts_and_missing_files(tmp_path):
    p = make_dir(tmp_path / "d")
    _edit(p / "utt2num_frames", "spkA-u1 99", "spkA-u1 -3")
    _expect(p, f"{p}/utt2num_frames:2:", "'-3' for 'spkA-u1' is not a positive integer")
    p = make_dir(tmp_path / "e")
    (p / "spk2utt").unlink()
    _expect(p, f"{p}/spk2utt: no such file")
    with pytest.raises(DataDirError, match="no such data directory"):
        validate_data_dir(tmp_path / "nope")


def test_validate_speaker_and_recording_tables(tmp_path):
    p = make_dir(tmp_path / "d", segments=True)
    write_table(p / "spk2gender", {"spkA": "f", "spkB": "m"})
    _expect(p, f"{p}/spk2gender:", "speakers of spk2utt are missing", "'spkC'")
    write_table(p / "spk2gender", {"spkA": "f", "spkB": "m", "spkC": "f"})
    write_table(p / "reco2dur", {"spkA-rec": 9.0, "spkB-rec": 9.0, "spkC-rec": 9.0, "spkD-rec": 1.0})
    _expect(p, f"{p}/reco2dur:4:", "recording 'spkD-rec' is not in wav.scp")


# ---- fix -----------------------------------------------------------------------------------
def test_fix_reports_what_was_dropped_and_why(tmp_path):
    p = make_dir(tmp_path / "d")
    _edit(p / "text", "spkA-u1 WORD SPKA-U1\n", "")                    # missing from text
    with open(p / "utt2spk", "a") as f:
        f.write("\nspkD-u9 spkD\n")                                   # empty line; not in wav.scp
    _edit(p / "km.mfcc100", "spkC-u0 1 2 8\n", "spkC-u0 1 2 8\nspkC-u0 1 2 8\n")  # duplicate
    _edit(p / "utt2num_samples", "spkB-u0 16003", "spkB-u0 lots")     # not a number
    t = lines(p / "wav.scp")
    (p / "wav.scp").write_text("\n".join(reversed(t)) + "\n")         # unsorted
    report = fix_data_dir(p)
    assert report.num_utts_before == 9 and report.num_utts_after == 7
    dropped = report.dropped
    assert dropped["text"] == {"utterance missing from utt2num_samples": 1}
    assert dropped["wav.scp"] == {"utterance missing from text": 1, "utterance missing from utt2num_samples": 1}
    assert dropped["utt2spk"] == {"utterance missing from wav.scp": 1, "empty line": 1,
                                  "utterance missing from text": 1, "utterance missing from utt2num_samples": 1}
    assert dropped["km.mfcc100"]["duplicate key (first occurrence kept)"] == 1
    assert "km.mfcc100: dropped 1 (duplicate key (first occurrence kept)) (e.g. spkC-u0 (line 7))" in str(report)
    assert dropped["utt2num_samples"]["not a positive integer"] == 1
    assert "wav.scp" in report.resorted and report.spk2utt_rebuilt
    s = str(report)
    assert "kept 7 of 9 utterances" in s and "utt2spk: dropped 1 (utterance missing from wav.scp) (e.g. spkD-u9)" in s
    validate_data_dir(p)
    d = DataDir.load(p)
    assert "spkA-u1" not in d.utt2spk and "spkB-u0" not in d.text and d.spk2utt["spkA"] == ["spkA-u0", "spkA-u2"]
    assert (p / ".backup" / "text").is_file()  # originals kept


def test_fix_segments_drops_unused_recordings_and_bad_times(tmp_path):
    p = make_dir(tmp_path / "d", segments=True)
    _edit(p / "segments", "spkB-u0 spkB-rec 0.0 0.75", "spkB-u0 spkB-rec 0.9 0.75")
    _edit(p / "segments", "spkB-u1 spkB-rec", "spkB-u1 spkX-rec")
    report = fix_data_dir(p)
    assert report.dropped["segments"] == {"bad times (expected 0 <= start < end)": 1, "recording not in wav.scp": 1}
    assert report.dropped["wav.scp"] == {"recording has no segments left": 1}
    assert report.dropped["text"] == {"utterance missing from segments": 2}
    assert "spkB" not in DataDir.load(p).spk2utt
    validate_data_dir(p)


def test_fix_clean_dir_changes_nothing(tmp_path):
    p = make_dir(tmp_path / "d")
    before = {x.name: x.read_text() for x in p.iterdir() if x.is_file()}
    report = fix_data_dir(p)
    assert not report.changed and "nothing to fix" in str(report)
    assert before == {x.name: x.read_text() for x in p.iterdir() if x.is_file()}


def test_fix_nothing_left_is_an_error(tmp_path):
    p = make_dir(tmp_path / "d")
    (p / "text").write_text("other-u1 X\n")
    with pytest.raises(DataDirError, match="no utterance is present in every file"):
        fix_data_dir(p)


# ---- split / subset / combine -----------------------------------------------------------------
def test_split_by_utterance_is_stable_and_complete(tmp_path):
    p = make_dir(tmp_path / "d")
    parts = split_data_dir(p, 4)
    assert parts == [p / "split4" / str(i) for i in range(1, 5)]
    got = [DataDir.load(x).utt_ids for x in parts]
    assert sum(got, []) == DataDir.load(p).utt_ids
    assert sorted(len(g) for g in got) == [2, 2, 2, 3]
    again = split_data_dir(p, 4, out_root=tmp_path / "o")
    assert [DataDir.load(x).utt_ids for x in again] == got
    for x in parts:
        validate_data_dir(x)


def test_split_by_speaker_keeps_speakers_whole(tmp_path):
    p = make_dir(tmp_path / "d", segments=True)
    parts = split_data_dir(p, 2, by_speaker=True)
    spk_sets = [set(DataDir.load(x).spk2utt) for x in parts]
    assert spk_sets == [{"spkA", "spkB"}, {"spkC"}]  # 5 / 4 utterances
    assert set(DataDir.load(parts[1]).wav_scp) == {"spkC-rec"}
    with pytest.raises(DataDirError, match="cannot split 3 speakers into 4 parts"):
        split_data_dir(p, 4, by_speaker=True)
    with pytest.raises(DataDirError, match="cannot split 9 utterances into 10 parts"):
        split_data_dir(p, 10)


def test_subset_first_random_list(tmp_path):
    p = make_dir(tmp_path / "d")
    all_utts = DataDir.load(p).utt_ids
    assert DataDir.load(subset_data_dir(p, tmp_path / "f", first=4)).utt_ids == all_utts[:4]
    r1 = DataDir.load(subset_data_dir(p, tmp_path / "r1", random=5, seed=3)).utt_ids
    r2 = DataDir.load(subset_data_dir(p, tmp_path / "r2", random=5, seed=3)).utt_ids
    r3 = DataDir.load(subset_data_dir(p, tmp_path / "r3", random=5, seed=4)).utt_ids
    assert r1 == r2 and len(r1) == 5 and set(r1) <= set(all_utts) and r1 != r3
    (tmp_path / "list").write_text("spkC-u1 x\nspkA-u0\nnot-there\n")
    sub = DataDir.load(subset_data_dir(p, tmp_path / "l", utt_list=tmp_path / "list"))
    assert sub.utt_ids == ["spkA-u0", "spkC-u1"] and set(sub.spk2utt) == {"spkA", "spkC"}
    with pytest.raises(DataDirError, match="cannot take 10 of 9"):
        subset_data_dir(p, tmp_path / "x", first=10)
    with pytest.raises(DataDirError, match="exactly one of"):
        subset_data_dir(p, tmp_path / "x", first=1, random=1)


def test_combine_round_trip_and_duplicates(tmp_path):
    p = make_dir(tmp_path / "d", segments=True)
    parts = split_data_dir(p, 3, by_speaker=True)
    out = combine_data_dirs(parts, tmp_path / "c")
    for name in ("wav.scp", "segments", "text", "utt2spk", "spk2utt", "km.mfcc100", "feats.scp"):
        assert (out / name).read_text() == (p / name).read_text(), name
    with pytest.raises(DataDirError, match=r"key 'spkA-u0' also in .*split3/1/segments"):
        combine_data_dirs([parts[0], parts[0]], tmp_path / "dup")


def test_combine_drops_tables_missing_somewhere(tmp_path):
    a = write_data_dir(tmp_path / "a", wav_scp={"a-1": "x"}, text={"a-1": "HI"})
    b = write_data_dir(tmp_path / "b", wav_scp={"b-1": "y"})
    out = combine_data_dirs([a, b], tmp_path / "c")
    assert not (out / "text").exists() and DataDir.load(out).utt_ids == ["a-1", "b-1"]


# ---- CLI and shell wrappers --------------------------------------------------------------------
def _sh(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, SPEECHKIT_PYTHON=sys.executable)
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_shell_wrappers(tmp_path):
    p = make_dir(tmp_path / "d")
    r = _sh("utils/validate_data_dir.sh", "--no-feats", str(p))
    assert r.returncode == 0 and "OK (9 utterances, 3 speakers" in r.stdout, r.stderr
    _edit(p / "text", "spkA-u1 WORD SPKA-U1\n", "")
    r = _sh("utils/validate_data_dir.sh", str(p))
    assert r.returncode == 1 and f"{p}/text: 1 of 9 utterances" in r.stderr
    r = _sh("utils/fix_data_dir.sh", str(p))
    assert r.returncode == 0 and "kept 8 of 9" in r.stdout and "wav.scp: dropped 1 (utterance missing from text)" in r.stdout
    r = _sh("utils/split_data_dir.sh", "--by-speaker", str(p), "2")
    assert r.returncode == 0 and len(DataDir.load(p / "split2" / "2").utt_ids) == 4, r.stderr
    r = _sh("utils/subset_data_dir.sh", "--first", str(p), "3", str(tmp_path / "s"))
    assert r.returncode == 0 and DataDir.load(tmp_path / "s").utt_ids == ["spkA-u0", "spkA-u2", "spkB-u0"]
    r = _sh("utils/combine_data_dir.sh", str(tmp_path / "c"), str(p / "split2" / "1"), str(p / "split2" / "2"))
    assert r.returncode == 0 and (tmp_path / "c" / "text").read_text() == (p / "text").read_text()
    for script in ("validate_data_dir.sh", "fix_data_dir.sh", "split_data_dir.sh", "subset_data_dir.sh",
                   "combine_data_dir.sh"):
        r = _sh(f"utils/{script}", "--help")
        assert r.returncode == 0 and "Usage:" in r.stdout, script


def test_cli_help_and_error_exit():
    r = _sh(sys.executable, "-m", "speechkit.bin.data_dir", "--help")
    assert r.returncode == 0 and "validate" in r.stdout and "combine" in r.stdout
    r = _sh(sys.executable, "-m", "speechkit.bin.data_dir", "validate", "/nonexistent/dir")
    assert r.returncode == 1 and "no such data directory" in r.stderr
