"""Benchmark: speechkit mini-batch k-means vs scikit-learn MiniBatchKMeans (fairseq settings).

Usage:
    python bench/kmeans.py [--frames 1000000] [--dim 39] [--k 100] [--threads 1]
                           [--stream-frames 2000000] [--mem-cap-mb 200] [--repeats 1]

Data: a clustered synthetic set (Gaussian mixture, 1.5 K components of different
spreads) of --frames x --dim float32, identical for both sides. Each fit runs in its
own subprocess (same data file, same thread count), which reports fit time and peak
RSS above its baseline after loading the data; both final inertias are then computed
by the same code on all frames. sklearn runs fairseq's learn_kmeans.py settings:
k-means++, batch 10000, max_iter 100, n_init 20, tol 0, max_no_improvement 100,
init_size None, reassignment_ratio 0.

Bounded memory: --stream-frames frames are written as ark shards; speechkit fits
them streaming in a subprocess whose address space is capped (RLIMIT_AS) at its
post-import size + --mem-cap-mb, less than the shards' size, and reports peak RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_data(n: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    comps = int(1.5 * k)
    means = rng.normal(0, 3, (comps, d))
    scale = rng.uniform(0.5, 2.0, comps)
    weights = rng.dirichlet(np.ones(comps) * 2)
    z = rng.choice(comps, n, p=weights)
    x = np.empty((n, d), np.float32)
    for i in range(0, n, 200_000):  # in blocks to keep the generator's temporaries small
        zi = z[i : i + 200_000]
        x[i : i + len(zi)] = means[zi] + rng.normal(0, 1, (len(zi), d)) * scale[zi, None]
    return x


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _reset_peak() -> None:
    """Reset this process's peak-RSS mark (Linux >= 4.0), so the peak covers the fit only."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_mb() -> float:
    # VmHWM belongs to this process image; ru_maxrss would also carry the parent's peak across exec
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def worker(args) -> None:
    """One fit in this process; prints a JSON line."""
    import resource

    import torch

    torch.set_num_threads(args.threads)
    from speechkit.cluster.kmeans import MiniBatchKMeans
    from speechkit.cluster.sources import ScpSource

    # warm-up fit on tiny data, so code pages loaded on first use do not count as fit memory
    warm = make_data(5000, args.dim, 8, seed=99)
    if args.worker == "sklearn":
        from sklearn.cluster import MiniBatchKMeans as SkMiniBatchKMeans

        SkMiniBatchKMeans(n_clusters=8, batch_size=1000, n_init=2, max_iter=2).fit(warm)
    else:
        MiniBatchKMeans(n_clusters=8, batch_size=1000, n_init=2, max_iter=2).fit(warm)
    del warm
    if args.worker == "stream":
        src = ScpSource(args.data)
        base = _rss_mb()
        if args.mem_cap_mb:
            import psutil

            vms = psutil.Process().memory_info().vms
            cap = vms + args.mem_cap_mb * 2**20
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        _reset_peak()
        t, c0 = time.perf_counter(), time.process_time()
        km = MiniBatchKMeans(n_clusters=args.k, seed=args.seed, buffer_frames=args.buffer_frames).fit(src)
        secs = time.perf_counter() - t  # includes the final streaming inertia pass
        centers = km.centroids.numpy()
        extra = {"inertia": km.inertia_, "frames": src.num_frames, "peak_rows": km.stats.peak_rows,
                 "steps": km.stats.n_steps}
    else:
        x = np.load(args.data)
        base = _rss_mb()
        _reset_peak()
        t, c0 = time.perf_counter(), time.process_time()
        if args.worker == "sklearn":
            from sklearn.cluster import MiniBatchKMeans as SkMiniBatchKMeans

            m = SkMiniBatchKMeans(n_clusters=args.k, init="k-means++", max_iter=100, batch_size=10000, tol=0.0,
                                  max_no_improvement=100, init_size=None, n_init=20, reassignment_ratio=0.0,
                                  compute_labels=False, random_state=args.seed).fit(x)
            centers, extra = m.cluster_centers_.astype(np.float32), {"steps": int(m.n_steps_)}
        else:
            km = MiniBatchKMeans(n_clusters=args.k, seed=args.seed).fit(x, compute_inertia=False)
            centers, extra = km.centroids.numpy(), {"steps": km.stats.n_steps}
        secs = time.perf_counter() - t
    cpu = time.process_time() - c0  # CPU seconds: robust when other jobs share the cores
    peak = _peak_mb()
    np.save(args.out, centers)
    print(json.dumps({"seconds": secs, "cpu_seconds": cpu, "peak_rss_mb": peak, "base_rss_mb": base, **extra}))


def run_worker(kind: str, data: pathlib.Path, out: pathlib.Path, args, **kw) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               OPENBLAS_NUM_THREADS=str(args.threads))
    cmd = [sys.executable, __file__, "--worker", kind, "--data", str(data), "--out", str(out), "--k", str(args.k),
           "--threads", str(args.threads), "--seed", str(kw.get("seed", 0)),
           "--buffer-frames", str(args.buffer_frames), "--mem-cap-mb", str(kw.get("cap", 0))]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=39)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1, help="threads for both sides (torch, OpenMP, BLAS)")
    ap.add_argument("--repeats", type=int, default=1, help="fits per side (different seeds); medians reported")
    ap.add_argument("--stream-frames", type=int, default=2_000_000, help="frames in shards for the memory bound")
    ap.add_argument("--mem-cap-mb", type=int, default=200, help="address-space cap above the streaming baseline")
    ap.add_argument("--buffer-frames", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--data", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return 0

    import torch

    torch.set_num_threads(args.threads)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench_kmeans_"))
    try:
        return _compare(args, tmp)
    finally:  # data + shards are 150-450 MiB per run: never leave them behind
        shutil.rmtree(tmp, ignore_errors=True)


def _compare(args, tmp: pathlib.Path) -> int:
    import torch

    from speechkit.cluster.kmeans import MiniBatchKMeans

    x = make_data(args.frames, args.dim, args.k)
    np.save(tmp / "x.npy", x)
    scorer = MiniBatchKMeans(n_clusters=args.k)

    def inertia(path: pathlib.Path) -> float:
        scorer.centroids = torch.from_numpy(np.load(path))
        return scorer.inertia(x)

    res = {"speechkit": [], "sklearn": []}
    for r in range(args.repeats):
        for kind in ("speechkit", "sklearn"):
            out = tmp / f"{kind}{r}.npy"
            info = run_worker(kind, tmp / "x.npy", out, args, seed=args.seed + r)
            info["final_inertia"] = inertia(out)
            res[kind].append(info)

    def med(kind, key):
        return statistics.median(v[key] for v in res[kind])

    ts, tk = med("speechkit", "seconds"), med("sklearn", "seconds")
    is_, ik = med("speechkit", "final_inertia"), med("sklearn", "final_inertia")
    data_mb = x.nbytes / 2**20
    print(f"# {args.frames} frames x {args.dim} dims ({data_mb:.0f} MiB), K={args.k}, threads {args.threads}, "
          f"{os.cpu_count()} cpus, median of {args.repeats}; steps speechkit {med('speechkit', 'steps'):.0f}, "
          f"sklearn {med('sklearn', 'steps'):.0f}")
    print(f"kmeans fit: speechkit {ts:.1f} s, sklearn MiniBatchKMeans {tk:.1f} s, ratio {tk / ts:.1f}x")
    cs, ck = med("speechkit", "cpu_seconds"), med("sklearn", "cpu_seconds")
    print(f"kmeans fit CPU time: speechkit {cs:.1f} s, sklearn MiniBatchKMeans {ck:.1f} s, ratio {ck / cs:.1f}x")
    print(f"kmeans final inertia per frame: speechkit {is_:.3f}, sklearn {ik:.3f}, "
          f"ratio {is_ / ik:.4f} ({100 * (is_ / ik - 1):+.2f}%)")
    ps = med("speechkit", "peak_rss_mb") - med("speechkit", "base_rss_mb")
    pk = med("sklearn", "peak_rss_mb") - med("sklearn", "base_rss_mb")
    print(f"kmeans fit peak RSS above loaded data: speechkit {ps:.0f} MiB, sklearn {pk:.0f} MiB, "
          f"ratio {pk / max(ps, 1):.1f}x")

    if args.stream_frames:
        from speechkit.io.ark import ArkWriter
        from speechkit.io.datadir import write_table

        del x
        shard_dir = tmp / "shards"
        counts, n, u, rng = {}, 0, 0, np.random.default_rng(1)
        for s in range(8):
            with ArkWriter(shard_dir / f"feats.{s}.ark", shard_dir / f"feats.{s}.scp") as w:
                while n < args.stream_frames * (s + 1) // 8:
                    block = make_data(min(200_000, args.stream_frames * (s + 1) // 8 - n), args.dim, args.k, u)
                    for i in range(0, len(block), 500):
                        key = f"spk{u % 40:02d}-u{u:07d}"
                        w.write(key, block[i : i + 500])
                        counts[key] = len(block[i : i + 500])
                        u += 1
                    n += len(block)
        scps = [shard_dir / f"feats.{s}.scp" for s in range(8)]
        merged = shard_dir / "feats.scp"
        from speechkit.io.ark import merge_scps

        merge_scps(scps, merged)
        write_table(shard_dir / "utt2num_frames", counts)
        shard_mb = sum(p.stat().st_size for p in shard_dir.glob("*.ark")) / 2**20
        info = run_worker("stream", merged, tmp / "stream.npy", args, cap=args.mem_cap_mb)
        print(f"kmeans streaming fit of {info['frames']} frames in 8 shards ({shard_mb:.0f} MiB) under an "
              f"address-space cap of +{args.mem_cap_mb} MiB: {info['seconds']:.1f} s incl. final inertia pass, "
              f"{info['steps']} steps, peak RSS above baseline {info['peak_rss_mb'] - info['base_rss_mb']:.0f} MiB, "
              f"max rows held {info['peak_rows']}, ratio data/peak "
              f"{shard_mb / max(info['peak_rss_mb'] - info['base_rss_mb'], 1):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
