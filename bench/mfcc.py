"""Benchmark: speechkit MFCC (batched) vs fairseq's per-utterance torchaudio path.

Usage:
    python bench/mfcc.py [--seconds 600] [--repeats 3] [--threads 1] [--corpus-dir DIR]

Both sides compute the same 39-dim features (13 Kaldi MFCC + deltas + delta-deltas,
as fairseq's HuBERT dump_mfcc_feature.py) on the same in-memory audio in the same
process; timings are medians over --repeats. Audio: flac files under --corpus-dir
(e.g. the synthetic LibriSpeech-layout corpus) when given, else generated tone+noise
utterances of 1-15 s. Prints one line per figure with the ratio last.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def make_audio(seconds: float, corpus_dir: str | None, seed: int = 0) -> list[np.ndarray]:
    if corpus_dir:
        import soundfile as sf

        wavs, total = [], 0.0
        for p in sorted(pathlib.Path(corpus_dir).rglob("*.flac")):
            w, sr = sf.read(p, dtype="float32")
            wavs.append(w)
            total += len(w) / sr
            if total >= seconds:
                break
        if wavs:
            return wavs
    rng = np.random.default_rng(seed)
    wavs, total = [], 0.0
    while total < seconds:
        n = int(rng.uniform(1.0, 15.0) * 16000)
        t = np.arange(n) / 16000
        f0 = rng.uniform(90, 250)
        w = sum(0.2 / k * np.sin(2 * np.pi * k * f0 * t * (1 + 0.05 * np.sin(t))) for k in range(1, 6))
        w = w * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2) + 0.01 * rng.standard_normal(n)
        wavs.append(w.astype(np.float32))
        total += n / 16000
    return wavs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=600.0, help="seconds of audio")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both sides")
    ap.add_argument("--batch-seconds", type=float, default=60.0, help="audio per batched call (as the dump)")
    ap.add_argument("--corpus-dir", default=None)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from speechkit.features.mfcc import Mfcc, fairseq_reference_mfcc

    wavs = make_audio(args.seconds, args.corpus_dir)
    dur = sum(len(w) for w in wavs) / 16000
    mfcc = Mfcc()
    groups, cur, n = [], [], 0
    for w in wavs:  # the dump's grouping: ~batch_seconds of audio per call
        cur.append(w)
        n += len(w)
        if n >= args.batch_seconds * 16000:
            groups.append(cur)
            cur, n = [], 0
    if cur:
        groups.append(cur)

    def ours():
        return [f for g in groups for f in mfcc.batch(g)]

    def ref():
        return [fairseq_reference_mfcc(w) for w in wavs]

    ours(), ref()  # warm-up
    t_ours, t_ref, c_ours, c_ref = [], [], [], []
    for _ in range(args.repeats):  # interleaved so machine noise hits both alike
        t, c = time.perf_counter(), time.process_time()
        a = ours()
        t_ours.append(time.perf_counter() - t); c_ours.append(time.process_time() - c)
        t, c = time.perf_counter(), time.process_time()
        b = ref()
        t_ref.append(time.perf_counter() - t); c_ref.append(time.process_time() - c)
    diff = max(float(np.abs(x - y).max()) for x, y in zip(a, b))
    mo, mr = statistics.median(t_ours), statistics.median(t_ref)
    print(f"# {len(wavs)} utterances, {dur:.0f} s of audio, torch threads {args.threads}, "
          f"{os.cpu_count()} cpus, median of {args.repeats}")
    print(f"mfcc+deltas throughput: speechkit {dur / mo:.0f}x real time ({mo:.2f} s), "
          f"fairseq torchaudio per-utterance {dur / mr:.0f}x real time ({mr:.2f} s), ratio {mr / mo:.2f}x")
    co, cr = statistics.median(c_ours), statistics.median(c_ref)  # CPU seconds: robust to a loaded machine
    print(f"mfcc+deltas CPU time: speechkit {co:.2f} s, fairseq torchaudio per-utterance {cr:.2f} s, "
          f"ratio {cr / co:.2f}x")
    print(f"mfcc+deltas max abs difference vs reference: {diff:.2e} (tolerance 1e-4), ratio {diff / 1e-4:.3f}")
    return 0 if diff <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
