"""Kaldi-compatible MFCC/fbank against torchaudio, and the feature dump."""
import pathlib
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from speechkit.features.dump import dump_job, job_slice, make_extractor, merge_dump, select_portion
from speechkit.features.kaldi import Fbank, num_frames
from speechkit.features.mfcc import Mfcc, fairseq_reference_mfcc
from speechkit.io.ark import read_scp
from speechkit.io.datadir import read_table, write_data_dir

LENGTHS = [400, 401, 559, 560, 1000, 16000, 37123]


def _wav(n: int, seed: int) -> np.ndarray:
    """Speech-like test signal in [-1, 1]: tones + noise, with a near-silent stretch."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    w = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 1800 * t) + 0.05 * rng.standard_normal(n)
    w[: n // 3] *= 1e-3  # quiet start: small mel energies, where rounding differences would show
    return w.astype(np.float32)


@pytest.mark.parametrize("n", LENGTHS)
def test_mfcc_matches_fairseq_reference(n):
    w = _wav(n, n)
    ref = fairseq_reference_mfcc(w)
    ours = Mfcc()(w)
    assert ours.shape == ref.shape == (num_frames(n), 39)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)


def test_mfcc_batch_equals_single_and_reference():
    wavs = [_wav(n, i) for i, n in enumerate([16000, 401, 8000, 23456, 399, 400])]
    m = Mfcc()
    batch = m.batch(wavs)
    for w, b in zip(wavs, batch):
        if len(w) < 400:
            assert b.shape == (0, 39)  # shorter than one window: no frames
            continue
        np.testing.assert_allclose(b, fairseq_reference_mfcc(w), rtol=0, atol=1e-4)
        np.testing.assert_allclose(b, m(w), rtol=0, atol=1e-5)


def test_mfcc_small_chunks_cross_utterance_boundaries():
    # a chunk smaller than an utterance forces utterances to straddle FFT blocks
    wavs = [_wav(n, i) for i, n in enumerate([5000, 3000, 7000])]
    m = Mfcc()
    logmel, counts = m.front.log_mel_batch(wavs, chunk_frames=7)
    full, _ = m.front.log_mel_batch(wavs)
    assert counts == [num_frames(len(w)) for w in wavs]
    torch.testing.assert_close(logmel, full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("bins", [80, 23, 40])
@pytest.mark.parametrize("n", [400, 1000, 16000, 37123])
def test_fbank_matches_torchaudio(bins, n):
    w = _wav(n, n + bins)
    ref = torchaudio.compliance.kaldi.fbank(torch.from_numpy(w).view(1, -1), num_mel_bins=bins).numpy()
    ours = Fbank(num_mel_bins=bins)(w)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)


def test_extractor_registry_and_errors():
    assert make_extractor("fbank", num_mel_bins=40).dim == 40
    assert make_extractor("mfcc").dim == 39
    with pytest.raises(ValueError, match="unknown feature type 'nope'"):
        make_extractor("nope")
    with pytest.raises(ValueError, match="1-D"):
        Mfcc()(np.zeros((2, 800), np.float32))


def _make_data_dir(root: pathlib.Path, n_utts: int = 8) -> tuple[pathlib.Path, dict[str, np.ndarray]]:
    wav_dir = root / "wav"
    wav_dir.mkdir(parents=True)
    wav_scp, utt2spk, audio = {}, {}, {}
    for i in range(n_utts):
        spk = f"spk{i % 3}"
        utt = f"{spk}-utt{i:02d}"
        w = _wav(4000 + 997 * i, i)
        sf.write(wav_dir / f"{utt}.wav", w, 16000, subtype="FLOAT")
        wav_scp[utt], utt2spk[utt], audio[utt] = str(wav_dir / f"{utt}.wav"), spk, w
    return write_data_dir(root / "data", wav_scp=wav_scp, utt2spk=utt2spk), audio


def test_job_split_and_portion_are_stable():
    utts = [f"u{i:03d}" for i in range(10)]
    parts = [job_slice(utts, j, 3) for j in (1, 2, 3)]
    assert sum(parts, []) == utts and [len(p) for p in parts] == [3, 3, 4]
    p1, p2 = select_portion(utts, 0.3, seed=5), select_portion(list(reversed(utts)), 0.3, seed=5)
    assert p1 == p2 and len(p1) == 3 and p1 == sorted(p1)
    with pytest.raises(ValueError):
        job_slice(utts, 4, 3)


def test_dump_jobs_merge(tmp_path):
    data, audio = _make_data_dir(tmp_path)
    out = tmp_path / "dump"
    ext = Mfcc()
    for j in (1, 2):
        dump_job(data, ext, out, j, 2)
    merge_dump(out, 2, {"feat": "mfcc"})
    feats = read_scp(out / "feats.scp")
    u2nf = read_table(out / "utt2num_frames")
    assert list(feats) == sorted(audio) == list(u2nf)
    for utt, w in audio.items():
        f = feats[utt]
        assert f.shape == (num_frames(len(w)), 39) and int(u2nf[utt]) == len(f)
        np.testing.assert_allclose(f, fairseq_reference_mfcc(w), rtol=0, atol=1e-4)
    # shards hold disjoint halves
    s1, s2 = read_table(out / "feats.1.scp"), read_table(out / "feats.2.scp")
    assert not set(s1) & set(s2) and len(s1) == 4


def test_dump_missing_job_is_an_error(tmp_path):
    data, _ = _make_data_dir(tmp_path, 4)
    dump_job(data, Mfcc(), tmp_path / "d", 1, 2)
    with pytest.raises(ValueError, match=r"feats\.2\.scp"):
        merge_dump(tmp_path / "d", 2)


def test_dump_cli_parallel_through_launcher_with_portion(tmp_path):
    from speechkit.bin import dump_features

    data, audio = _make_data_dir(tmp_path, 6)
    out = tmp_path / "dump_p"
    rc = dump_features.main(["--data-dir", str(data), "--feat", "fbank", "--num-mel-bins", "40",
                             "--out", str(out), "--nj", "2", "--portion", "0.5", "--seed", "3"])
    assert rc == 0
    feats = read_scp(out / "feats.scp")
    assert list(feats) == select_portion(sorted(audio), 0.5, seed=3)
    assert all(feats[u].shape == (num_frames(len(audio[u])), 40) for u in feats)
    assert (out / "log" / "dump.1.log").is_file() and (out / "log" / "dump.2.log").is_file()


def test_dump_cli_help():
    import subprocess

    r = subprocess.run([sys.executable, "-m", "speechkit.bin.dump_features", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--portion" in r.stdout


def test_dump_cli_paths_with_shell_syntax_are_data(tmp_path, monkeypatch):
    # The launcher runs its command through bash: paths must reach the jobs quoted.
    from speechkit.bin import dump_features

    root = tmp_path / "d$(touch${IFS}PWNED) dev(1)"
    data, audio = _make_data_dir(root, 4)
    out = root / "dump $(touch PWNED2)"
    monkeypatch.chdir(tmp_path)
    rc = dump_features.main(["--data-dir", str(data), "--feat", "mfcc", "--out", str(out), "--nj", "2"])
    assert rc == 0
    assert list(read_scp(out / "feats.scp")) == sorted(audio)
    assert not list(tmp_path.glob("PWNED*"))


def test_dump_cli_empty_data_dir_fails_before_launching(tmp_path):
    from speechkit.bin import dump_features

    data = tmp_path / "data"
    data.mkdir()
    for name in ("wav.scp", "utt2spk", "spk2utt"):
        (data / name).write_text("")
    out = tmp_path / "dump"
    with pytest.raises(SystemExit, match=r"wav\.scp: empty"):
        dump_features.main(["--data-dir", str(data), "--out", str(out), "--nj", "2"])
    assert not (out / "log").exists()  # no job was launched
    (data / "wav.scp").write_text("u1 /nonexistent.wav\n")  # utt2spk does not cover it: invalid, also caught
    with pytest.raises(SystemExit, match=r"utt2spk"):
        dump_features.main(["--data-dir", str(data), "--out", str(out), "--nj", "2"])
    assert not (out / "log").exists()


def test_dump_cli_reports_skipped_utterances_and_fails_on_none(tmp_path, capsys):
    from speechkit.bin import dump_features

    wav_dir = tmp_path / "wav"
    wav_dir.mkdir()
    lengths = {"spk0-a": 8000, "spk0-b": 200, "spk1-c": 6000}  # 200 samples: shorter than one 400-sample window
    wav_scp = {}
    for utt, n in lengths.items():
        sf.write(wav_dir / f"{utt}.wav", _wav(n, 1), 16000, subtype="FLOAT")
        wav_scp[utt] = str(wav_dir / f"{utt}.wav")
    data = write_data_dir(tmp_path / "data", wav_scp=wav_scp, utt2spk={u: u.split("-")[0] for u in wav_scp})
    out = tmp_path / "dump"
    assert dump_features.main(["--data-dir", str(data), "--out", str(out), "--nj", "2"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line == f"wrote 2 of 3 utterances to {out / 'feats.scp'}, 1 skipped (list in {out / 'skipped'})"
    assert read_table(out / "skipped") == {"spk0-b": "200"} and list(read_table(out / "feats.scp")) == ["spk0-a", "spk1-c"]

    short = write_data_dir(tmp_path / "short", wav_scp={"spk0-b": wav_scp["spk0-b"]}, utt2spk={"spk0-b": "spk0"})
    with pytest.raises(SystemExit, match=r"wrote 0 of 1 utterances.*list in .*skipped"):
        dump_features.main(["--data-dir", str(short), "--out", str(tmp_path / "dump0")])
    assert not (tmp_path / "dump0" / "feats.scp").exists()


def test_run_jobs_names_only_the_failed_jobs(tmp_path):
    from speechkit.features.dump import run_jobs

    log = tmp_path / "log" / "x.JOB.log"
    with pytest.raises(RuntimeError, match=r"^1 of 2 job\(s\) via .* failed .*job 1: exit code 3, see .*x\.1\.log$"):
        run_jobs("utils/run.pl", 2, log, [sys.executable, "-c", "import sys; sys.exit(3 if JOB == 1 else 0)"])
