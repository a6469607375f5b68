"""Label files (assign, write, read, length checks) and purity / PNMI."""
import json
import math

import numpy as np
import pytest
import torch

from speechkit.cluster.kmeans import MiniBatchKMeans
from speechkit.cluster.labels import (LabelError, assign_labels, check_label_lengths, read_label_file,
                                      write_labels)
from speechkit.cluster.quality import (AlignmentError, contingency, label_quality, pair_frames, purity_pnmi,
                                       read_alignments)
from speechkit.io.ark import ArkWriter, read_scp
from speechkit.io.datadir import DataDirError, write_table


def test_perfect_clustering_gives_pnmi_one():
    phones = {"u1": list("AABBBCCA"), "u2": list("CCAB")}
    mapping = {"A": 7, "B": 2, "C": 5}
    labels = {u: np.array([mapping[p] for p in ph]) for u, ph in phones.items()}
    r = label_quality(labels, phones)
    assert r.pnmi == pytest.approx(1.0) and r.phone_purity == pytest.approx(1.0)
    assert r.cluster_purity == pytest.approx(1.0) and r.n_frames == 12 and r.n_phones == 3


def test_independent_labels_give_pnmi_near_zero():
    rng = np.random.default_rng(0)
    phones = {f"u{i}": list(rng.choice(list("ABCDE"), 2000)) for i in range(5)}
    labels = {u: rng.integers(0, 20, 2000) for u in phones}
    r = label_quality(labels, phones)
    assert 0 <= r.pnmi < 0.01
    assert r.phone_purity < 0.3  # ~1/5 plus noise
    assert r.cluster_purity < 0.12  # ~1/20 plus noise


def test_hand_computed_example():
    # frames (phone, cluster): (A,0) x2, (A,1) x1, (B,1) x1 -> p = [[.5,.25],[0,.25]]
    counts = np.array([[2, 1], [0, 1]])
    pp, cp, pnmi = purity_pnmi(counts)
    assert pp == pytest.approx(0.5 + 0.25)  # cluster 0 -> A (.5); cluster 1 -> A or B (.25)
    assert cp == pytest.approx(0.5 + 0.25)  # phone A -> cluster 0 (.5); phone B -> cluster 1 (.25)
    py, pz = np.array([0.75, 0.25]), np.array([0.5, 0.5])
    mi = 0.5 * math.log(0.5 / (0.75 * 0.5)) + 0.25 * math.log(0.25 / (0.75 * 0.5)) + 0.25 * math.log(0.25 / (0.25 * 0.5))
    hy = -(py * np.log(py)).sum()
    assert pnmi == pytest.approx(mi / hy)
    # and the same through the frame-level path
    r = label_quality({"u": np.array([0, 0, 1, 1])}, {"u": ["A", "A", "A", "B"]})
    assert (r.phone_purity, r.cluster_purity, r.pnmi) == pytest.approx((pp, cp, pnmi))


def test_50hz_labels_subsample_alignment_with_tolerance():
    ali = list("AABBCCDDEEF")  # 11 frames at 100 Hz -> 6 at 50 Hz: A B C D E F
    z, ph = pair_frames(np.arange(5), ali, 2, 2, "u")  # one short: truncated
    assert ph == list("ABCDE") and len(z) == 5
    z, ph = pair_frames(np.arange(8), ali, 2, 2, "u")  # two long: truncated
    assert ph == list("ABCDEF") and len(z) == 6
    with pytest.raises(AlignmentError, match=r"utterance 'u': 9 labels vs 6 alignment frames"):
        pair_frames(np.arange(9), ali, 2, 2, "u")
    r = label_quality({"u": np.array([0, 1, 2, 3, 4, 5])}, {"u": ali}, label_rate=50)
    assert r.pnmi == pytest.approx(1.0) and r.n_frames == 6
    with pytest.raises(ValueError, match="integer multiple"):
        label_quality({"u": np.zeros(4, int)}, {"u": ali}, label_rate=30)


def test_missing_alignments_are_skipped_but_none_is_an_error():
    counts, phones, used, skipped = contingency({"a": np.array([0, 1]), "b": np.array([1])}, {"a": ["X", "Y"]})
    assert used == 1 and skipped == 1 and counts.sum() == 2
    with pytest.raises(AlignmentError, match="no utterance has both"):
        label_quality({"b": np.array([1])}, {"a": ["X"]})


def test_alignment_file_errors(tmp_path):
    p = tmp_path / "ali"
    p.write_text("u1 A B\nu1 A\n")
    with pytest.raises(DataDirError, match=r"ali:2: utterance 'u1' appears twice"):
        read_alignments(p)


@pytest.fixture
def fitted(tmp_path):
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # small shared test machine; restored below
    rng = np.random.default_rng(0)
    feats = {f"s{i % 2}-u{i}": rng.normal(size=(int(rng.integers(20, 60)), 4)).astype(np.float32) for i in range(6)}
    d = tmp_path / "dump"
    with ArkWriter(d / "feats.ark", d / "feats.scp") as w:
        for k in sorted(feats):
            w.write(k, feats[k])
    write_table(d / "utt2num_frames", {k: len(v) for k, v in feats.items()})
    km = MiniBatchKMeans(n_clusters=5, batch_size=64, n_init=2, max_iter=3).fit(np.concatenate(list(feats.values())))
    yield km, feats, d
    torch.set_num_threads(old)


def test_assign_write_read_labels(fitted, tmp_path):
    km, feats, d = fitted
    order = sorted(feats)
    labels = assign_labels(km, d / "feats.scp", utt_order=order)
    assert list(labels) == order
    text, scp = write_labels(labels, tmp_path / "data" / "km.t5", d, "km.t5")
    back = read_label_file(text)
    assert list(back) == order
    ints = read_scp(scp)
    for u in order:
        np.testing.assert_array_equal(back[u], km.predict(feats[u]))
        np.testing.assert_array_equal(ints[u], back[u])
        assert ints[u].dtype == np.int32 and len(back[u]) == len(feats[u])
    first = text.read_text().splitlines()[0].split()
    assert first[0] == order[0] and len(first) == 1 + len(feats[order[0]])


def test_label_count_mismatch_names_the_utterance(fitted):
    km, feats, d = fitted
    bad = {k: len(v) for k, v in feats.items()}
    bad["s1-u3"] += 1
    write_table(d / "utt2num_frames", bad)
    with pytest.raises(LabelError, match=r"utterance 's1-u3': \d+ labels but utt2num_frames says \d+ frames"):
        assign_labels(km, d / "feats.scp")
    with pytest.raises(LabelError, match="no features"):
        assign_labels(km, d / "feats.scp", utt_order=["s0-nothere"])
    with pytest.raises(LabelError, match="'x'"):
        check_label_lengths({"x": np.zeros(3)}, {"x": 4})


def test_label_file_errors(tmp_path):
    p = tmp_path / "km.x"
    p.write_text("u1 1 2 x\n")
    with pytest.raises(DataDirError, match=r"km\.x:1: expected integer labels"):
        read_label_file(p)


def test_cli_assign_and_quality(fitted, tmp_path, capsys):
    from speechkit.bin import assign_kmeans, label_quality as lq_cli
    from speechkit.io.datadir import write_data_dir

    km, feats, d = fitted
    km.save(tmp_path / "model.pt")
    data = write_data_dir(tmp_path / "data", wav_scp={u: f"/none/{u}.wav" for u in feats},
                          utt2spk={u: u.split("-")[0] for u in feats})
    assert assign_kmeans.main(["--model", str(tmp_path / "model.pt"), "--feats-dir", str(d),
                               "--data-dir", str(data), "--tag", "t5", "--device", "cpu"]) == 0
    labels = read_label_file(data / "km.t5")
    ali = tmp_path / "phones.ali"
    ali.write_text("".join(f"{u} {' '.join('P%d' % (l % 3) for l in lab)}\n" for u, lab in labels.items()))
    assert lq_cli.main(["--labels", str(data / "km.t5"), "--alignments", str(ali),
                        "--out", str(tmp_path / "exp" / "quality_dev")]) == 0
    out = capsys.readouterr().out
    assert "PNMI" in out and (tmp_path / "exp" / "quality_dev.json").is_file()
    assert "phone purity    1.0000" in (tmp_path / "exp" / "quality_dev.txt").read_text()


def test_cli_result_record_reaches_results_md(tmp_path):
    from speechkit.bin import label_quality as lq_cli
    from speechkit.cluster.labels import write_label_file
    from speechkit.results import collect_results, format_results

    data = tmp_path / "data" / "dev"
    data.mkdir(parents=True)
    write_label_file(data / "km.x", {"u1": np.array([0, 0, 1, 1]), "u2": np.array([1, 1, 0, 0])})
    ali = tmp_path / "ali"
    ali.write_text("u1 A A A B\nu2 B B A A\n")
    rec = tmp_path / "exp" / "kmeans_x" / "result_units_dev.json"
    assert lq_cli.main(["--labels", str(data / "km.x"), "--alignments", str(ali), "--result-json", str(rec),
                        "--units", "MFCC, K=2"]) == 0
    (r,) = collect_results(tmp_path / "exp")
    assert (r.task, r.metric, r.dataset, r.exp) == ("units", "PNMI", "dev", "exp/kmeans_x")
    # (phone, cluster) counts: A: 4 x c0, 1 x c1; B: 3 x c1 -> phone purity (4 + 3) / 8
    assert r.values["phone purity"] == pytest.approx(0.875) and r.values["frames"] == 8
    assert r.info["units"] == "MFCC, K=2"
    md = format_results([r], env={"date": "x"})
    assert "### Unit quality (k-means labels vs phone alignments): PNMI" in md
    assert f"|{r.values['PNMI']:.3f}|" in md


def test_unit_usage_without_alignments(tmp_path, capsys):
    from speechkit.bin import label_quality as cli
    from speechkit.cluster.quality import unit_usage

    rep = unit_usage({"a": np.array([0, 0, 1, 1]), "b": np.array([2, 3, 2, 3])}, num_clusters=8)
    assert (rep.n_frames, rep.n_clusters, rep.n_clusters_used) == (8, 8, 4)
    assert rep.entropy_bits == pytest.approx(2.0) and rep.perplexity == pytest.approx(4.0)
    with pytest.raises(ValueError, match="K = 3"):
        unit_usage({"a": np.array([0, 5])}, num_clusters=3)
    km = tmp_path / "dev" / "km.x"
    km.parent.mkdir()
    km.write_text("u1 0 0 1 1\nu2 0 0 0 0\n")
    assert cli.main(["--labels", str(km), "--num-clusters", "4", "--result-json", str(tmp_path / "result_u.json"),
                     "--units", "MFCC, K=4", "--out", str(tmp_path / "q")]) == 0
    assert "cluster usage (no alignments)" in capsys.readouterr().out
    rec = json.loads((tmp_path / "result_u.json").read_text())
    assert rec["metric"] == "usage" and rec["values"]["clusters used"] == 2 and rec["values"]["K"] == 4
    assert rec["values"]["entropy (bits)"] == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))
    with pytest.raises(SystemExit):  # a missing alignment file: one line, no traceback
        cli.main(["--labels", str(km), "--alignments", str(tmp_path / "none.phones")])
    assert "label_quality: error:" in capsys.readouterr().err
