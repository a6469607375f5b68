"""LayerFeatures (the iteration-2 k-means input): batched output equals one utterance at a time."""
import numpy as np
import torch

from speechkit.models import build_model
from speechkit.features.layer_features import LayerFeatures


def _checkpoint(tmp_path):
    torch.manual_seed(0)
    cfg = {"arch": "hubert", "preset": "tiny", "num_classes": 10}
    model = build_model(cfg)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "model_config": cfg}, path)
    return path


def test_batch_equals_single_utterances_and_groups_similar_lengths(tmp_path):
    lf = LayerFeatures(_checkpoint(tmp_path), layer=2, max_batch_samples=16000 * 20)
    rng = np.random.default_rng(0)
    lens = [16000, 96000, 20000, 90000, 17000, 3200]
    wavs = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in lens]
    calls = []
    inner = lf.model.extract_features

    def spy(x, lens_, layer=None):
        calls.append(tuple(int(v) for v in lens_))
        return inner(x, lens_, layer=layer)

    lf.model.extract_features = spy
    batched = lf.batch(wavs)
    lf.model.extract_features = inner
    for w, b in zip(wavs, batched):
        one = lf(w)
        assert b.shape == one.shape == ((len(w) - 80) // 320, 64)  # 50 Hz frames, 64-dim tiny preset
        np.testing.assert_allclose(b, one, atol=1e-4)
    # longest first; a sub-batch never pads an utterance to less than 90 % of its longest
    assert [n for c in calls for n in c] == sorted(lens, reverse=True)
    assert all(min(c) >= 0.9 * max(c) for c in calls)
    assert calls == [(96000, 90000), (20000,), (17000, 16000), (3200,)]  # 20 s cap, then the 90 % rule
