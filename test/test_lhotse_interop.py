"""A data dir written by speechkit loads in lhotse with the same recordings, durations, texts, speakers."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from speechkit.io.audio import AudioReader, audio_duration
from speechkit.io.datadir import DataDir, write_data_dir

lhotse_kaldi = pytest.importorskip("lhotse.kaldi")

SR = 16000


def _recordings(tmp_path, lengths):
    rng = np.random.default_rng(0)
    wav = {}
    for i, (spk, n) in enumerate(lengths):
        p = tmp_path / "audio" / f"{spk}-rec{i}.flac"
        p.parent.mkdir(exist_ok=True)
        sf.write(p, (0.1 * rng.standard_normal(n)).astype(np.float32), SR)
        wav[f"{spk}-rec{i}"] = str(p)
    return wav


def test_lhotse_reads_recordings_and_durations(tmp_path):
    wav = _recordings(tmp_path, [("spkA", 16000), ("spkA", 12345), ("spkB", 20800)])
    d = write_data_dir(tmp_path / "d", wav_scp=wav, text={u: f"HELLO {i}" for i, u in enumerate(wav)},
                       utt2spk={u: u.split("-")[0] for u in wav})
    recs, sups, _ = lhotse_kaldi.load_kaldi_data_dir(d, sampling_rate=SR)
    assert sorted(r.id for r in recs) == sorted(wav)
    for r in recs:
        assert r.sampling_rate == SR
        # lhotse truncates durations to whole milliseconds
        assert r.duration == pytest.approx(audio_duration(wav[r.id]), abs=1e-3)
    ours = AudioReader(d)["spkA-rec1"]
    theirs = recs["spkA-rec1"].load_audio()[0]
    assert len(ours) == 12345 and abs(len(theirs) - len(ours)) <= SR // 1000
    np.testing.assert_allclose(theirs, ours[: len(theirs)], atol=1e-6)


def test_lhotse_reads_pipes_with_our_reco2dur(tmp_path):
    # lhotse cannot measure a `cmd |` entry without kaldi_native_io; a reco2dur written by
    # speechkit (durations measured by decoding the pipe) lets it load the dir as is.
    wav = _recordings(tmp_path, [("spkA", 16000), ("spkB", 8000)])
    wav["spkB-rec1"] = f"cat {wav['spkB-rec1']} |"
    d = write_data_dir(tmp_path / "d", wav_scp=wav)
    dd = DataDir.load(d)
    dd.reco_extra["reco2dur"] = {r: audio_duration(spec) for r, spec in dd.wav_scp.items()}
    dd.save()
    recs, _, _ = lhotse_kaldi.load_kaldi_data_dir(d, sampling_rate=SR)
    assert {r.id: r.duration for r in recs} == pytest.approx({"spkA-rec0": 1.0, "spkB-rec1": 0.5})
    assert recs["spkB-rec1"].sources[0].type == "command"


def test_lhotse_reads_segments_texts_and_speakers(tmp_path):
    wav = _recordings(tmp_path, [("spkA", 48000), ("spkB", 40000)])
    segments = {"spkA-rec0-000": ("spkA-rec0", 0.0, 1.25), "spkA-rec0-001": ("spkA-rec0", 1.5, 2.75),
                "spkB-rec1-000": ("spkB-rec1", 0.5, 2.4)}
    text = {"spkA-rec0-000": "HELLO WORLD", "spkA-rec0-001": "", "spkB-rec1-000": "GOOD MORNING"}
    utt2spk = {u: u.split("-")[0] for u in segments}
    d = write_data_dir(tmp_path / "d", wav_scp=wav, segments=segments, text=text, utt2spk=utt2spk)
    recs, sups, _ = lhotse_kaldi.load_kaldi_data_dir(d, sampling_rate=SR)
    ours = DataDir.load(d)
    assert sorted(r.id for r in recs) == sorted(ours.wav_scp)
    assert {r.id: r.duration for r in recs} == pytest.approx({"spkA-rec0": 3.0, "spkB-rec1": 2.5})
    assert sups is not None and sorted(s.id for s in sups) == ours.utt_ids
    reader = AudioReader(ours)
    for s in sups:
        rec, start, end = ours.segments[s.id]
        assert s.recording_id == rec
        assert s.start == pytest.approx(start) and s.duration == pytest.approx(end - start)
        assert (s.text or "") == ours.text[s.id]
        assert s.speaker == ours.utt2spk[s.id]
        assert reader.duration(s.id) == pytest.approx(s.duration)
        assert len(reader[s.id]) == round(s.duration * SR)
