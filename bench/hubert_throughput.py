"""HuBERT Base pre-training throughput: speechkit vs torchaudio.models.hubert_pretrain_base.

Forward + backward of the masked-prediction loss on the same batch, in the same process, alternating the
two models every repetition; prints the median step time, seconds of audio per second, peak memory and
the ratio (speechkit / torchaudio throughput, higher is better).

Usage:
    python bench/hubert_throughput.py                      # CPU, 2 threads, 2 x 4 s, 5 timed steps
    python bench/hubert_throughput.py --batch 2 --seconds 4 --reps 5 --threads 2
    python bench/hubert_throughput.py --device cuda --batch 8 --seconds 10   # bf16 autocast + SDPA
    python bench/hubert_throughput.py --cli-malloc         # both models with speechkit's CLI malloc setting

Both models use the Base hyperparameters (dropout 0.1, mask_prob 0.8, mask_length 10,
feature_grad_mult 0.1, final_dim 256, 100 classes) with LayerDrop set to 0 in both, so every step does
the same work. Labels are random 50 Hz units (the same tensor for both). CPU peak memory is the peak
resident set size above the level before the step (malloc's cached free memory returned to the OS first, so
the figure is the step's own peak, not what the other model left cached), sampled every millisecond by a
thread during one extra, untimed step; on CUDA it is
torch.cuda.max_memory_allocated. On a shared CPU the wall times are noisy, so the process CPU time per
step is printed too (less sensitive to other processes, though OpenMP spin-waiting still inflates it).

By default the process keeps glibc's malloc defaults, as a plain Python process running either model
would: every large activation is a fresh mmap that page-faults in anew. speechkit's command-line processes
keep freed memory for reuse instead (speechkit.runtime); ``--cli-malloc`` applies that setting to the whole
process, so to both models. It speeds torchaudio's step up more than speechkit's (2026-12-05, 2 threads:
torchaudio 1.56-1.70 -> 1.48-1.53 s, speechkit 1.26 s in both), so the ratio is lower with it.

The FLOPs of one step are counted with torch.utils.flop_counter (matrix products and convolutions,
forward and backward) and set against this machine's measured GEMM peak (a large square matmul in the
same precision and thread count): the share of that peak each model reaches (a model-FLOPs utilisation
against what this device's matmul actually delivers, not its datasheet), and the ceiling on the ratio
that any implementation of the same FLOPs could reach (all its FLOPs at the GEMM peak, nothing else).
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import statistics
import threading
import time

import torch
import torch.nn.functional as F


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def release_free_memory() -> None:
    """Return malloc's cached free memory to the OS (glibc's malloc_trim), so that the RSS before a step
    is what is live, and its growth during the step does not depend on what the previous step freed."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the peaks then depend on the allocator's cache
        pass


class PeakRSS:
    """Samples the resident set size in a thread; `.peak` is the max above the value at entry (after
    `release_free_memory`)."""

    def __enter__(self) -> "PeakRSS":
        release_free_memory()
        self.base = rss_bytes()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes() - self.base)
            time.sleep(0.001)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes() - self.base)


def build_speechkit(num_classes: int) -> torch.nn.Module:
    from speechkit.models import hubert_preset
    from speechkit.models.hubert import HubertPretrainModel
    cfg = hubert_preset("base", encoder={"layerdrop": 0.0}, num_classes=num_classes, label_rate=50.0)
    return HubertPretrainModel(cfg)


def build_torchaudio(num_classes: int) -> torch.nn.Module:
    from torchaudio.models import hubert_pretrain_base
    return hubert_pretrain_base(encoder_layer_drop=0.0, num_classes=num_classes)


def step_speechkit(model: torch.nn.Module, batch: dict) -> float:
    loss, _, _ = model(batch)
    loss.backward()
    return float(loss.detach())


def step_torchaudio(model: torch.nn.Module, batch: dict) -> float:
    logit_m, logit_u, pen = model(batch["wav"], batch["labels"], batch["wav_lens"])
    # the positive class is column 0 of torchaudio's logits; same loss form as speechkit's
    # (masked CE + 10 * feature penalty per predicted frame, unmasked weight 0)
    target = torch.zeros(logit_m.size(0), dtype=torch.long, device=logit_m.device)
    n = logit_m.size(0)
    loss = (F.cross_entropy(logit_m.float(), target, reduction="sum") + 10.0 * pen.float() * n) / n
    loss.backward()
    return float(loss.detach())


def step_flops(step, model: torch.nn.Module, batch: dict, amp: bool) -> float:
    """FLOPs of one forward + backward step (matmuls and convolutions), counted by torch.

    The counter does not see the in-place products of speechkit's CPU extractor (``addmm_``, ``mm(out=)``),
    so speechkit's step is counted with its extractor on the Conv1d path: the same arithmetic."""
    from torch.utils.flop_counter import FlopCounterMode
    fe = getattr(getattr(model, "encoder", None), "feature_extractor", None)
    impl = getattr(fe, "impl", None)
    if impl is not None:
        fe.impl = "conv"
    model.zero_grad(set_to_none=True)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp else contextlib.nullcontext()
    try:
        with FlopCounterMode(display=False) as counter, ctx:
            step(model, batch)
    finally:
        if impl is not None:
            fe.impl = impl
    return float(counter.get_total_flops())


def gemm_peak(device: torch.device, amp: bool) -> float:
    """FLOP/s of a square matmul in the step's precision (2048 on CPU, 8192 on CUDA), best of 5."""
    n = 8192 if device.type == "cuda" else 2048
    dtype = torch.bfloat16 if amp else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    best = float("inf")
    for _ in range(6):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--reps", type=int, default=5, help="timed steps per model (median reported)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--num-classes", type=int, default=100)
    p.add_argument("--no-amp", action="store_true", help="on CUDA: fp32 instead of bf16 autocast")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cli-malloc", action="store_true",
                   help="keep freed memory for reuse, as speechkit's CLIs do (both models; see above)")
    args = p.parse_args()
    if args.cli_malloc:
        from _common import use_cli_malloc
        use_cli_malloc()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    torch.manual_seed(args.seed)
    samples = int(args.seconds * 16000)
    wav = 0.1 * torch.randn(args.batch, samples)
    wav_lens = torch.full((args.batch,), samples, dtype=torch.long)
    from speechkit.models.conv_extractor import DEFAULT_CONV_LAYERS, conv_output_lengths
    frames = int(conv_output_lengths(wav_lens[:1], DEFAULT_CONV_LAYERS)[0])
    labels = torch.randint(0, args.num_classes, (args.batch, frames))
    batch = {"wav": wav.to(device), "wav_lens": wav_lens.to(device), "labels": labels.to(device),
             "label_lens": torch.full((args.batch,), frames, dtype=torch.long, device=device),
             "utt_ids": [f"utt{i}" for i in range(args.batch)]}

    models = {"speechkit": build_speechkit(args.num_classes).to(device).train(),
              "torchaudio": build_torchaudio(args.num_classes).to(device).train()}
    steps = {"speechkit": step_speechkit, "torchaudio": step_torchaudio}
    amp = device.type == "cuda" and not args.no_amp

    def run(name: str) -> tuple[float, float, int]:
        model = models[name]
        model.zero_grad(set_to_none=True)
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp else contextlib.nullcontext()
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            t0 = time.perf_counter()
            with ctx:
                steps[name](model, batch)
            torch.cuda.synchronize()
            return time.perf_counter() - t0, 0.0, torch.cuda.max_memory_allocated() - base
        t0, c0 = time.perf_counter(), time.process_time()
        steps[name](model, batch)
        return time.perf_counter() - t0, time.process_time() - c0, 0

    def cpu_peak(name: str) -> int:
        """One more step, untimed: returning the freed memory to the OS first makes the step fault its
        pages in again (~0.3 s for Base), so memory and time are measured in separate steps."""
        models[name].zero_grad(set_to_none=True)
        with PeakRSS() as mem:
            steps[name](models[name], batch)
        return mem.peak

    flops = {name: step_flops(steps[name], models[name], batch, amp) for name in models}
    gemm_rate = gemm_peak(device, amp)
    times: dict[str, list[float]] = {k: [] for k in models}
    cpu_times: dict[str, list[float]] = {k: [] for k in models}
    peaks: dict[str, int] = {k: 0 for k in models}
    for rep in range(args.warmup + args.reps):
        order = list(models) if rep % 2 == 0 else list(reversed(models))  # alternate to spread drift
        for name in order:
            dt, cpu, peak = run(name)
            if rep >= args.warmup:
                times[name].append(dt)
                cpu_times[name].append(cpu)
                peaks[name] = max(peaks[name], peak)
    if device.type == "cpu":
        peaks = {name: cpu_peak(name) for name in models}

    audio = args.batch * args.seconds
    setting = (f"{args.device}{' bf16' if amp else ' fp32'}, {args.threads} threads, batch {args.batch} x "
               f"{args.seconds:g} s, median of {args.reps}")
    print(f"# HuBERT Base forward+backward ({setting})")
    thr = {}
    for name in models:
        med = statistics.median(times[name])
        thr[name] = audio / med
        nparams = sum(p.numel() for p in models[name].parameters())
        cpu = f", CPU time {statistics.median(cpu_times[name]):.3f} s/step" if device.type == "cpu" else ""
        print(f"{name}: {med:.3f} s/step (all: {' '.join(f'{t:.2f}' for t in times[name])}){cpu}, "
              f"{thr[name]:.2f} audio-s/s, peak memory {peaks[name] / 2**20:.0f} MiB, {nparams / 1e6:.2f} M params")
    print(f"hubert base fwd+bwd throughput: speechkit {thr['speechkit']:.2f} audio-s/s, torchaudio "
          f"{thr['torchaudio']:.2f} audio-s/s, memory {peaks['speechkit'] / 2**20:.0f} vs "
          f"{peaks['torchaudio'] / 2**20:.0f} MiB, ratio {thr['speechkit'] / thr['torchaudio']:.2f}x")
    for name in models:
        rate = flops[name] / statistics.median(times[name])
        print(f"{name}: {flops[name] / 1e9:.1f} GFLOP per step, {rate / 1e9:.0f} GFLOP/s = "
              f"{100 * rate / gemm_rate:.0f} % of this device's measured GEMM peak ({gemm_rate / 1e9:.0f} GFLOP/s)")
    ceiling = statistics.median(times["torchaudio"]) / (flops["speechkit"] / gemm_rate)
    print(f"hubert base ceiling: speechkit's FLOPs at the GEMM peak and no other cost would be "
          f"{ceiling:.2f}x torchaudio")
    if device.type == "cpu":
        ratio_cpu = statistics.median(cpu_times["torchaudio"]) / statistics.median(cpu_times["speechkit"])
        print(f"hubert base fwd+bwd CPU time per step: speechkit {statistics.median(cpu_times['speechkit']):.2f} s, "
              f"torchaudio {statistics.median(cpu_times['torchaudio']):.2f} s, ratio {ratio_cpu:.2f}x")


if __name__ == "__main__":
    main()
