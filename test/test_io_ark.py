"""ark/scp helpers: float matrices and int vectors in shards, merge, lazy reading, errors."""
from __future__ import annotations

import kaldiio
import numpy as np
import pytest

from speechkit.io.ark import ArkError, ArkWriter, merge_scps, read_scp
from speechkit.io.datadir import DataDirError


def write_shards(tmp_path, n_shards=3, per_shard=4):
    rng = np.random.default_rng(0)
    data = {}
    scps = []
    for j in range(1, n_shards + 1):
        ark, scp = tmp_path / f"feats.{j}.ark", tmp_path / f"feats.{j}.scp"
        with ArkWriter(ark, scp) as w:
            # keys written out of order on purpose: merge must sort them
            for i in reversed(range(per_shard)):
                key = f"spk{j}-utt{i}"
                feats = rng.standard_normal((5 + i, 13))  # float64 in, float32 stored
                labels = rng.integers(0, 100, size=5 + i)
                w.write(key, feats)
                w.write(key + "-km", labels)
                data[key], data[key + "-km"] = feats, labels
        scps.append(scp)
    return data, scps


def test_shards_round_trip_and_merge(tmp_path):
    data, scps = write_shards(tmp_path)
    out = merge_scps(scps, tmp_path / "feats.scp")
    keys = [line.split()[0] for line in out.read_text().splitlines()]
    assert keys == sorted(data) and len(keys) == 24
    r = read_scp(out)
    assert list(r) == keys and len(r) == 24
    for k, v in data.items():
        got = r[k]
        if k.endswith("-km"):
            assert got.dtype == np.int32 and got.ndim == 1
            np.testing.assert_array_equal(got, v)
        else:
            assert got.dtype == np.float32 and got.shape == v.shape
            np.testing.assert_allclose(got, v.astype(np.float32))
    # the scps are plain Kaldi: kaldiio reads them too
    np.testing.assert_array_equal(kaldiio.load_scp(str(scps[0]))["spk1-utt2-km"], data["spk1-utt2-km"])
    assert not list(tmp_path.glob(".*.tmp"))


def test_float_vector_and_spec(tmp_path):
    with ArkWriter(tmp_path / "a.ark", tmp_path / "a.scp") as w:
        w.write("u1", np.array([0.5, -1.0], dtype=np.float64))
    r = read_scp(tmp_path / "a.scp")
    assert r["u1"].dtype == np.float32 and r["u1"].tolist() == [0.5, -1.0]
    assert r.spec("u1") == f"{tmp_path / 'a.ark'}:3"


@pytest.mark.parametrize("key,array,match", [
    ("u 1", np.zeros((2, 2)), "invalid key"),
    ("u1", np.array([np.nan, 1.0]), "contains NaN or inf"),
    ("u1", np.zeros((2, 2), dtype=np.int64), "Kaldi stores only 1-D integer vectors"),
    ("u1", np.array([2 ** 40]), "outside int32"),
    ("u1", np.zeros((1, 2, 3)), "expected a 1-D or 2-D float array"),
    ("u1", np.array(["a"]), "expected float or integer"),
])
def test_writer_rejects_bad_input(tmp_path, key, array, match):
    with pytest.raises(ArkError, match=match):
        with ArkWriter(tmp_path / "a.ark", tmp_path / "a.scp") as w:
            w.write(key, array)
    # a failed shard leaves nothing a re-run could mistake for finished work
    assert not (tmp_path / "a.ark").exists() and not (tmp_path / "a.scp").exists()
    assert not list(tmp_path.iterdir())


def test_duplicate_key_in_writer(tmp_path):
    with pytest.raises(ArkError, match="'u1' written twice"):
        with ArkWriter(tmp_path / "a.ark", tmp_path / "a.scp") as w:
            w.write("u1", np.zeros(3))
            w.write("u1", np.zeros(3))


def test_merge_duplicate_across_shards_names_both(tmp_path):
    _, scps = write_shards(tmp_path, n_shards=2)
    (tmp_path / "extra.scp").write_text(f"spk1-utt0 {tmp_path}/feats.1.ark:99\n")
    with pytest.raises(DataDirError, match=r"extra.scp:1: key 'spk1-utt0' is also in .*feats.1.scp"):
        merge_scps([*scps, tmp_path / "extra.scp"], tmp_path / "all.scp")


def test_read_scp_errors(tmp_path):
    (tmp_path / "d.scp").write_text("a x.ark:1\na y.ark:2\n")
    with pytest.raises(DataDirError, match=r"d.scp:2: duplicate key 'a'"):
        read_scp(tmp_path / "d.scp")
    (tmp_path / "m.scp").write_text(f"a {tmp_path}/missing.ark:5\n")
    r = read_scp(tmp_path / "m.scp")  # lazy: opening the scp does not touch the ark
    with pytest.raises(ArkError, match=r"m.scp: cannot load 'a' from .*missing.ark:5"):
        r["a"]
