"""The contract between a model, the trainer and the downstream code, as types (CONTRACT.md says it in words).

A pre-training objective is any ``nn.Module`` that satisfies :class:`PretrainModel`; the trainer also
calls the optional hooks below when a model has them. Nothing here needs to be inherited: the classes are
``typing.Protocol`` s, checked structurally (``isinstance(model, UpdateCounter)``), so a model stays a plain
module and these types document, and let tests check, what the rest of the toolkit relies on.
"""
from __future__ import annotations

from typing import Any, Protocol, TypedDict, runtime_checkable

from torch import Tensor


class Batch(TypedDict, total=False):
    """What ``speechkit.train.batching.Collater`` (and downstream collaters) hand to ``model(batch)``.

    wav, wav_lens, utt_ids are always there; labels/label_lens when the data set has labels
    (k-means units per label frame for HuBERT, token ids for CTC, a speaker index for speaker ID).
    """

    wav: Tensor  # (B, T) float32, zero-padded after each utterance's wav_lens[b] samples
    wav_lens: Tensor  # (B,) int64 valid samples
    labels: Tensor  # (B, L) int64, padded with -100 (the ignore index of cross-entropy)
    label_lens: Tensor  # (B,) int64 valid labels
    utt_ids: list[str]  # B utterance ids, in batch order: errors name them
    labels_list: list[Tensor]  # several label streams: each (B, L_s); `labels` is the first
    label_lens_list: list[Tensor]


@runtime_checkable
class PretrainModel(Protocol):
    """What every model built by :func:`speechkit.models.build_model` for pre-training provides.

    ``forward(batch) -> (loss, stats, sample_size)``: ``loss`` a scalar tensor, by default the mean over
    ``sample_size`` predicted units (a model whose loss is a sum sets ``loss_reduction = "sum"``);
    ``stats`` plain floats for the logs (``loss`` among them; keys ``*_sum``, ``count_*`` and
    ``sample_size`` are totals); ``sample_size`` an int, the trainer's weight for averaging over
    batches, accumulation steps and processes.

    ``extract_features(wav, wav_lens, layer) -> (hidden_states, frame_lens)``: no masking, no dropout in
    eval mode; ``hidden_states`` L+1 tensors (B, T', D), entry 0 the input of the first transformer layer
    and entry i the output of layer i; with ``layer=k`` only k layers run and k+1 entries come back;
    ``frame_lens`` (B,) valid frames.

    ``model_config()`` the plain dict that :func:`speechkit.models.build_model` rebuilds the model from
    (saved in every checkpoint as ``model_config``); ``config`` the dataclass behind it.
    """

    config: Any

    def model_config(self) -> dict[str, Any]: ...

    def forward(self, batch: Batch) -> tuple[Tensor, dict[str, float], int]: ...

    def extract_features(self, wav: Tensor, wav_lens: Tensor | None = None,
                         layer: int | None = None) -> tuple[list[Tensor], Tensor]: ...


@runtime_checkable
class UpdateCounter(Protocol):
    """Optional: state that is a pure function of the update count (a Gumbel temperature, an EMA decay,
    encoder freezing). The trainer calls it after every optimizer update and after a resume, so it must
    be idempotent: calling it twice with the same n changes nothing."""

    def set_num_updates(self, num_updates: int) -> None: ...


@runtime_checkable
class AfterUpdate(Protocol):
    """Optional: state that moves with the weights (data2vec's EMA teacher). Called exactly once after
    each optimizer update n (after ``set_num_updates(n)``), never on resume or in validation."""

    def after_update(self, num_updates: int) -> None: ...


@runtime_checkable
class DeclaresUnusedParameters(Protocol):
    """Optional: True when some trainable parameters may get no gradient in an update (an encoder run
    without gradient for its first updates, an embedding used only when something is masked). The
    trainer then has DDP look for them each step; it detects LayerDrop by itself."""

    def has_unused_parameters(self) -> bool: ...
