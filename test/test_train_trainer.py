"""speechkit.train.trainer: exact resume after SIGKILL, accumulation, checkpoints, DDP on CPU."""
from __future__ import annotations

import copy
import pathlib
import signal
import subprocess
import sys

import pytest
import torch

from speechkit.train.batching import Collater
from speechkit.train.checkpoint import CheckpointError, load_checkpoint
from train_toy import ToyModel, build, make_data_dir, toy_config, worker_env

WORKER = pathlib.Path(__file__).with_name("train_toy.py")
DURATIONS = [0.3, 0.6, 0.8, 1.0, 1.2, 0.9, 1.5, 2.0, 0.7, 1.1]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    return make_data_dir(root / "train", DURATIONS), make_data_dir(root / "dev", [0.8, 1.0, 1.3], seed=1)


def _worker(data, valid, exp, *extra):
    cmd = [sys.executable, str(WORKER), "--data", str(data), "--valid", str(valid), "--exp", str(exp), *extra]
    return subprocess.Popen(cmd, env=worker_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc, timeout=120):
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def _run_in_process(data, valid, exp, resume=None, **trainer_opts):
    t = build(toy_config(**trainer_opts), data, exp, valid)
    t.maybe_resume(resume)
    t.train()
    return t.model.state_dict()


def test_sigkill_then_resume_gives_identical_weights(dirs, tmp_path, caplog):
    data, valid = dirs
    # update_freq 2 over 5 batches per epoch: epochs end on a partial group, so the saved
    # position in the epoch matters; one DataLoader worker process as in real runs.
    opts = dict(update_freq=2, save_interval=4)
    killed = _worker(data, valid, tmp_path / "killed", "--set", "trainer.update_freq=2", "--set",
                     "trainer.save_interval=4", "--set", "data.num_workers=1", "--kill-at", "7")
    # the uninterrupted reference runs here meanwhile (same code path as the worker)
    a = _run_in_process(data, valid, tmp_path / "full", **opts)
    rc_killed, out_killed = _finish(killed)
    assert rc_killed == -signal.SIGKILL, out_killed
    last = load_checkpoint(tmp_path / "killed" / "checkpoint_last.pt")
    assert last["num_updates"] == 4  # saved every 4 updates; killed after update 7
    assert last["batch_in_epoch"] == 2 and last["epoch"] == 2  # mid-epoch
    assert not (tmp_path / "killed" / "final_weights_rank0.pt").exists()

    with caplog.at_level("INFO"):
        b = _run_in_process(data, valid, tmp_path / "killed", resume="auto", **opts)
    assert "update 4, epoch 2, batch 2 of the epoch" in caplog.text
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the weights did move: the comparison is not between two untouched models
    first = load_checkpoint(tmp_path / "full" / "checkpoint_best.pt")
    assert any(not torch.equal(a[k], first["model"][k]) for k in a)
    # keep_last=2 numbered checkpoints, plus last and best; logs and config written
    exp = tmp_path / "full"
    assert sorted(p.name for p in exp.glob("checkpoint_[0-9]*.pt")) == ["checkpoint_12.pt", "checkpoint_8.pt"]
    log = (exp / "train.log").read_text()
    assert "upd/s" in log and "s audio/s" in log and "ETA" in log and "valid | update 12" in log
    assert (exp / "config.yaml").is_file() and list((exp / "tensorboard").iterdir())


def test_accumulation_equals_one_full_batch(dirs, tmp_path):
    data, valid = dirs
    cfg = toy_config(update_freq=2)
    cfg.optim.clip_norm = 0.0
    cfg.data.pad_audio = True
    trainer = build(cfg, data, tmp_path / "acc")
    # no dropout / random masking: the two paths must agree
    trainer.model = trainer.ddp_model = ToyModel(random=False)
    from speechkit.train.optim import build_optimizer

    trainer.optimizer = build_optimizer(trainer.model, cfg.optim)
    ref = copy.deepcopy(trainer.model)
    col = Collater(16000, 10**6, label_rates=[50], pad_audio=True, random_crop=False)
    items = [trainer.train_set[i] for i in range(4)]
    halves = [col(items[:2]), col(items[2:])]
    full = col(items)
    assert trainer.train_step(halves)
    # reference gradient: the mean loss over every predicted frame of the full batch
    loss, _, _ = ref(full)
    loss.backward()
    for (name, p), q in zip(trainer.model.named_parameters(), ref.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6, rtol=1e-5), name
    assert trainer.num_updates == 1


def test_corrupt_or_incompatible_checkpoint_is_a_clear_error(dirs, tmp_path):
    data, valid = dirs
    exp = tmp_path / "exp"
    cfg = toy_config(max_updates=2, save_interval=2, valid_interval=0)
    cfg.schedule.warmup_updates = 1
    t = build(cfg, data, exp)
    t.train()
    last = exp / "checkpoint_last.pt"
    good = last.read_bytes()

    # without --resume an existing experiment is not silently overwritten
    with pytest.raises(CheckpointError, match="already has checkpoints"):
        build(cfg, data, exp).maybe_resume(None)
    # truncated file
    last.unlink()
    last.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match=r"checkpoint_last\.pt: cannot read checkpoint"):
        build(cfg, data, exp).maybe_resume("auto")
    # missing keys
    state = torch.load(exp / "checkpoint_2.pt")
    del state["optimizer"], state["rng"]
    torch.save(state, last)
    with pytest.raises(CheckpointError, match=r"checkpoint_last\.pt: checkpoint lacks optimizer, rng"):
        build(cfg, data, exp).maybe_resume("auto")
    # a different model config
    other = copy.deepcopy(cfg)
    other.model["num_classes"] = 12
    with pytest.raises(CheckpointError, match=r"checkpoint_2\.pt: .*different model config \(num_classes"):
        build(other, data, exp).maybe_resume(str(exp / "checkpoint_2.pt"))
    with pytest.raises(CheckpointError, match="nothere.pt: checkpoint not found"):
        build(cfg, data, exp).maybe_resume(str(exp / "nothere.pt"))


def test_amp_on_cpu_is_ignored_with_a_log_line(dirs, tmp_path, caplog):
    data, _ = dirs
    with caplog.at_level("INFO"):
        t = build(toy_config(amp="bf16"), data, tmp_path / "amp")
    assert t.amp_dtype is None and not t.scaler.is_enabled()
    assert "trainer.amp=bf16 is ignored on cpu" in caplog.text


def test_ddp_two_cpu_processes_end_with_identical_weights(dirs, tmp_path):
    data, valid = dirs
    exp = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(WORKER), "--data", str(data), "--valid", str(valid), "--exp", str(exp),
           "--set", "trainer.max_updates=4", "--set", "trainer.save_interval=4"]
    proc = subprocess.run(cmd, env=worker_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    w0 = torch.load(exp / "final_weights_rank0.pt")
    w1 = torch.load(exp / "final_weights_rank1.pt")
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    state = load_checkpoint(exp / "checkpoint_last.pt")
    assert state["world_size"] == 2 and len(state["rng"]["ranks"]) == 2
    # the ranks drew different random numbers (different masks), as intended
    assert not torch.equal(state["rng"]["ranks"][0]["torch"], state["rng"]["ranks"][1]["torch"])
    assert "2 processes on cpu" in (exp / "train.log").read_text()


def test_progress_speed_and_eta_leave_validation_out(dirs, tmp_path, monkeypatch, caplog):
    # A fake clock: a training forward costs 1 s, a validation forward 10 s. upd/s must be the
    # training speed (1.00, not dragged down by validation) and the ETA must count the updates
    # left at that speed plus the validations left at the last validation's cost.
    import re
    import types

    from speechkit.train import trainer as trainer_mod

    data, valid = dirs
    clock = [1000.0]
    monkeypatch.setattr(trainer_mod, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    t = build(toy_config(max_updates=16, log_interval=2, valid_interval=4, save_interval=0), data,
              tmp_path / "exp", valid)
    forward = t.model.forward
    n_valid_batches = []

    def timed_forward(batch):
        clock[0] += 1.0 if t.model.training else 10.0
        if not t.model.training:
            n_valid_batches.append(1)
        return forward(batch)

    t.model.forward = timed_forward
    with caplog.at_level("INFO", logger="speechkit.train.trainer"):
        t.train()
    lines = {int(m.group(1)): m for m in re.finditer(
        r"update (\d+)/16 \|.*\| ([\d.]+) upd/s \|.*\| ETA (\d+)m(\d+)s", caplog.text)}
    assert sorted(lines) == [1, 2, 4, 6, 8, 10, 12, 14, 16]
    valid_cost = 10.0 * len(n_valid_batches) / 4  # 4 validations (4, 8, 12, 16), same batches each
    for upd in (6, 10, 14):
        m = lines[upd]
        assert float(m.group(2)) == 1.0, m.group(0)
        left_valid = 16 // 4 - upd // 4
        eta = int(m.group(3)) * 60 + int(m.group(4))
        assert eta == int((16 - upd) * 1.0 + left_valid * valid_cost), m.group(0)

