"""The waveform conv feature extractor: speechkit vs torchaudio's wav2vec 2.0 / HuBERT FeatureExtractor.

Both stacks get the same weights (torchaudio's module names are speechkit's: ``conv_layers.N.conv`` /
``conv_layers.N.layer_norm``) and the same batch; this times, alternating the two every repetition,
the forward alone (no grad: fine-tuning with the extractor frozen, feature dumps, decoding) and forward +
backward (pre-training, from-scratch training), and prints the medians and the ratio (torchaudio time /
speechkit time, higher is better). Shapes: the mini recipe's extractor (64 channels, a 10 s batch of four
utterances) and HuBERT Base's (512 channels, 2 x 4 s).

torchaudio normalises the first layer over the whole padded batch (the padding leaks into the GroupNorm
statistics); speechkit uses each utterance's valid frames. So the outputs are compared on an unpadded
batch, where both compute the same function.

Both run with the malloc setting of speechkit's command-line processes (speechkit.runtime: freed memory
kept for reuse); --system-malloc leaves glibc's defaults, under which every large activation page-faults
in anew (slower for both, most for mkldnn's convolutions).

Usage:
    python bench/conv_extractor.py                  # both shapes, 1 and 2 threads
    python bench/conv_extractor.py --threads 1 --reps 9 [--system-malloc]
"""
from __future__ import annotations

import statistics
import time

import torch

from _common import an4_waveforms, parse_kernel_bench_args
from speechkit.models.conv_extractor import DEFAULT_CONV_LAYERS, ConvFeatureExtractor

TINY = ((64, 10, 5),) + ((64, 3, 2),) * 4 + ((64, 2, 2),) * 2
SHAPES = {  # name: (conv layers, utterance lengths in samples)
    "tiny (64 ch, 4 utts, 10 s)": (TINY, [40000, 38000, 30000, 25000]),
    "base (512 ch, 2 x 4 s)": (DEFAULT_CONV_LAYERS, [64000, 48000]),
}


def torchaudio_extractor(layers) -> torch.nn.Module:
    from torchaudio.models.wav2vec2.components import _get_feature_extractor

    return _get_feature_extractor("group_norm", [tuple(s) for s in layers], False)


def main() -> None:
    args = parse_kernel_bench_args(__doc__, reps=7)
    real = an4_waveforms()
    kinds = {name: (layers, [torch.randn(n) * 0.1 for n in lengths]) for name, (layers, lengths) in SHAPES.items()}
    for layers, label in ((TINY, "tiny"), (DEFAULT_CONV_LAYERS, "base")):
        if real:
            kinds[f"{label}, real AN4 ({len(real)} utts, {sum(map(len, real)) / 16000:.0f} s)"] = (
                layers, [torch.from_numpy(w) for w in real])
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, (layers, waves) in kinds.items():
            torch.manual_seed(0)
            ours = ConvFeatureExtractor(layers)
            ta = torchaudio_extractor(layers)
            ta.load_state_dict(ours.state_dict())
            lengths = [len(w) for w in waves]
            lens = torch.tensor(lengths)
            wav = torch.zeros(len(waves), max(lengths))
            for b, w in enumerate(waves):
                wav[b, : len(w)] = w
            runs = {"speechkit": lambda: ours(wav, lens)[0], "torchaudio": lambda: ta(wav, lens)[0]}
            fwd: dict[str, list[float]] = {k: [] for k in runs}
            both: dict[str, list[float]] = {k: [] for k in runs}
            for _ in range(args.reps + 1):  # the first repetition warms up and is dropped
                for k, fn in runs.items():
                    with torch.no_grad():
                        start = time.perf_counter()
                        fn()
                        fwd[k].append(time.perf_counter() - start)
                    start = time.perf_counter()
                    fn().sum().backward()
                    both[k].append(time.perf_counter() - start)
            f = {k: statistics.median(v[1:]) * 1000 for k, v in fwd.items()}
            fb = {k: statistics.median(v[1:]) * 1000 for k, v in both.items()}
            with torch.no_grad():
                one = wav[:1, : lengths[0]]
                diff = (ours(one)[0] - ta(one, None)[0]).abs().max().item()
            print(f"{name}, {threads} thread(s): forward speechkit {f['speechkit']:.1f} ms, torchaudio "
                  f"{f['torchaudio']:.1f} ms ({f['torchaudio'] / f['speechkit']:.2f}x); forward + backward "
                  f"speechkit {fb['speechkit']:.1f} ms, torchaudio {fb['torchaudio']:.1f} ms "
                  f"({fb['torchaudio'] / fb['speechkit']:.2f}x); max |difference| unpadded {diff:.1e}", flush=True)


if __name__ == "__main__":
    main()
