"""Mini-batch k-means: quality vs scikit-learn, determinism, the bounded-memory streaming path."""
import numpy as np
import pytest
import torch

from speechkit.cluster.kmeans import MiniBatchKMeans, kmeans_plusplus, nearest
from speechkit.cluster.sources import ArraySource, ScpSource, sample_frames
from speechkit.io.ark import ArkWriter
from speechkit.io.datadir import write_table


@pytest.fixture(autouse=True)
def one_thread():
    # the test machine is small and shared; OpenMP threads fighting for 2 cores stall badly
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def mixture(n: int, d: int = 8, comps: int = 10, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 4, (comps, d))
    z = rng.integers(0, comps, n)
    return (means[z] + rng.normal(0, 1, (n, d)) * rng.uniform(0.5, 1.5, comps)[z, None]).astype(np.float32)


SMALL = dict(n_clusters=10, batch_size=1000, n_init=3, max_iter=20, max_no_improvement=20)


def test_quality_close_to_sklearn():
    from sklearn.cluster import MiniBatchKMeans as SkMiniBatchKMeans

    x = mixture(20000)
    # best of 3 seeds on both sides: a single mini-batch run can land in a local optimum (~20% here)
    ours = min((MiniBatchKMeans(**SMALL, seed=s).fit(x) for s in range(3)), key=lambda m: m.inertia_)
    sk_inertia = min(
        -SkMiniBatchKMeans(n_clusters=10, batch_size=1000, n_init=3, max_iter=20, max_no_improvement=20, tol=0.0,
                           reassignment_ratio=0.0, compute_labels=False, random_state=s).fit(x).score(x) / len(x)
        for s in range(3))
    assert ours.inertia_ == pytest.approx(ours.inertia(x))
    assert ours.inertia_ <= 1.03 * sk_inertia, (ours.inertia_, sk_inertia)
    # labels are the brute-force nearest centres
    c = ours.centroids.numpy()
    brute = ((x[:500, None, :] - c[None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_array_equal(ours.predict(x[:500]), brute)


def test_deterministic_for_a_seed():
    x = mixture(6000, seed=1)
    a = MiniBatchKMeans(**SMALL, seed=7).fit(x, compute_inertia=False)
    b = MiniBatchKMeans(**SMALL, seed=7).fit(x, compute_inertia=False)
    c = MiniBatchKMeans(**SMALL, seed=8).fit(x, compute_inertia=False)
    torch.testing.assert_close(a.centroids, b.centroids, rtol=0, atol=0)
    assert not torch.equal(a.centroids, c.centroids)


def test_kmeans_plusplus_picks_pool_points_and_spreads():
    rng = np.random.default_rng(0)
    pool = torch.from_numpy(mixture(3000, d=4, comps=5, seed=2))
    inits = kmeans_plusplus(pool, 5, 4, rng)
    assert inits.shape == (4, 5, 4)
    flat = inits.reshape(-1, 4)
    assert bool((flat[:, None, :] == pool[None]).all(-1).any(1).all())  # every centre is a pool frame
    # k-means++ spreads: inertia of its centres is far below that of 5 random frames
    lab, dist = nearest(pool, inits[0])
    rand = pool[torch.from_numpy(rng.choice(3000, 5, replace=False))]
    assert float(dist.mean()) < float(nearest(pool, rand)[1].mean())


def _write_shards(root, x: np.ndarray, n_shards: int = 3, utt_len: int = 150):
    """Write x as utterances of utt_len frames spread over n_shards ark/scp pairs + utt2num_frames."""
    root.mkdir(parents=True, exist_ok=True)
    scps, counts = [], {}
    n_utts = len(x) // utt_len
    for s in range(n_shards):
        with ArkWriter(root / f"feats.{s}.ark", root / f"feats.{s}.scp") as w:
            for u in range(s, n_utts, n_shards):
                key = f"spk{u % 5}-u{u:05d}"
                w.write(key, x[u * utt_len : (u + 1) * utt_len])
                counts[key] = utt_len
        scps.append(root / f"feats.{s}.scp")
    write_table(root / "utt2num_frames", counts)
    return scps


def test_streaming_from_shards_is_bounded_and_as_good(tmp_path):
    x = mixture(24000, seed=3)
    scps = _write_shards(tmp_path / "dump", x)
    src = ScpSource(scps)
    assert src.num_frames == 24000 and src.dim == 8
    buffer = 1500  # rows of the shuffle buffer: 1/16 of the data
    # best of 2 seeds each: single mini-batch runs may land in different local optima
    stream = min((MiniBatchKMeans(**SMALL, init_size=1000, buffer_frames=buffer, seed=s).fit(src) for s in (0, 1)),
                 key=lambda m: m.inertia_)
    mem = min((MiniBatchKMeans(**SMALL, init_size=1000, seed=s).fit(x) for s in (0, 1)), key=lambda m: m.inertia_)
    # never held more than buffer + one utterance of frames at a time (init sample: 2 x init_size)
    bound = buffer + 150 + buffer // 4  # buffer + one utterance + one read-out piece
    assert src.peak_rows <= bound
    assert stream.stats.peak_rows <= bound < src.num_frames / 8  # init sample (2 x 1000 rows) included
    assert stream.inertia_ <= 1.03 * mem.inertia_, (stream.inertia_, mem.inertia_)
    assert stream.inertia_ == pytest.approx(stream.inertia(ArraySource(x)), rel=1e-6)


def test_sample_frames_streaming_is_uniform_subset(tmp_path):
    x = np.arange(3000, dtype=np.float32).repeat(2).reshape(3000, 2)
    src = ScpSource(_write_shards(tmp_path / "d", x, n_shards=2, utt_len=100))
    s = sample_frames(src, 500, np.random.default_rng(0), buffer_frames=200)
    assert s.shape == (500, 2) and len(np.unique(s[:, 0])) == 500  # distinct frames
    assert src.peak_rows <= 100  # file-order pass holds one utterance at a time
    assert s[:, 0].min() < 300 and s[:, 0].max() > 2700  # spans every shard


def test_save_load_roundtrip(tmp_path):
    x = mixture(3000, seed=4)
    km = MiniBatchKMeans(**SMALL).fit(x)
    km.save(tmp_path / "model.pt", tag="t")
    km2 = MiniBatchKMeans.load(tmp_path / "model.pt", device="cpu")
    np.testing.assert_array_equal(km.predict(x), km2.predict(x))
    assert km2.meta == {"tag": "t"} and km2.inertia_ == km.inertia_
    with pytest.raises(ValueError, match="shape"):
        km2.predict(x[:, :3])


def test_too_few_frames_is_an_error():
    with pytest.raises(ValueError, match="cannot make 10 clusters"):
        MiniBatchKMeans(**SMALL).fit(np.zeros((5, 3), np.float32))


def test_learn_kmeans_cli(tmp_path):
    from speechkit.bin import learn_kmeans

    scps = _write_shards(tmp_path / "dump", mixture(6000, seed=5), n_shards=2)
    out = tmp_path / "exp" / "kmeans_t"
    rc = learn_kmeans.main(["--feats", *map(str, scps), "--n-clusters", "6", "--out", str(out),
                            "--batch-size", "500", "--n-init", "2", "--max-iter", "5", "--portion", "0.5"])
    assert rc == 0 and (out / "model.pt").is_file() and (out / "kmeans.json").is_file()
    km = MiniBatchKMeans.load(out / "model.pt")
    assert tuple(km.centroids.shape) == (6, 8) and km.meta["num_frames"] == 3000


def _poison_shard(root, key: str, frame: int, value: float) -> None:
    """Rewrite the shard holding ``key`` with one non-finite value, as a foreign tool could."""
    import kaldiio

    from speechkit.io.ark import read_scp

    for scp in sorted(root.glob("feats.*.scp")):
        if key in (reader := read_scp(scp)):
            mats = {k: reader[k].copy() for k in reader}
            mats[key][frame, 2] = value
            kaldiio.save_ark(str(scp.with_suffix(".ark")), mats, scp=str(scp))  # bypasses ArkWriter's check
            return
    raise AssertionError(key)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_features_are_refused_naming_utterance_and_frame(tmp_path, value):
    from speechkit.bin import learn_kmeans
    from speechkit.cluster.labels import assign_labels
    from speechkit.io.ark import ArkError

    x = mixture(3000, seed=7)
    scps = _write_shards(tmp_path / "dump", x, n_shards=2)
    km = MiniBatchKMeans(n_clusters=4, batch_size=500, n_init=1, max_iter=3).fit(x)
    _poison_shard(tmp_path / "dump", "spk1-u00001", frame=37, value=value)
    # learning from the shards: before, a NaN centroid was written with exit 0
    with pytest.raises(ArkError, match=r"'spk1-u00001' has NaN or inf at frame 37"):
        learn_kmeans.main(["--feats", *map(str, scps), "--n-clusters", "4", "--out", str(tmp_path / "km"),
                           "--batch-size", "500", "--n-init", "1", "--max-iter", "3"])
    assert not (tmp_path / "km" / "model.pt").exists()
    # assigning labels: before, those frames silently got label 0
    with pytest.raises(ArkError, match=r"'spk1-u00001' has NaN or inf at frame 37"):
        assign_labels(km, scps[1])
    bad = x[:10].copy()
    bad[4, 0] = value
    with pytest.raises(ValueError, match="frame 4"):
        km.predict(bad)
    with pytest.raises(ValueError, match="frame 4"):
        ArraySource(bad)


# ---- the Lloyd algorithm (default): sampled stages, full passes, threads, stopping rule ----------

def test_lloyd_pass_matches_brute_force_and_any_thread_count():
    from speechkit.cluster.lloyd import LloydPass

    x = torch.from_numpy(mixture(10000, seed=6))
    c = x[:7].clone()
    results = []
    for threads in (1, 2, 3):
        p = LloydPass(c, threads=threads, chunk=1000)
        for i in range(0, len(x), 3000):  # blocks that do not align with the chunks
            p.add(x[i : i + 3000])
        results.append(p.finish())
    d = ((x[:, None, :] - c[None]) ** 2).sum(-1)
    lab = d.argmin(1)
    want = torch.stack([x[lab == j].double().mean(0) for j in range(7)]).float()
    torch.testing.assert_close(results[0][0], want, rtol=1e-5, atol=1e-5)
    assert results[0][1] == pytest.approx(float(d.min(1).values.double().mean()), rel=1e-5)
    for new, inertia in results[1:]:  # chunk results are summed in chunk order: bit-identical
        assert torch.equal(new, results[0][0]) and inertia == results[0][1]


def test_lloyd_uses_sample_then_full_passes_and_beats_sklearn():
    from sklearn.cluster import MiniBatchKMeans as SkMiniBatchKMeans

    x = mixture(40000, d=8, comps=40, seed=9)
    km = MiniBatchKMeans(n_clusters=20, batch_size=1000, sample_size=6000, seed=0).fit(x)
    # 2 sample stages (1500 and 6000 frames) of at most 20 iterations each, then 1 to 3 full passes
    assert km.stats.n_steps <= 20 + 20 + 3 and km.stats.n_frames_seen <= 20 * 1500 + 20 * 6000 + 3 * 40000
    assert km.stats.n_frames_seen >= 40000 + 2 * 6000 + 2 * 1500
    sk = SkMiniBatchKMeans(n_clusters=20, batch_size=1000, n_init=20, max_no_improvement=100, tol=0.0,
                           reassignment_ratio=0.0, compute_labels=False, random_state=0).fit(x)
    assert km.inertia_ <= 1.005 * -sk.score(x) / len(x), (km.inertia_, -sk.score(x) / len(x))


def test_lloyd_stopping_rule():
    x = mixture(20000, seed=10)
    loose = MiniBatchKMeans(n_clusters=10, sample_size=4000, init_size=500, lloyd_tol=1.0).fit(x)
    # every stage stops at its second iteration: the first has nothing to compare with
    assert loose.stats.stopped_early and loose.stats.n_steps == 2 + 2 + 2
    never = MiniBatchKMeans(n_clusters=10, sample_size=4000, init_size=500, lloyd_tol=-1.0, sample_iters=5,
                            lloyd_iters=4).fit(x)
    assert not never.stats.stopped_early and never.stats.n_steps == 5 + 5 + 4
    assert never.inertia_ <= loose.inertia_ * 1.001


def test_lloyd_streaming_is_deterministic_and_bounded(tmp_path):
    x = mixture(24000, seed=11)
    src = ScpSource(_write_shards(tmp_path / "dump", x))
    kw = dict(n_clusters=10, init_size=500, sample_size=3000, buffer_frames=1500, seed=3)
    a = MiniBatchKMeans(**kw).fit(src)
    b = MiniBatchKMeans(**kw).fit(src)
    assert torch.equal(a.centroids, b.centroids) and a.stats.n_steps == b.stats.n_steps
    # the sample is capped at buffer_frames (the memory knob), at least 2 x init_size
    assert a.stats.peak_rows <= 1500 + 150 + 1500 // 4 < src.num_frames / 8
    mem = MiniBatchKMeans(**kw).fit(x)
    assert a.inertia_ <= 1.01 * mem.inertia_


def test_minibatch_reference_still_close_to_sklearn():
    from sklearn.cluster import MiniBatchKMeans as SkMiniBatchKMeans

    x = mixture(20000)
    ours = min((MiniBatchKMeans(**SMALL, algorithm="minibatch", seed=s).fit(x) for s in range(3)),
               key=lambda m: m.inertia_)
    sk = min(-SkMiniBatchKMeans(n_clusters=10, batch_size=1000, n_init=3, max_iter=20, max_no_improvement=20,
                                tol=0.0, reassignment_ratio=0.0, compute_labels=False, random_state=s
                                ).fit(x).score(x) / len(x) for s in range(3))
    assert ours.inertia_ <= 1.03 * sk
    with pytest.raises(ValueError, match="unknown k-means algorithm"):
        MiniBatchKMeans(**SMALL, algorithm="elkan").fit(x)


def test_lloyd_pass_chunks_do_not_depend_on_block_sizes():
    from speechkit.cluster.lloyd import LloydPass

    x = torch.from_numpy(mixture(9000, seed=12))
    c = x[:5].clone()
    out = []
    for sizes in ([9000], [150] * 60, [7, 4000, 93, 4900]):  # utterance-sized blocks are gathered
        p = LloydPass(c, threads=2, chunk=1000)
        i = 0
        for n in sizes:
            p.add(x[i : i + n].numpy().copy())
            i += n
        out.append(p.finish())
    for new, inertia in out[1:]:
        assert torch.equal(new, out[0][0]) and inertia == out[0][1]
