"""Write a folder of seeded synthetic noise recordings (a stand-in for MUSAN's noise part).

Usage:
    python -m speechkit.bin.make_noise_dir --out corpus/noise [--num-files 6] [--seconds 20] [--seed 0]

The mini AV recipe decodes on noisy audio without downloading MUSAN; this gives it non-speech noise of
several colours (white, pink, brown), each with a random mains-like hum and slow loudness changes, as
16 kHz 16-bit mono wavs ``noise_<k>.wav``. The same seed writes the same files (bit-identical).
Point ``--noise-dir`` of speechkit.bin.finetune_av / decode_seq2seq at the folder.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

COLOURS = ("white", "pink", "brown")


def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise shaped to 1/f^a power (a = 0 white, 1 pink, 2 brown) in the frequency domain."""
    a = {"white": 0.0, "pink": 1.0, "brown": 2.0}[colour]
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / f ** (a / 2), n)
    return x / (np.abs(x).max() + 1e-9)


def make_noise(seconds: float, index: int, seed: int, sample_rate: int = 16000) -> np.ndarray:
    rng = np.random.default_rng([seed, index, 77])
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    x = coloured_noise(n, COLOURS[index % len(COLOURS)], rng)
    hum_hz = rng.choice([50.0, 60.0])
    x = x + rng.uniform(0.0, 0.3) * np.sin(2 * np.pi * hum_hz * t + rng.uniform(0, 2 * np.pi))
    x = x * (1.0 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t))  # slow loudness changes
    return (0.5 * x / (np.abs(x).max() + 1e-9)).astype(np.float32)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=pathlib.Path, help="output folder")
    p.add_argument("--num-files", type=int, default=6)
    p.add_argument("--seconds", type=float, default=20.0, help="length of each file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample-rate", type=int, default=16000)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    if args.num_files < 1 or args.seconds <= 0:
        raise SystemExit(f"--num-files must be >= 1 and --seconds > 0, got {args.num_files} and {args.seconds}")
    import soundfile as sf

    args.out.mkdir(parents=True, exist_ok=True)
    for k in range(args.num_files):
        path = args.out / f"noise_{k}.wav"
        tmp = path.with_name(path.name + ".tmp.wav")
        sf.write(tmp, make_noise(args.seconds, k, args.seed, args.sample_rate), args.sample_rate, subtype="PCM_16")
        tmp.replace(path)
    print(f"wrote {args.num_files} noise files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
