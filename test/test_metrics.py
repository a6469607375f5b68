"""Speaker verification / identification metrics: EER, minDCF, cosine scoring, accuracy."""
import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_curve

from speechkit.bin import compute_eer as eer_cli
from speechkit.downstream.metrics import (
    Trial, accuracy, compute_eer, compute_min_dcf, cosine_scores, read_trials, roc_points, sid_result_record,
    sv_result_record, topk_accuracy,
)


def phi(x):
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


HAND_T = [0.9, 0.8, 0.3]
HAND_N = [0.1, 0.2, 0.85]


def hand():
    return np.array(HAND_T + HAND_N), np.array([1, 1, 1, 0, 0, 0])


def test_eer_hand_cases():
    s, y = hand()
    eer, thr = compute_eer(s, y)
    assert eer == pytest.approx(1 / 3) and thr == pytest.approx(0.8)
    assert compute_eer([1, 2, -1, 0], [1, 1, 0, 0])[0] == pytest.approx(0.0)  # separable
    assert compute_eer([-1, 0, 1, 2], [1, 1, 0, 0])[0] == pytest.approx(1.0)  # inverted
    # crossing between operating points (0, 0.5) and (1, 0.5) -> interpolated at 0.5
    eer, thr = compute_eer([0.5, 0.0, 1.0], [1, 0, 0])
    assert eer == pytest.approx(0.5) and thr == pytest.approx(0.75)
    # all scores tied: every trial accepted or none -> EER 0.5
    assert compute_eer([0.3] * 4, [1, 0, 1, 0])[0] == pytest.approx(0.5)


def test_min_dcf_hand_cases():
    s, y = hand()
    # p_target 0.5: DCF_norm = P_miss + P_fa, best at threshold 0.3 -> 0 + 1/3
    assert compute_min_dcf(s, y, 0.5) == pytest.approx((1 / 3, 0.3))
    # p_target 0.01: DCF_norm = P_miss + 99 P_fa, best with no false alarm (threshold 0.9) -> 2/3
    assert compute_min_dcf(s, y, 0.01) == pytest.approx((2 / 3, 0.9))
    assert compute_min_dcf([1, 2, -1, 0], [1, 1, 0, 0], 0.05)[0] == pytest.approx(0.0)
    # a useless system never costs more than the best trivial one
    assert compute_min_dcf([-1, 0, 1, 2], [1, 1, 0, 0], 0.05)[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="p_target"):
        compute_min_dcf(s, y, 0.0)


def test_roc_points_match_sklearn():
    rng = np.random.default_rng(0)
    s = np.round(rng.normal(size=400), 1)  # many ties
    y = rng.random(400) < 0.3
    thr, p_miss, p_fa = roc_points(s, y)
    fpr, tpr, sk_thr = roc_curve(y, s, drop_intermediate=False)
    ours = {(round(a, 12), round(b, 12)) for a, b in zip(p_fa, p_miss)}
    theirs = {(round(a, 12), round(1 - b, 12)) for a, b in zip(fpr, tpr)}
    assert ours == theirs


@pytest.mark.parametrize("d", [1.0, 2.0, 3.0])
def test_eer_and_min_dcf_of_two_gaussians(d):
    rng = np.random.default_rng(int(d * 10))
    n = 40_000
    tar, non = rng.normal(d / 2, 1, n), rng.normal(-d / 2, 1, n)
    s, y = np.concatenate([tar, non]), np.concatenate([np.ones(n), np.zeros(n)])
    eer, thr = compute_eer(s, y)
    assert eer == pytest.approx(phi(-d / 2), abs=0.006)
    assert thr == pytest.approx(0.0, abs=0.05)
    for p in (0.01, 0.05):
        grid = np.linspace(-6, 8, 14001)
        exact = min(p * phi(t - d / 2) + (1 - p) * phi(-t - d / 2) for t in grid) / p
        assert compute_min_dcf(s, y, p)[0] == pytest.approx(exact, abs=0.03)


def test_bad_inputs():
    with pytest.raises(ValueError, match="both target and non-target"):
        compute_eer([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="3 scores but 2 labels"):
        compute_eer([0.1, 0.2, 0.3], [1, 0])
    with pytest.raises(ValueError, match="NaN"):
        compute_eer([0.1, float("nan")], [1, 0])


def test_trials_and_cosine_scores(tmp_path):
    p = tmp_path / "trials"
    p.write_text("a b target\na c nontarget\n\n1 b c\n")
    trials = read_trials(p)
    assert trials == [Trial("a", "b", True), Trial("a", "c", False), Trial("b", "c", True)]
    emb = {"a": np.array([1.0, 0.0]), "b": np.array([3.0, 3.0]), "c": np.array([0.0, -2.0])}
    np.testing.assert_allclose(cosine_scores(trials, emb), [1 / math.sqrt(2), 0.0, -1 / math.sqrt(2)])
    with pytest.raises(KeyError, match="trial 2 .* no embedding for 'c'"):
        cosine_scores(trials, {"a": emb["a"], "b": emb["b"]})
    p.write_text("a b target\na c maybe\n")
    with pytest.raises(ValueError, match=r"trials:2: trial label"):
        read_trials(p)


def test_accuracy_helpers():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0], [1.0, 0.0, 0.5], [0.0, 2.0, 1.0]])
    target = torch.tensor([0, 2, 2, 0])
    assert accuracy(logits, target) == pytest.approx(0.5)
    assert accuracy(np.array([0, 2, 2, 1]), [0, 2, 1, 1]) == pytest.approx(0.75)
    assert topk_accuracy(logits, target, k=2) == pytest.approx(0.75)  # row 4: target 0 is ranked last
    assert topk_accuracy(logits, target, k=3) == pytest.approx(1.0)
    assert topk_accuracy(logits, target, k=1) == pytest.approx(0.5)
    rec = sid_result_record(logits, target, "test")
    assert rec.values == {"Utts": 4, "Acc(%)": 50.0} and rec.counts["correct"] == 2
    with pytest.raises(ValueError, match="match"):
        accuracy([1, 2], [1, 2, 3])


def test_compute_eer_cli(tmp_path, capsys):
    from speechkit.io.ark import ArkWriter

    rng = np.random.default_rng(1)
    centres = rng.normal(size=(4, 16))
    emb = {f"s{s}-u{u}": centres[s] + 0.8 * rng.normal(size=16) for s in range(4) for u in range(5)}
    keys = sorted(emb)
    lines = [f"{a} {b} {'target' if a[:2] == b[:2] else 'nontarget'}" for i, a in enumerate(keys)
             for b in keys[i + 1:]]
    (tmp_path / "trials").write_text("\n".join(lines) + "\n")
    with ArkWriter(tmp_path / "emb.ark", tmp_path / "emb.scp") as w:
        for k in keys:
            w.write(k, emb[k])
    np.savez(tmp_path / "emb.npz", **emb)
    out = tmp_path / "exp" / "sv" / "eval_test"
    assert eer_cli.main(["--trials", str(tmp_path / "trials"), "--embeddings", str(tmp_path / "emb.scp"),
                         "--out", str(out)]) == 0
    line = capsys.readouterr().out
    assert line.startswith("eval_test: EER ") and f"{len(lines)} trials" in line
    rec = json.loads((out / "result_sv.json").read_text())
    assert rec["task"] == "sv" and rec["metric"] == "EER"
    trials = read_trials(tmp_path / "trials")
    s = cosine_scores(trials, emb)
    y = [t.target for t in trials]
    expected = sv_result_record(s, y, "eval_test").values
    assert rec["values"]["EER(%)"] == pytest.approx(expected["EER(%)"], abs=1e-4)  # scp stores float32
    assert set(rec["values"]) == {"Trials", "EER(%)", "minDCF(p=0.01)", "minDCF(p=0.05)"}
    # the scores file can be fed back in, and .npz embeddings give the same numbers
    out2 = tmp_path / "exp" / "sv" / "eval_npz"
    assert eer_cli.main(["--trials", str(tmp_path / "trials"), "--embeddings", str(tmp_path / "emb.npz"),
                         "--out", str(out2)]) == 0
    out3 = tmp_path / "exp" / "sv" / "eval_scores"
    assert eer_cli.main(["--trials", str(tmp_path / "trials"), "--scores", str(out2 / "scores"),
                         "--out", str(out3)]) == 0
    r2 = json.loads((out2 / "result_sv.json").read_text())["values"]
    r3 = json.loads((out3 / "result_sv.json").read_text())["values"]
    assert r2["EER(%)"] == pytest.approx(expected["EER(%)"]) and r3["EER(%)"] == pytest.approx(r2["EER(%)"], abs=1e-3)
