"""Speaker heads trained on a cache of the frozen upstream's hidden-state moments.

With a frozen upstream, every epoch of speaker-ID training runs the same encoder over the same audio
again; on a CPU that is nearly all of the time. The speaker head needs far less than the frames:
statistics pooling of a softmax-weighted sum ``y = sum_l w_l h_l`` over an utterance's T frames is

    mean(y) = sum_l w_l mu_l                 var(y) = sum_{l,m} w_l w_m C_lm   (per dimension)

with ``mu_l`` the mean of hidden state ``l`` and ``C_lm`` the (population) covariance of hidden states
``l`` and ``m``, both over the valid frames. So one pass over the data that stores ``mu`` (S, D) and the
upper triangle of ``C`` (S(S+1)/2, D) per utterance (S = L + 1 states) lets the head -- layer weights
included -- train for hundreds of epochs in seconds, and gives *exactly* the model's pooled statistics
on whole utterances (:meth:`SpeakerIDModel.pooled_from_moments`); the trained head is saved as an
ordinary speaker-ID checkpoint (upstream + head), so ``eval_sid`` and ``extract_embeddings`` use it as is.

Cost: ``4 * (S + S(S+1)/2) * D`` bytes per utterance (S=5, D=256: 20 KB; S=13, D=768: 320 KB), held
in memory. Training uses whole utterances (no random crops) and stops early on the dev accuracy.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

logger = logging.getLogger(__name__)

CACHE_VERSION = 2


@dataclass
class LayerMoments:
    """Per-utterance moments of S hidden states: ``mean`` (N, S, D), ``cov`` (N, P, D) with P = S(S+1)/2
    entries ``C_lm`` for l <= m in row-major order (:func:`triu_pairs`)."""

    utt_ids: list[str]
    mean: Tensor
    cov: Tensor

    def __post_init__(self) -> None:
        n, s, d = self.mean.shape
        if len(self.utt_ids) != n or tuple(self.cov.shape) != (n, s * (s + 1) // 2, d):
            raise ValueError(f"LayerMoments: {len(self.utt_ids)} ids, mean {tuple(self.mean.shape)}, cov "
                             f"{tuple(self.cov.shape)} do not fit together")

    @property
    def num_states(self) -> int:
        return int(self.mean.shape[1])

    def select(self, utts: Sequence[str]) -> "LayerMoments":
        index = {u: i for i, u in enumerate(self.utt_ids)}
        rows = torch.tensor([index[u] for u in utts], dtype=torch.long)
        return LayerMoments(list(utts), self.mean[rows], self.cov[rows])


def triu_pairs(num_states: int) -> tuple[Tensor, Tensor]:
    """Index pairs (l, m), l <= m, in the order the cache stores them."""
    return torch.triu_indices(num_states, num_states)


def full_cov(cov: Tensor, num_states: int) -> Tensor:
    """(N, P, D) upper triangle -> (N, S, S, D) symmetric."""
    n, _, d = cov.shape
    li, mi = triu_pairs(num_states)
    full = cov.new_zeros(n, num_states, num_states, d)
    full[:, li, mi] = cov
    full[:, mi, li] = cov
    return full


def utterance_moments(hidden_states: Sequence[Tensor], lens: Tensor, layer_norm: bool = False) -> tuple[Tensor, Tensor]:
    """S x (B, T, D) hidden states + (B,) valid frame counts -> mean (B, S, D), cov triangle (B, P, D).

    ``layer_norm`` normalises each state first, as :class:`WeightedSumFeaturizer` does."""
    stacked = torch.stack(list(hidden_states), dim=1).double()  # (B, S, T, D)
    if layer_norm:
        stacked = F.layer_norm(stacked, stacked.shape[-1:])
    b, s, t, _ = stacked.shape
    mask = (torch.arange(t, device=lens.device)[None, :] < lens[:, None]).to(stacked.dtype)  # (B, T)
    n = lens.to(stacked.dtype).clamp(min=1)[:, None, None]  # (B, 1, 1)
    mean = (stacked * mask[:, None, :, None]).sum(dim=2) / n  # (B, S, D)
    centred = ((stacked - mean[:, :, None, :]) * mask[:, None, :, None]).permute(0, 3, 1, 2)  # (B, D, S, T)
    # all S x S products per dimension as one batched matrix product over time, then the upper triangle
    full = torch.matmul(centred, centred.transpose(-1, -2)) / n[..., None]  # (B, D, S, S)
    li, mi = triu_pairs(s)
    cov = full[:, :, li, mi].transpose(1, 2)  # (B, P, D)
    return mean.float(), cov.float()


@torch.no_grad()
def compute_moments(upstream: torch.nn.Module, data_dir: str | os.PathLike, *, layer_norm: bool = False,
                    max_tokens: int | None = None, device: str | torch.device = "cpu") -> LayerMoments:
    """One pass of the frozen ``upstream`` (``extract_features(wav, wav_lens)``) over a data dir, in batches
    of ``max_tokens`` samples (default: tasks.INFERENCE_BATCH_SAMPLES of the device's kind)."""
    from speechkit.log import progress

    from .tasks import audio_batches

    upstream = upstream.to(device).eval()
    batches, num, _ = audio_batches(data_dir, max_tokens=max_tokens, device=device)
    ids: list[str] = []
    means: list[Tensor] = []
    covs: list[Tensor] = []
    for batch in progress(batches, total=num, desc=f"moments {pathlib.Path(data_dir).name}", unit="batch"):
        hs, lens = upstream.extract_features(batch["wav"].to(device), batch["wav_lens"].to(device))
        if bool((lens <= 0).any()):
            bad = [u for u, n in zip(batch["utt_ids"], lens.tolist()) if n <= 0]
            raise ValueError(f"{data_dir}: utterance(s) too short for one upstream frame: {', '.join(bad[:5])}")
        m, c = utterance_moments(hs, lens, layer_norm)
        ids.extend(batch["utt_ids"])
        means.append(m.cpu())
        covs.append(c.cpu())
    order = sorted(range(len(ids)), key=ids.__getitem__)  # data-dir order, whatever the batching
    mean = torch.cat(means)[order]
    cov = torch.cat(covs)[order]
    return LayerMoments([ids[i] for i in order], mean, cov)


def _file_stamp(h: "hashlib._Hash", path: pathlib.Path) -> None:
    if path.is_file():
        st = path.stat()
        h.update(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    else:
        h.update(str(path).encode())


def upstream_key(upstream_path: str, layer_norm: bool) -> str:
    """Changes when the checkpoint file (path, size, mtime) or the normalisation change."""
    h = hashlib.sha256()
    h.update(json.dumps({"v": CACHE_VERSION, "layer_norm": layer_norm}).encode())
    _file_stamp(h, pathlib.Path(upstream_path))
    return h.hexdigest()[:16]


def cache_key(upstream_path: str, data_dir: str | os.PathLike, layer_norm: bool) -> str:
    """Changes when the checkpoint file, the data dir's wav.scp or the normalisation change."""
    h = hashlib.sha256(upstream_key(upstream_path, layer_norm).encode())
    for name in ("wav.scp", "segments"):
        _file_stamp(h, pathlib.Path(data_dir) / name)
    return h.hexdigest()[:16]


def audio_ids(data_dir: str | os.PathLike) -> dict[str, str]:
    """Per utterance, a digest of where its audio comes from: its wav.scp entry, and its segments line (the
    recording's entry then). Two data dirs share an utterance's moments only where these are equal."""
    from speechkit.io.tables import read_segments, read_table

    d = pathlib.Path(data_dir)
    wav = read_table(d / "wav.scp")
    if not (d / "segments").is_file():
        return {utt: hashlib.sha1(src.encode()).hexdigest() for utt, src in wav.items()}
    return {utt: hashlib.sha1(f"{rec} {start!r} {end!r}|{wav.get(rec, '')}".encode()).hexdigest()
            for utt, (rec, start, end) in read_segments(d / "segments").items()}


def _from_other_caches(reuse: Sequence[pathlib.Path], up_key: str, wanted: dict[str, str]) -> LayerMoments | None:
    """The moments of the ``wanted`` utterances from a cache file of the same upstream that holds all of them
    with the same audio (e.g. a subset of a data dir cached before), or None."""
    for cache_dir in reuse:
        for path in sorted(pathlib.Path(cache_dir).glob("moments_*.pt")):
            state = torch.load(path, weights_only=True)
            audio = state.get("audio")
            if state.get("upstream") != up_key or not audio or any(audio.get(u) != a for u, a in wanted.items()):
                continue
            logger.info("%s: moments of all %d utterances reused from it", path, len(wanted))
            return LayerMoments(state["utt_ids"], state["mean"], state["cov"]).select(sorted(wanted))
    return None


def cached_moments(upstream: torch.nn.Module, upstream_path: str, data_dir: str | os.PathLike, cache_dir: pathlib.Path,
                   *, layer_norm: bool = False, device: str | torch.device = "cpu",
                   reuse: Sequence[pathlib.Path] = ()) -> LayerMoments:
    """:func:`compute_moments`, stored as ``<cache_dir>/moments_<set>_<key>.pt`` (written atomically).

    ``reuse``: other cache dirs (e.g. of a head trained on a superset of this data dir); when one of their
    files, from the same checkpoint and normalisation, holds every utterance of ``data_dir`` with the same
    audio (:func:`audio_ids`), its moments are taken instead of running the upstream again.
    """
    path = cache_dir / f"moments_{pathlib.Path(data_dir).name}_{cache_key(upstream_path, data_dir, layer_norm)}.pt"
    if path.is_file():
        state = torch.load(path, weights_only=True)
        logger.info("%s: reusing cached moments (%d utterances)", path, len(state["utt_ids"]))
        return LayerMoments(state["utt_ids"], state["mean"], state["cov"])
    up_key, audio = upstream_key(upstream_path, layer_norm), audio_ids(data_dir)
    mom = _from_other_caches(reuse, up_key, audio) if reuse else None
    if mom is not None:
        return mom
    mom = compute_moments(upstream, data_dir, layer_norm=layer_norm, device=device)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"utt_ids": mom.utt_ids, "mean": mom.mean, "cov": mom.cov, "upstream": up_key,
                "audio": {u: audio[u] for u in mom.utt_ids}}, tmp)
    os.replace(tmp, path)
    logger.info("wrote %s (%d utterances, %d states x %d dims)", path, len(mom.utt_ids), mom.num_states,
                mom.mean.shape[-1])
    return mom


@dataclass
class HeadTrainConfig:
    epochs: int = 300
    batch_size: int = 64
    lr: float = 5.0e-3
    weight_decay: float = 0.0
    patience: int = 30  # epochs without a better dev accuracy (ties: lower dev loss) before stopping
    seed: int = 1


def _targets(moments: LayerMoments, spk_of: Mapping[str, str], speakers: Sequence[str], source: str) -> Tensor:
    index = {s: i for i, s in enumerate(speakers)}
    unknown = sorted({spk_of[u] for u in moments.utt_ids if spk_of[u] not in index})
    if unknown:
        raise ValueError(f"{source}: {len(unknown)} speaker(s) not among the {len(speakers)} training speakers, "
                         f"e.g. {unknown[:5]}")
    return torch.tensor([index[spk_of[u]] for u in moments.utt_ids], dtype=torch.long)


def _evaluate(model, mom: LayerMoments, target: Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model.classify(model.pooled_from_moments(mom.mean, mom.cov))
        loss = float(F.cross_entropy(logits, target))
        acc = float((logits.argmax(-1) == target).float().mean())
    return loss, acc


def train_head(model, train: LayerMoments, train_spk: Mapping[str, str], dev: LayerMoments | None,
               dev_spk: Mapping[str, str] | None, cfg: HeadTrainConfig) -> dict[str, Any]:
    """Train the head of a :class:`SpeakerIDModel` (frozen upstream) on cached moments, in place.

    Mini-batch AdamW over shuffled utterances (seeded); after each epoch the dev accuracy decides the
    best state, which the model ends with. Returns a summary (epochs run, best epoch, accuracies)."""
    speakers = model.config.speakers
    y_train = _targets(train, train_spk, speakers, "train")
    y_dev = _targets(dev, dev_spk, speakers, "dev") if dev is not None else None
    params = [p for n, p in model.named_parameters() if not n.startswith("upstream.")]
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    best: tuple[float, float] | None = None  # (acc, -loss)
    best_state: dict[str, Tensor] = {}
    best_epoch, since, history = 0, 0, []
    n = len(train.utt_ids)
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n, cfg.batch_size):
            rows = perm[start:start + cfg.batch_size]
            if len(rows) < 2 and n >= 2:  # BatchNorm needs two rows; fold a lone one into the last batch
                continue
            logits = model.classify(model.pooled_from_moments(train.mean[rows], train.cov[rows]))
            loss = F.cross_entropy(logits, y_train[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        tr_loss, tr_acc = _evaluate(model, train, y_train)
        dv_loss, dv_acc = _evaluate(model, dev, y_dev) if dev is not None else (tr_loss, tr_acc)
        history.append({"epoch": epoch, "train_loss": tr_loss, "train_acc": tr_acc, "dev_loss": dv_loss,
                        "dev_acc": dv_acc})
        score = (dv_acc, -dv_loss)
        if best is None or score > best:
            best, best_epoch, since = score, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("upstream.")}
        else:
            since += 1
        if epoch == 1 or epoch % 25 == 0:
            logger.info("epoch %d | train loss %.4f acc %.4f | dev loss %.4f acc %.4f", epoch, tr_loss, tr_acc,
                        dv_loss, dv_acc)
        if since >= cfg.patience:
            logger.info("early stop after epoch %d: dev accuracy has not improved for %d epochs", epoch, cfg.patience)
            break
    model.load_state_dict(best_state, strict=False)
    model.eval()
    summary = {"epochs": len(history), "best_epoch": best_epoch, "best_dev_acc": history[best_epoch - 1]["dev_acc"],
               "train_acc": history[best_epoch - 1]["train_acc"], "head": dataclasses.asdict(cfg)}
    logger.info("best epoch %d: dev accuracy %.4f (train %.4f)", best_epoch, summary["best_dev_acc"],
                summary["train_acc"])
    return {**summary, "history": history}
