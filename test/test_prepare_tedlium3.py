"""TED-LIUM 3 preparation on a fake corpus in the release-3 layout (SPHERE + STM)."""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from fake_corpora import make_tedlium3
from speechkit.corpora.tedlium3 import (
    Tedlium3Error,
    normalize_words,
    parse_stm_line,
    prepare_tedlium3,
    read_sphere_header,
    utt_id,
)
from speechkit.io.audio import AudioReader, load_audio
from speechkit.io.datadir import DataDir, read_segments, read_table, validate_data_dir

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fake_src(tmp_path_factory):
    return make_tedlium3(tmp_path_factory.mktemp("ted"), splits=("legacy", "speaker-adaptation"))


@pytest.fixture
def fake(fake_src, tmp_path):
    """A private copy the test may damage."""
    shutil.copytree(fake_src.root, tmp_path / "TEDLIUM_release-3")
    import dataclasses
    return dataclasses.replace(fake_src, root=tmp_path / "TEDLIUM_release-3")


# ---------------------------------------------------------------- text and ids

def test_normalize_words():
    w = "{NOISE} i 'm here <sil> to show you 're photographs(2) of the <unk> {SMACK}".split()
    assert normalize_words(w) == "i'm here to show you're photographs of the <unk>"
    assert normalize_words(w, noise="map") == \
        "[NOISE] i'm here to show you're photographs of the <unk> [SMACK]"
    assert normalize_words(w, join_clitics=False) == \
        "i 'm here to show you 're photographs of the <unk>"
    assert normalize_words("do n't stop (AaronHuey_2010X-12)".split()) == "don't stop"
    # a clitic never glues onto a marker, nor starts a transcript
    assert normalize_words("'s fine".split()) == "'s fine"
    assert normalize_words("<unk> 's".split()) == "<unk> 's"
    assert normalize_words(["{NOISE}", "<sil>"]) == ""
    with pytest.raises(ValueError, match="noise"):
        normalize_words(["a"], noise="keep")


def test_parse_stm_line():
    seg = parse_stm_line("T_2010X 1 T_2010X 17.82 28.81 <o,f0,male> i 'm here\n", "x.stm:3")
    assert (seg.talk, seg.start, seg.end, seg.words) == ("T_2010X", 17.82, 28.81,
                                                         ["i", "'m", "here"])
    # older dev label style, and <unk> first word with no label
    assert parse_stm_line("T 1 T 1.0 2.0 <F0_M> hello", "x").words == ["hello"]
    assert parse_stm_line("T 1 T 1.0 2.0 <unk> hello", "x").words == ["<unk>", "hello"]
    assert parse_stm_line(";; LABEL \"o\" \"Overall\"", "x") is None
    assert parse_stm_line("   \n", "x") is None
    assert parse_stm_line("T 1 T 0 5 <o,f0,male> ignore_time_segment_in_scoring", "x").ignored
    with pytest.raises(Tedlium3Error, match=r"talk9\.stm:4.*not numbers"):
        parse_stm_line("T 1 T 1.0 abc <o> hi", "talk9.stm:4")
    with pytest.raises(Tedlium3Error, match=r"a\.stm:1.*expected"):
        parse_stm_line("T 1 T 1.0", "a.stm:1")


def test_utt_id_rounds_and_sorts_chronologically():
    assert int(1.13 * 100) == 112  # floating point: truncation would be off by one
    assert utt_id("T", 1.13, 28.81) == "T-0000113-0002881"
    ids = [utt_id("T", s, s + 1.0) for s in (0.5, 9.99, 10.0, 123.4, 1000.0)]
    assert ids == sorted(ids)


def test_sphere_header(fake):
    sph = fake.sph("legacy", "dev", fake.talks[("legacy", "dev")][0])
    hdr = read_sphere_header(sph)
    info = sf.info(str(sph))
    assert (hdr.sample_rate, hdr.sample_count, hdr.channel_count) == (16000, info.frames, 1)
    assert not hdr.truncated and hdr.duration == pytest.approx(info.duration)


# ---------------------------------------------------------------- preparation

def _check_against_fake(fake, split, out, reports):
    for set_name in ("train", "dev", "test"):
        key = (split, set_name)
        d = out / set_name
        validate_data_dir(d)
        dd = DataDir.load(d)
        assert dd.text == fake.expected[key]  # every kept utterance, normalised text
        assert list(dd.text) == sorted(dd.text)
        assert set(dd.wav_scp) == set(fake.talks[key])
        for talk in fake.talks[key]:
            assert dd.wav_scp[talk] == str(fake.sph(split, set_name, talk))
        assert all(spk == u.rsplit("-", 2)[0] for u, spk in dd.utt2spk.items())
        rep = reports[set_name]
        assert rep.num_segments == len(fake.expected[key])
        assert rep.num_talks == len(fake.talks[key])
        assert rep.skipped["ignored"] == fake.num_ignored[key]
        assert rep.skipped["empty_duration"] == fake.num_zero_length[key]
        assert sum(rep.skipped.values()) == fake.num_ignored[key] + fake.num_zero_length[key]
        assert rep.num_segments + sum(rep.skipped.values()) == rep.num_stm_lines


def test_prepare_legacy_and_speaker_adaptation(fake, tmp_path):
    reports = prepare_tedlium3(fake.root.parent, tmp_path / "data", num_jobs=2)
    _check_against_fake(fake, "legacy", tmp_path / "data", reports)
    reports = prepare_tedlium3(fake.root, tmp_path / "sa", split="speaker-adaptation")
    _check_against_fake(fake, "speaker-adaptation", tmp_path / "sa", reports)

    # segments hold the STM times; the audio there is speech bounded by silence
    segs = read_segments(tmp_path / "data" / "dev" / "segments")
    reader = AudioReader(tmp_path / "data" / "dev")
    for utt, (rec, start, end) in segs.items():
        assert utt == utt_id(rec, start, end)
        wav = reader[utt]
        assert len(wav) == round((end - start) * 16000)
        assert np.abs(wav).max() > 0.01
        full = load_audio(reader.data.wav_scp[rec])
        s = round(start * 16000)
        assert np.abs(full[s - 160:s]).max() == 0  # silence just before the segment


def test_matches_lhotse_segmentation(fake, tmp_path):
    """Same segments (talk, start, end) as lhotse's TED-LIUM recipe, minus zero-length ones."""
    # lhotse's STM parser (its full recipe needs the sph2pipe binary to read .sph headers)
    from lhotse.recipes.tedlium import _parse_stm_file

    ours = prepare_tedlium3(fake.root, tmp_path / "data", sets=("dev",))
    theirs = [s for stm in sorted((fake.root / "legacy" / "dev" / "stm").glob("*.stm"))
              for s in _parse_stm_file(stm)]
    expect = {(s.recording_id, round(s.start, 2), round(s.end, 2))
              for s in theirs if s.duration > 0}
    got = {(r, round(a, 2), round(b, 2))
           for r, a, b in read_segments(ours["dev"].data_dir / "segments").values()}
    assert got == expect


def test_missing_talk_is_counted_skip_or_strict_error(fake, tmp_path):
    key = ("legacy", "test")
    gone = fake.talks[key][1]
    fake.sph("legacy", "test", gone).unlink()
    n_gone = sum(u.startswith(gone + "-") for u in fake.expected[key])
    rep = prepare_tedlium3(fake.root, tmp_path / "data", sets=("test",))["test"]
    assert rep.skipped["missing_audio"] == n_gone > 0
    assert rep.num_segments + sum(rep.skipped.values()) == rep.num_stm_lines
    text = read_table(tmp_path / "data" / "test" / "text")
    assert set(text) == {u for u in fake.expected[key] if not u.startswith(gone + "-")}
    assert gone not in read_table(tmp_path / "data" / "test" / "wav.scp")
    with pytest.raises(Tedlium3Error, match=rf"{gone}\.sph: missing audio"):
        prepare_tedlium3(fake.root, tmp_path / "strict", sets=("test",), strict=True)


def test_truncated_sph(fake, tmp_path):
    key = ("legacy", "dev")
    talk = fake.talks[key][0]
    sph = fake.sph("legacy", "dev", talk)
    utts = sorted(u for u in fake.expected[key] if u.startswith(talk + "-"))
    last_start, last_end = (int(x) / 100 for x in utts[-1].rsplit("-", 2)[1:])
    hdr = read_sphere_header(sph)
    # cut the file 1 s before the last segment ends: that segment is past the end
    cut = hdr.header_bytes + 2 * int((last_end - 1.0) * 16000)
    assert last_end - 1.0 > last_start
    os.truncate(sph, cut)
    rep = prepare_tedlium3(fake.root, tmp_path / "a", sets=("dev",))["dev"]
    assert rep.truncated_talks == [talk]
    assert rep.skipped["beyond_audio"] == 1
    assert rep.num_segments + sum(rep.skipped.values()) == rep.num_stm_lines
    assert set(read_table(tmp_path / "a" / "dev" / "text")) == set(fake.expected[key]) - {utts[-1]}
    with pytest.raises(Tedlium3Error, match=r"truncated, header says"):
        prepare_tedlium3(fake.root, tmp_path / "s", sets=("dev",), strict=True)

    # cut 0.2 s short instead: within max_overshoot, the segment is clipped to the audio
    assert last_end - 0.2 > last_start
    sf.write(sph, np.full(int((last_end - 0.2) * 16000), 0.1, np.float32), 16000,
             format="NIST", subtype="PCM_16")  # a complete file, just too short
    rep = prepare_tedlium3(fake.root, tmp_path / "b", sets=("dev",))["dev"]
    assert rep.num_clipped == 1 and rep.skipped["beyond_audio"] == 0
    _, start, end = read_segments(tmp_path / "b" / "dev" / "segments")[utts[-1]]
    assert end == pytest.approx(last_end - 0.2, abs=1e-3) and end <= last_end - 0.2
    wav = AudioReader(tmp_path / "b" / "dev")[utts[-1]]  # readable, ends at the last sample
    assert len(wav) == pytest.approx((end - start) * 16000, abs=16)


def test_unreadable_header_is_counted(fake, tmp_path):
    key = ("legacy", "dev")
    talk = fake.talks[key][1]
    sph = fake.sph("legacy", "dev", talk)
    os.truncate(sph, 100)  # header cut before end_head
    rep = prepare_tedlium3(fake.root, tmp_path / "a", sets=("dev",))["dev"]
    n = sum(u.startswith(talk + "-") for u in fake.expected[key])
    assert rep.skipped["bad_audio"] == n > 0
    assert rep.num_segments + sum(rep.skipped.values()) == rep.num_stm_lines
    with pytest.raises(Tedlium3Error, match=r"truncated SPHERE header"):
        prepare_tedlium3(fake.root, tmp_path / "s", sets=("dev",), strict=True)
    sph.write_bytes(b"RIFF....not a sphere file")
    with pytest.raises(Tedlium3Error, match=r"not a NIST SPHERE file"):
        prepare_tedlium3(fake.root, tmp_path / "s", sets=("dev",), strict=True)


def test_structural_errors(fake, tmp_path):
    with pytest.raises(Tedlium3Error, match="no TED-LIUM 3 layout"):
        prepare_tedlium3(tmp_path / "nowhere", tmp_path / "data")
    shutil.rmtree(fake.root / "legacy" / "test" / "stm")
    with pytest.raises(Tedlium3Error, match=r"test/stm: folder missing"):
        prepare_tedlium3(fake.root, tmp_path / "data", sets=("test",))
    stm = fake.stm("legacy", "dev", fake.talks[("legacy", "dev")][0])
    stm.write_text(stm.read_text() + "broken line\n")
    with pytest.raises(Tedlium3Error, match=rf"{stm.name}:\d+: expected"):
        prepare_tedlium3(fake.root, tmp_path / "data", sets=("dev",))


def test_sph2pipe_option(fake, tmp_path, monkeypatch):
    path = os.environ.get("PATH", "")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(Tedlium3Error, match="sph2pipe was asked for"):
        prepare_tedlium3(fake.root, tmp_path / "data", sets=("dev",), sph2pipe=True)
    tool = tmp_path / "bin" / "sph2pipe"  # a stand-in that converts like sph2pipe -f wav -p
    tool.parent.mkdir()
    tool.write_text(f"#!{sys.executable}\nimport sys, io, soundfile as sf\n"
                    "d, r = sf.read(sys.argv[-1], dtype='int16')\nb = io.BytesIO()\n"
                    "sf.write(b, d, r, format='WAV', subtype='PCM_16')\n"
                    "sys.stdout.buffer.write(b.getvalue())\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tool.parent}{os.pathsep}{path}")
    prepare_tedlium3(fake.root, tmp_path / "data", sets=("dev",), sph2pipe=True)
    scp = read_table(tmp_path / "data" / "dev" / "wav.scp")
    talk = fake.talks[("legacy", "dev")][0]
    assert scp[talk] == f"{tool} -f wav -p {fake.sph('legacy', 'dev', talk)} |"
    a = AudioReader(tmp_path / "data" / "dev")
    utt = a.utt_ids[0]
    _, s, e = a.data.segments[utt]
    np.testing.assert_allclose(a[utt], load_audio(str(fake.sph("legacy", "dev", talk)), 16000,
                                                  s, e), atol=1e-6)


def test_sph2pipe_paths_are_quoted(fake_src, tmp_path, monkeypatch):
    # Shell syntax in the corpus path (and a space in the tool's) must be data, not code.
    root = tmp_path / "ted $(touch${IFS}PWNED) (1)" / "TEDLIUM_release-3"
    shutil.copytree(fake_src.root, root)
    tool = tmp_path / "my tools" / "sph2pipe"
    tool.parent.mkdir()
    tool.write_text(f"#!{sys.executable}\nimport sys, io, soundfile as sf\n"
                    "d, r = sf.read(sys.argv[-1], dtype='int16')\nb = io.BytesIO()\n"
                    "sf.write(b, d, r, format='WAV', subtype='PCM_16')\n"
                    "sys.stdout.buffer.write(b.getvalue())\n")
    tool.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    prepare_tedlium3(root, tmp_path / "data", sets=("dev",), sph2pipe=str(tool))
    a = AudioReader(tmp_path / "data" / "dev")
    for utt in a.utt_ids[:2]:
        assert a[utt].size > 0
    assert not (tmp_path / "PWNED").exists()


def test_real_an4_sphere(an4_dir, tmp_path):
    """A real SPHERE file from an4, placed in the TED-LIUM layout, reads via wav.scp."""
    src = sorted(an4_dir.glob("wav/**/*.sph"))[0]
    d = tmp_path / "TEDLIUM_release-3" / "legacy" / "dev"
    (d / "sph").mkdir(parents=True)
    (d / "stm").mkdir()
    (d / "sph" / "an4talk.sph").symlink_to(src)
    dur = sf.info(str(src)).duration
    (d / "stm" / "an4talk.stm").write_text(
        f"an4talk 1 an4talk 0.00 0.10 <o,f0,male> ignore_time_segment_in_scoring\n"
        f"an4talk 1 an4talk 0.10 {dur - 0.05:.2f} <o,f0,male> hello world\n")
    rep = prepare_tedlium3(tmp_path, tmp_path / "data", sets=("dev",))["dev"]
    assert rep.num_segments == 1 and rep.skipped["ignored"] == 1
    hdr = read_sphere_header(src)
    assert hdr.sample_count == sf.info(str(src)).frames and not hdr.truncated
    reader = AudioReader(tmp_path / "data" / "dev")
    (utt,) = reader.utt_ids
    ref, sr = sf.read(str(src), dtype="float32")
    assert sr == 16000
    np.testing.assert_allclose(reader[utt], ref[1600:1600 + len(reader[utt])], atol=1e-6)
    assert len(reader[utt]) == round((dur - 0.05 - 0.10) * 16000)


def test_cli(fake, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", "speechkit.bin.prepare_tedlium3", "--help"],
                         capture_output=True, text=True, env=env, check=True).stdout
    assert "--split" in out and "--strict" in out
    from speechkit.bin.prepare_tedlium3 import main
    assert main([str(fake.root), str(tmp_path / "data"), "--sets", "dev", "--noise", "map",
                 "--num-jobs", "2"]) == 0
    text = read_table(tmp_path / "data" / "dev" / "text")
    assert sum(v.startswith("[NOISE] ") for v in text.values()) == 2  # one per talk


def test_noise_only_and_duplicate_lines(fake, tmp_path, monkeypatch):
    key = ("legacy", "dev")
    talk = fake.talks[key][1]
    stm = fake.stm("legacy", "dev", talk)
    lines = stm.read_text().splitlines()
    extra = [f"{talk} 1 {talk} 0.10 0.30 <o,f0,male> {{NOISE}} <sil>", lines[1]]
    stm.write_text("\n".join(lines + extra) + "\n")
    monkeypatch.chdir(fake.root.parent)  # a relative corpus_dir still gives absolute paths
    rep = prepare_tedlium3("TEDLIUM_release-3", tmp_path / "a", sets=("dev",))["dev"]
    assert rep.skipped["empty_text"] == 1 and rep.skipped["duplicate"] == 1
    assert rep.num_segments == len(fake.expected[key])
    assert rep.num_segments + sum(rep.skipped.values()) == rep.num_stm_lines
    assert all(pathlib.Path(p).is_absolute()
               for p in read_table(tmp_path / "a" / "dev" / "wav.scp").values())
    rep = prepare_tedlium3(fake.root, tmp_path / "b", sets=("dev",), noise="map")["dev"]
    assert rep.skipped["empty_text"] == 0
    assert read_table(tmp_path / "b" / "dev" / "text")[f"{talk}-0000010-0000030"] == "[NOISE]"
