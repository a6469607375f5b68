"""AV-HuBERT Base pre-training step time on CPU (or CUDA): forward + backward of the masked-prediction loss.

No peer runs beside it: the reference implementation (facebookresearch/av_hubert) needs a pinned fork of
fairseq 0.12 that is not installable from a package registry, and torchaudio has no AV-HuBERT. For scale,
the same process times speechkit's audio-only HuBERT Base on the same seconds of audio (same transformer
size at 50 Hz instead of 25 Hz, a conv waveform extractor instead of the ResNet-18 on 88x88 lips) and prints
the ratio; and it splits the AV step into the visual frontend alone (ResNet fwd+bwd) and the rest.

Usage:
    python bench/avhubert_throughput.py                       # CPU, 2 threads, 2 x 2 s, 3 timed steps
    python bench/avhubert_throughput.py --batch 2 --seconds 2 --reps 3 --threads 2
    python bench/avhubert_throughput.py --device cuda --batch 8 --seconds 10 --reps 5    # bf16 autocast

Settings: the Base preset (12 x 768, input masking 0.8/10 audio and 0.3/5 video, final_dim 256, 100 classes)
with LayerDrop and modality dropout set to 0 so every step does the same work; random 104-d audio features,
random 88x88 ROIs at 25 fps, random 100 Hz labels. Peak memory is the RSS growth during one extra, untimed
step of each model after malloc's cached free memory is returned to the OS (as in bench/hubert_throughput.py),
so no model reads low by reusing memory another one freed.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from hubert_throughput import PeakRSS  # bench/ is the script's folder, hence on sys.path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--reps", type=int, default=3, help="timed steps per model (median reported)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--preset", default="base", choices=["tiny", "base", "large"])
    p.add_argument("--no-audio-peer", action="store_true", help="skip the audio-only HuBERT Base reference")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    from speechkit.models.av_presets import avhubert_preset
    from speechkit.models.avhubert import AVHubertPretrainModel
    from speechkit.models.hubert import HubertPretrainModel
    from speechkit.models.presets import hubert_preset

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    amp = device.type == "cuda"
    torch.manual_seed(args.seed)
    b, t = args.batch, int(round(args.seconds * 25))
    av_batch = {"audio_feats": torch.randn(b, t, 104), "video": torch.randn(b, 1, t, 88, 88),
                "lengths": torch.full((b,), t), "labels": torch.randint(0, 100, (b, 4 * t)),
                "label_lens": torch.full((b,), 4 * t), "utt_ids": [f"utt{i}" for i in range(b)]}
    av_batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in av_batch.items()}
    av = AVHubertPretrainModel(avhubert_preset(args.preset, encoder={"layerdrop": 0.0}, modality_dropout=0.0,
                                               num_classes=100)).to(device).train()
    models: dict[str, tuple[torch.nn.Module, dict]] = {"avhubert": (av, av_batch)}
    if not args.no_audio_peer:
        samples = int(args.seconds * 16000)
        hb = HubertPretrainModel(hubert_preset("base", encoder={"layerdrop": 0.0}, num_classes=100,
                                               label_rate=50.0)).to(device).train()
        frames = int(hb.hubert.frame_lengths(torch.tensor([samples]))[0])
        models["hubert_audio"] = (hb, {"wav": 0.1 * torch.randn(b, samples, device=device),
                                       "wav_lens": torch.full((b,), samples, device=device),
                                       "labels": torch.randint(0, 100, (b, frames), device=device),
                                       "label_lens": torch.full((b,), frames, device=device),
                                       "utt_ids": av_batch["utt_ids"]})
    resnet = av.avhubert.feature_extractor_video.resnet

    def frontend_step(_: torch.nn.Module, batch: dict) -> None:
        resnet(batch["video"], batch["lengths"]).pow(2).mean().backward()

    def model_step(model: torch.nn.Module, batch: dict) -> None:
        loss, _, _ = model(batch)
        loss.backward()

    jobs = {name: (m, bt, model_step) for name, (m, bt) in models.items()}
    jobs["avhubert_video_frontend"] = (av, av_batch, frontend_step)

    def run(name: str) -> tuple[float, int]:
        model, batch, step = jobs[name]
        model.zero_grad(set_to_none=True)
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp else contextlib.nullcontext()
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            t0 = time.perf_counter()
            with ctx:
                step(model, batch)
            torch.cuda.synchronize()
            return time.perf_counter() - t0, torch.cuda.max_memory_allocated() - base
        t0 = time.perf_counter()
        step(model, batch)
        return time.perf_counter() - t0, 0

    def cpu_peak(name: str) -> int:  # an extra untimed step (see bench/hubert_throughput.py)
        model, batch, step = jobs[name]
        model.zero_grad(set_to_none=True)
        with PeakRSS() as mem:
            step(model, batch)
        return mem.peak

    times: dict[str, list[float]] = {k: [] for k in jobs}
    peaks: dict[str, int] = {k: 0 for k in jobs}
    for rep in range(args.warmup + args.reps):
        for name in (list(jobs) if rep % 2 == 0 else list(reversed(jobs))):
            dt, peak = run(name)
            peaks[name] = max(peaks[name], peak)
            if rep >= args.warmup:
                times[name].append(dt)
    if device.type == "cpu":
        peaks = {name: cpu_peak(name) for name in jobs}

    setting = (f"{args.device}{' bf16' if amp else ' fp32'}, {args.threads} threads, batch {b} x {args.seconds:g} s "
               f"({t} video frames of 88x88 each), median of {args.reps}")
    print(f"# AV-HuBERT {args.preset} forward+backward ({setting})")
    for name in jobs:
        n = sum(p.numel() for p in jobs[name][0].parameters()) if name != "avhubert_video_frontend" else \
            sum(p.numel() for p in resnet.parameters())
        print(f"{name}: {statistics.median(times[name]):.3f} s/step (all: "
              f"{' '.join(f'{x:.2f}' for x in times[name])}), peak memory {peaks[name] / 2**20:.0f} MiB, "
              f"{n / 1e6:.2f} M params")
    av_t = statistics.median(times["avhubert"])
    share = statistics.median(times["avhubert_video_frontend"]) / av_t
    line = (f"avhubert {args.preset} fwd+bwd: {av_t:.2f} s/step for {b} x {args.seconds:g} s, "
            f"{b * args.seconds / av_t:.2f} clip-s/s, peak {peaks['avhubert'] / 2**20:.0f} MiB, "
            f"video frontend {100 * share:.0f}% of the step")
    if "hubert_audio" in times:
        hb_t = statistics.median(times["hubert_audio"])
        line += f", audio-only HuBERT Base {hb_t:.2f} s/step, ratio {av_t / hb_t:.2f}x (no AV peer installable)"
    print(line)
    if device.type == "cpu":
        import resource

        print(f"process peak RSS (models, batches, all steps): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")


if __name__ == "__main__":
    main()
