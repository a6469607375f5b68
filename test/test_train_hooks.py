"""The trainer's seams for models and tasks: ``collater=`` / ``valid_collater=``, ``set_num_updates`` (after
every update and after a resume) and ``after_update`` (once per update, never on resume)."""
from __future__ import annotations

import pytest

from speechkit.train.dataset import AudioLabelDataset
from speechkit.train.trainer import Trainer, make_collater, set_seed
from train_toy import SR, ToyModel, make_data_dir, toy_config


class CountingModel(ToyModel):
    def __init__(self) -> None:
        super().__init__(random=False)
        self.calls: list[tuple[str, int]] = []

    def set_num_updates(self, num_updates: int) -> None:
        self.calls.append(("set", num_updates))

    def after_update(self, num_updates: int) -> None:
        self.calls.append(("after", num_updates))


class TaggingCollater:
    """Wraps the default collater and marks its batches (what a downstream task's collater does)."""

    def __init__(self, inner, tag: str) -> None:
        self.inner, self.tag, self.epochs, self.batches = inner, tag, [], 0

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)
        self.inner.set_epoch(epoch)

    def __call__(self, items):
        self.batches += 1
        return {**self.inner(items), "tag": self.tag}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("hooks")
    return make_data_dir(root / "train", [0.6, 0.8, 1.0, 0.9]), make_data_dir(root / "dev", [0.8, 1.0], seed=1)


def _trainer(data, exp, model, **kw):
    cfg = toy_config(max_updates=3, save_interval=2, valid_interval=3, log_interval=1)
    sets = [AudioLabelDataset(d, ["toy"], [50], sample_rate=SR, min_sample_size=4000, max_sample_size=16000)
            for d in data]
    return cfg, Trainer(model, cfg, exp, sets[0], sets[1], model_config={"arch": "toy"}, **kw)


def test_trainer_uses_the_collaters_it_is_given(data, tmp_path):
    seen = []

    class Model(ToyModel):
        def forward(self, batch):
            seen.append((self.training, batch["tag"]))
            return super().forward(batch)

    set_seed(0)
    cfg, probe = _trainer(data, tmp_path / "probe", Model(random=False))
    train_c = TaggingCollater(make_collater(cfg, probe.train_set), "train")
    valid_c = TaggingCollater(make_collater(cfg, probe.train_set), "valid")
    _, trainer = _trainer(data, tmp_path / "exp", Model(random=False), collater=train_c, valid_collater=valid_c)
    assert trainer.collater is train_c and trainer.valid_collater is valid_c
    trainer.train()
    assert train_c.batches >= 3 and valid_c.batches >= 1 and train_c.epochs and not valid_c.epochs
    assert {tag for training, tag in seen if training} == {"train"}
    assert {tag for training, tag in seen if not training} == {"valid"}


def test_update_hooks_run_once_per_update_and_resume_only_sets_the_count(data, tmp_path):
    set_seed(0)
    model = CountingModel()
    _, trainer = _trainer(data, tmp_path / "exp", model)
    trainer.train()
    assert model.calls == [("set", 1), ("after", 1), ("set", 2), ("after", 2), ("set", 3), ("after", 3)]
    again = CountingModel()
    _, resumed = _trainer(data, tmp_path / "exp", again)
    resumed.maybe_resume(str(tmp_path / "exp" / "checkpoint_2.pt"))
    assert again.calls == [("set", 2)]  # the count is restored; no EMA-style step is repeated
