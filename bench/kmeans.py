"""Benchmark: speechkit k-means vs scikit-learn MiniBatchKMeans (fairseq settings) and faiss-cpu.

Usage:
    python bench/kmeans.py [--data bench,mfcc,gmm] [--threads 1,2] [--repeats 3] [--frames 1000000]
                           [--corpus-dir DIR] [--stream-frames 2000000] [--mem-cap-mb 200]

Data kinds (--frames x 39 float32 each, identical for every side):
  bench  the clustered synthetic set of earlier versions (Gaussian mixture, 1.5 K components);
  mfcc   MFCC + deltas (speechkit.features.mfcc, fairseq's recipe) of the synthetic corpus's
         train-clean-100, tiled to --frames with 1 % jitter (Gaussian noise of 1 % of each
         dimension's std). The corpus is generated into a temporary folder
         (speechkit.bin.make_synth_corpus --size default, ~1-2 min) unless --corpus-dir holds one;
  gmm    a fixed-seed MFCC-shaped Gaussian mixture (500 components, diagonal, spreads that
         decay with the cepstral index and shrink for deltas / delta-deltas as MFCC's do).
Peers, each fit in its own subprocess (same data file, same thread count for torch, OpenMP
and BLAS), which reports wall and CPU seconds of the fit; the final inertias of all sides
are computed by the same code on all frames:
  sklearn  MiniBatchKMeans with fairseq's learn_kmeans.py settings: k-means++, batch 10000,
           max_iter 100, n_init 20, tol 0, max_no_improvement 100, init_size None,
           reassignment_ratio 0;
  faiss    faiss.Kmeans, 20 Lloyd iterations on all points (max_points_per_centroid unbounded).
speechkit runs its defaults (KMeansConfig()). Figures are medians over --repeats fits (seeds
seed..seed+repeats-1); one line per figure with the ratio last.

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
    """The "bench" kind: a clustered Gaussian mixture of 1.5 k components."""
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


def make_gmm(n: int, d: int = 39, comps: int = 500, seed: int = 0) -> np.ndarray:
    """The "gmm" kind: MFCC-shaped diagonal Gaussian mixture (spreads decay like cepstra and deltas)."""
    if d % 3:
        raise ValueError(f"--dim {d}: the gmm kind needs static + delta + delta-delta blocks (a multiple of 3)")
    rng = np.random.default_rng(seed)
    c = d // 3
    spread = np.concatenate([12.0 / (1 + np.arange(c)) ** 0.7] * 3) * np.repeat([1.0, 0.3, 0.12], c)
    means = rng.normal(0, 1, (comps, d)) * spread
    scales = rng.uniform(0.3, 0.8, (comps, d)) * spread
    z = rng.choice(comps, n, p=rng.dirichlet(np.ones(comps)))
    x = np.empty((n, d), np.float32)
    for i in range(0, n, 200_000):
        zi = z[i : i + 200_000]
        x[i : i + len(zi)] = means[zi] + rng.standard_normal((len(zi), d)) * scales[zi]
    return x


def corpus_mfcc(corpus_dir: pathlib.Path) -> np.ndarray:
    """MFCC + deltas (39 dims, fairseq's recipe) of every train-clean-100 utterance of a synthetic corpus."""
    import soundfile as sf
    import torch

    from speechkit.features.mfcc import Mfcc

    torch.set_num_threads(1)
    files = sorted((corpus_dir / "LibriSpeech" / "train-clean-100").rglob("*.flac"))
    if not files:
        raise SystemExit(f"{corpus_dir}: no LibriSpeech/train-clean-100/**/*.flac (make_synth_corpus output?)")
    mfcc, feats = Mfcc(), []
    for i in range(0, len(files), 50):
        feats += mfcc.batch([sf.read(f, dtype="float32")[0] for f in files[i : i + 50]])
    return np.concatenate(feats)


def make_mfcc(n: int, corpus_dir: str | None, tmp: pathlib.Path, seed: int = 0) -> np.ndarray:
    """The "mfcc" kind: the corpus's MFCC frames tiled to n rows, with 1 % jitter per dimension."""
    if corpus_dir is None:
        corpus = tmp / "corpus"
        print(f"# generating the synthetic corpus into {corpus} (make_synth_corpus --size default)", flush=True)
        subprocess.run([sys.executable, "-m", "speechkit.bin.make_synth_corpus", "--out", str(corpus),
                        "--size", "default", "--nj", str(os.cpu_count() or 1)], check=True,
                       stdout=subprocess.DEVNULL)
    else:
        corpus = pathlib.Path(corpus_dir)
    raw = corpus_mfcc(corpus)
    rng = np.random.default_rng(seed)
    x = np.empty((n, raw.shape[1]), np.float32)
    sd = raw.std(0)
    for i in range(0, n, 200_000):
        m = min(200_000, n - i)
        x[i : i + m] = raw[np.arange(i, i + m) % len(raw)] + 0.01 * sd * rng.standard_normal((m, raw.shape[1]))
    print(f"# mfcc: {len(raw)} frames of {corpus}/LibriSpeech/train-clean-100 tiled to {n} with 1 % jitter",
          flush=True)
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
    elif args.worker == "faiss":
        import faiss

        faiss.Kmeans(args.dim, 8, niter=2).train(warm)
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
        if args.worker == "faiss":
            import faiss

            faiss.omp_set_num_threads(args.threads)
            # all points (no subsampling to 256 per centroid), 20 Lloyd iterations
            m = faiss.Kmeans(x.shape[1], args.k, niter=20, seed=args.seed + 1, max_points_per_centroid=10**9)
            m.train(x)
            centers, extra = np.asarray(m.centroids, np.float32), {"steps": 20}
        elif args.worker == "sklearn":
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


def run_worker(kind: str, data: pathlib.Path, out: pathlib.Path, args, threads: int = 1, **kw) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT))
    cmd = [sys.executable, __file__, "--worker", kind, "--data", str(data), "--out", str(out), "--k", str(args.k),
           "--threads", str(threads), "--seed", str(kw.get("seed", 0)), "--dim", str(args.dim),
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
    ap.add_argument("--data-kinds", default="bench,mfcc,gmm", help="comma-separated: bench, mfcc, gmm")
    ap.add_argument("--corpus-dir", default=None, help="a make_synth_corpus output to reuse (mfcc kind)")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts, each for every side "
                    "(torch, OpenMP, BLAS)")
    ap.add_argument("--peers", default="sklearn,faiss", help="comma-separated: sklearn, faiss")
    ap.add_argument("--repeats", type=int, default=3, help="fits per side (different seeds); medians reported")
    ap.add_argument("--stream-frames", type=int, default=2_000_000, help="frames in shards for the memory bound")
    ap.add_argument("--mem-cap-mb", type=int, default=200, help="address-space cap above the streaming baseline")
    ap.add_argument("--buffer-frames", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--data", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        args.threads = int(args.threads)
        worker(args)
        return 0

    import torch

    torch.set_num_threads(1)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench_kmeans_"))
    try:
        return _compare(args, tmp)
    finally:  # data + shards are 150-450 MiB per run: never leave them behind
        shutil.rmtree(tmp, ignore_errors=True)


def _compare(args, tmp: pathlib.Path) -> int:
    import torch

    from speechkit.cluster.kmeans import MiniBatchKMeans

    kinds = args.data_kinds.split(",")
    peers = args.peers.split(",")
    threads = [int(t) for t in args.threads.split(",")]
    names = {"sklearn": "sklearn MiniBatchKMeans", "faiss": "faiss-cpu Kmeans (20 iters, all points)"}
    print(f"# {args.frames} frames x {args.dim} dims, K={args.k}, {os.cpu_count()} cpus, median of {args.repeats} "
          f"fits (seeds {args.seed}..{args.seed + args.repeats - 1}); wall and CPU seconds of each fit")
    for kind in kinds:
        if kind == "bench":
            x = make_data(args.frames, args.dim, args.k)
        elif kind == "gmm":
            x = make_gmm(args.frames, args.dim)
        elif kind == "mfcc":
            x = make_mfcc(args.frames, args.corpus_dir, tmp)
        else:
            raise SystemExit(f"unknown data kind {kind!r} (expected bench, mfcc or gmm)")
        np.save(tmp / "x.npy", x)
        scorer = MiniBatchKMeans(n_clusters=args.k, device="cpu")

        def inertia(path: pathlib.Path) -> float:
            scorer.centroids = torch.from_numpy(np.load(path))
            return scorer.inertia(x)

        for t in threads:
            res: dict[str, list[dict]] = {side: [] for side in ["speechkit", *peers]}
            for r in range(args.repeats):  # interleaved, so machine noise hits every side alike
                for side in res:
                    out = tmp / f"{side}{r}.npy"
                    info = run_worker(side, tmp / "x.npy", out, args, threads=t, seed=args.seed + r)
                    info["final_inertia"] = inertia(out)
                    res[side].append(info)

            def med(side, key):
                return statistics.median(v[key] for v in res[side])

            tag = f"[{kind}, {t} thread{'s' if t > 1 else ''}]"
            ts, cs, is_ = med("speechkit", "seconds"), med("speechkit", "cpu_seconds"), med("speechkit", "final_inertia")
            print(f"# {tag} steps: " + ", ".join(f"{side} {med(side, 'steps'):.0f}" for side in res))
            for peer in peers:
                tp, cp, ip = med(peer, "seconds"), med(peer, "cpu_seconds"), med(peer, "final_inertia")
                print(f"kmeans fit {tag} wall: speechkit {ts:.2f} s, {names[peer]} {tp:.2f} s, ratio {tp / ts:.2f}x")
                print(f"kmeans fit {tag} CPU: speechkit {cs:.2f} s, {names[peer]} {cp:.2f} s, ratio {cp / cs:.2f}x")
                print(f"kmeans inertia per frame {tag}: speechkit {is_:.4f}, {names[peer]} {ip:.4f}, "
                      f"difference {100 * (is_ / ip - 1):+.2f}%, ratio {is_ / ip:.4f}")
            if t == threads[0] and "sklearn" in peers:
                ps = med("speechkit", "peak_rss_mb") - med("speechkit", "base_rss_mb")
                pk = med("sklearn", "peak_rss_mb") - med("sklearn", "base_rss_mb")
                print(f"kmeans fit {tag} peak RSS above loaded data: speechkit {ps:.0f} MiB, sklearn {pk:.0f} MiB, "
                      f"ratio {pk / max(ps, 1):.1f}x", flush=True)
        del x

    if args.stream_frames:
        from speechkit.io.ark import ArkWriter
        from speechkit.io.datadir import write_table

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
        info = run_worker("stream", merged, tmp / "stream.npy", args, threads=threads[0], cap=args.mem_cap_mb)
        print(f"kmeans streaming fit of {info['frames']} frames in 8 shards ({shard_mb:.0f} MiB) under an "
              f"address-space cap of +{args.mem_cap_mb} MiB: {info['seconds']:.1f} s incl. final inertia pass, "
              f"{info['steps']} steps, peak RSS above baseline {info['peak_rss_mb'] - info['base_rss_mb']:.0f} MiB, "
              f"max rows held {info['peak_rows']}, ratio data/peak "
              f"{shard_mb / max(info['peak_rss_mb'] - info['base_rss_mb'], 1):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
