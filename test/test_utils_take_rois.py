"""utils/take_rois.sh: a data dir takes the ROI tables of the bigger data dir that contains it."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _data_dir(d: pathlib.Path, utts: list[str], roi: list[str] | None = None) -> pathlib.Path:
    d.mkdir(parents=True)
    (d / "wav.scp").write_text("".join(f"{u} /x/{u}.wav\n" for u in utts))
    (d / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in utts))
    spk: dict[str, list[str]] = {}
    for u in utts:
        spk.setdefault(u.split("-")[0], []).append(u)
    (d / "spk2utt").write_text("".join(f"{s} {' '.join(us)}\n" for s, us in sorted(spk.items())))
    if roi is not None:
        (d / "video.scp").write_text("".join(f"{u} /roi/{u}.mp4\n" for u in roi))
        (d / "utt2num_frames").write_text("".join(f"{u} {10 + i}\n" for i, u in enumerate(roi)))
        (d / "utt2roi").write_text("".join(f"{u} face\n" for u in roi))
    return d


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SPEECHKIT_PYTHON": sys.executable}
    return subprocess.run(["bash", str(ROOT / "utils" / "take_rois.sh"), *args], capture_output=True, text=True,
                          env=env, timeout=60)


def test_takes_the_rows_of_its_utterances(tmp_path):
    big = _data_dir(tmp_path / "big", ["a-1", "a-2", "b-1", "b-2"], roi=["a-1", "a-2", "b-2"])  # b-1: no face
    small = _data_dir(tmp_path / "small", ["a-2", "b-1", "b-2"])
    res = _run(str(big), str(small))
    assert res.returncode == 0, res.stderr
    assert (small / "video.scp").read_text() == "a-2 /roi/a-2.mp4\nb-2 /roi/b-2.mp4\n"
    assert (small / "utt2num_frames").read_text() == "a-2 11\nb-2 12\n"
    assert (small / "utt2roi").read_text() == "a-2 face\nb-2 face\n"
    assert "2 of 3 utterances" in res.stdout


def test_needs_the_rois_of_the_bigger_dir(tmp_path):
    big = _data_dir(tmp_path / "big", ["a-1"])
    small = _data_dir(tmp_path / "small", ["a-1"])
    res = _run(str(big), str(small))
    assert res.returncode == 1 and "video.scp not found" in res.stderr
    assert _run("--help").returncode == 0


def test_an_utterance_outside_the_bigger_dir_is_an_error(tmp_path):
    big = _data_dir(tmp_path / "big", ["a-1", "a-2"], roi=["a-1", "a-2"])
    small = _data_dir(tmp_path / "small", ["a-2", "b-9"])
    res = _run(str(big), str(small))
    assert res.returncode == 1 and "1 utterance(s)" in res.stderr and "b-9" in res.stderr
    assert not (small / "video.scp").exists()
