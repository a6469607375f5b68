"""The conv extractor's masked GroupNorm, forward + backward: speechkit vs torch's native GroupNorm.

fairseq and torchaudio normalise the first conv layer's output with ``nn.GroupNorm(C, C)`` over the whole
padded batch (padding leaks into the statistics); speechkit's ``masked_group_norm`` uses only each
utterance's valid frames and has a hand-written backward. This runs both on the same tensors, alternating
every repetition, and prints the median time of forward + backward, the ratio (native time / speechkit
time, higher is better), and the time of the same formula left to autograd (what speechkit ran before).
Data kinds: the tiny and Base extractors' first-layer shapes (one full-length utterance, the rest at 3/4), and
the frame counts of the real AN4 recordings of shared/fixtures (eight short utterances; skipped when absent).

All three run with the malloc setting of speechkit's command-line processes (speechkit.runtime: freed
memory kept for reuse); --system-malloc leaves glibc's defaults.

Usage:
    python bench/masked_group_norm.py                  # shapes of the tiny and Base extractors, 1 and 2 threads
    python bench/masked_group_norm.py --reps 15 [--system-malloc]
"""
from __future__ import annotations

import statistics
import time

import torch

from _common import an4_waveforms, parse_kernel_bench_args
from speechkit.models.conv_extractor import masked_group_norm

# (batch, channels, frames) of the first conv layer's output: the mini recipe's 10 s batches, HuBERT Base 2 x 4 s
SHAPES = {"tiny (4 x 64 x 8000)": (4, 64, 8000), "base (2 x 512 x 12800)": (2, 512, 12800)}


def by_autograd(x: torch.Tensor, lengths: torch.Tensor, norm: torch.nn.GroupNorm) -> torch.Tensor:
    """The masked formula in plain differentiable ops."""
    valid = (torch.arange(x.size(2))[None, :] < lengths[:, None]).to(x.dtype)[:, None, :]
    count = valid.sum(dim=2, keepdim=True)
    mean = (x * valid).sum(dim=2, keepdim=True) / count
    var = ((x - mean).square() * valid).sum(dim=2, keepdim=True) / count
    return (x - mean) * torch.rsqrt(var + norm.eps) * norm.weight[None, :, None] + norm.bias[None, :, None]


def main() -> None:
    args = parse_kernel_bench_args(__doc__, reps=9)
    # (channels, valid frames per utterance): one full-length utterance and the rest at 3/4, and the
    # first-layer frame counts (stride 5) of the real AN4 recordings, many short utterances in one batch
    kinds = {name: (c, [t] + [t * 3 // 4] * (b - 1)) for name, (b, c, t) in SHAPES.items()}
    real = an4_waveforms()
    if real:
        kinds[f"real AN4 lengths ({len(real)} x 64 x <= {len(real[0]) // 5})"] = (64, [len(w) // 5 for w in real])
    torch.manual_seed(0)
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, (c, lens) in kinds.items():
            b, t = len(lens), max(lens)
            norm = torch.nn.GroupNorm(c, c)
            x = torch.randn(b, c, t, requires_grad=True)
            lengths = torch.tensor(lens)
            grad = torch.randn(b, c, t)
            runs = {"speechkit": lambda: masked_group_norm(x, lengths, norm), "native": lambda: norm(x),
                    "autograd": lambda: by_autograd(x, lengths, norm)}
            times: dict[str, list[float]] = {k: [] for k in runs}
            for _ in range(args.reps + 1):  # the first round warms up
                for k, fn in runs.items():
                    x.grad = None
                    start = time.perf_counter()
                    fn().backward(grad)
                    times[k].append(time.perf_counter() - start)
            med = {k: statistics.median(v[1:]) * 1000 for k, v in times.items()}
            print(f"{name}, {threads} thread(s): speechkit {med['speechkit']:.1f} ms, native GroupNorm "
                  f"{med['native']:.1f} ms, same formula by autograd {med['autograd']:.1f} ms; "
                  f"ratio native/speechkit {med['native'] / med['speechkit']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
