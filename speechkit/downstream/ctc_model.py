"""CTC models: full fine-tuning of an SSL encoder (fairseq semantics) and a SUPERB-style probe.

:class:`CTCModel` is wav2vec 2.0 / HuBERT fine-tuning as fairseq's ``Wav2VecCtc`` does it:

- a linear CTC head (``lm_head``, HF's name) on the encoder output, vocabulary from the tokenizer,
  blank at id 0;
- the conv feature extractor frozen for good (``feature_grad_mult = 0``, no grads, no graph);
- the rest of the encoder run under ``torch.no_grad`` for the first ``freeze_finetune_updates``
  updates, so only the head learns while it is random (the trainer passes the update count in
  with :meth:`CTCModel.set_num_updates`); the optimizer still holds those parameters, they just
  get no gradient until then;
- time masking (``mask_prob``, ``mask_length``) and channel masking (``mask_channel_prob``,
  ``mask_channel_length``) of the projected features while training, never in eval mode.

It starts from a pre-training checkpoint (the encoder part of any model that holds an SSLEncoder),
from an imported one, or from scratch with the same architecture and random weights (the baseline;
it trains every parameter from the first update, the conv extractor included: the freezing above
protects pre-trained weights, and random ones need no protection).

:class:`ProbeCTCModel` keeps the upstream frozen and learns a weighted sum of its L+1 hidden
states plus a small head (linear, or a 2-layer BiLSTM as SUPERB's ASR task) with CTC on top.

Both return the CTC loss as a mean per target token with ``sample_size`` = target tokens
(fairseq's ``sentence_avg: false``) and count greedy token errors (``uer``) in eval mode.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.models import register_model
from speechkit.models.config_utils import ModelConfig, config_to_dict
from speechkit.models.dropout import Dropout
from speechkit.models.encoder import EncoderConfig

from speechkit.text.scoring import align

from .ctc_decode import ctc_greedy_decode
from .featurizer import Upstream, WeightedSumFeaturizer, build_upstream, find_encoder, upstream_module, upstream_spec

logger = logging.getLogger(__name__)

# Encoder fields a fine-tuning config may change (regularisation and masking, not the architecture).
FINETUNE_ENCODER_FIELDS = (
    "dropout", "attention_dropout", "activation_dropout", "dropout_input", "dropout_features", "layerdrop",
    "mask_prob", "mask_length", "mask_min_masks", "mask_require_same", "mask_channel_prob",
    "mask_channel_length", "mask_channel_min_masks",
)


@dataclass
class CTCConfig(ModelConfig):
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    vocab_size: int = 32
    blank: int = 0
    freeze_finetune_updates: int = 0
    # fairseq never trains the conv extractor when fine-tuning; a from-scratch model has nothing to keep
    # there, so the baseline trains it (freezing random convolutions would handicap the baseline)
    freeze_feature_extractor: bool = True
    final_dropout: float = 0.0  # dropout on the encoder output before the CTC head
    zero_infinity: bool = True  # an utterance too short for its transcript gives 0 loss, not inf
    # Encoders with more structure than EncoderConfig holds (WavLM's relative position bias): the
    # encoder's upstream_spec() without its "encoder" entry (speechkit.models.registry); empty = SSLEncoder.
    encoder_kind: dict[str, Any] = field(default_factory=dict)
    arch: str = "ctc"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.blank < self.vocab_size:
            raise ValueError(f"blank id {self.blank} outside the vocabulary of size {self.vocab_size}")
        if self.encoder.mask_channel_prob > 0 and self.encoder.mask_channel_length >= self.encoder.embed_dim:
            raise ValueError(f"mask_channel_length {self.encoder.mask_channel_length} must be smaller than the "
                             f"encoder width {self.encoder.embed_dim} (64 is fairseq's value for 768-dim models)")
        if self.freeze_feature_extractor:
            self.encoder.feature_grad_mult = 0.0  # no grads and no graph through the convolutions
        elif self.encoder.feature_grad_mult == 0.0:
            self.encoder.feature_grad_mult = 1.0


def ctc_loss_and_stats(log_probs: Tensor, frame_lens: Tensor, batch: dict[str, Any], blank: int,
                       zero_infinity: bool, training: bool) -> tuple[Tensor, dict[str, float], int]:
    """CTC loss (mean per target token) and stats from (B, T, V) log-probs; greedy ``uer`` in eval mode."""
    if "labels" not in batch:
        raise KeyError("CTC training needs batch['labels'] (token ids padded with -100) and batch['label_lens']")
    labels, label_lens = batch["labels"], batch["label_lens"]
    valid = labels >= 0
    targets = labels[valid]  # concatenated targets (1-D), the format ctc_loss takes for any padding
    ntokens = int(label_lens.sum())
    if ntokens == 0:
        raise ValueError(f"batch has no target tokens (empty transcripts): {batch.get('utt_ids')}")
    with torch.backends.cudnn.flags(enabled=False):  # cudnn's CTC has extra constraints; use torch's
        loss_sum = F.ctc_loss(log_probs.transpose(0, 1), targets, frame_lens, label_lens, blank=blank,
                              reduction="sum", zero_infinity=zero_infinity)
    loss = loss_sum / ntokens
    stats = {"loss": float(loss.detach())}
    if not training:
        errs = 0
        hyps = ctc_greedy_decode(log_probs.detach(), frame_lens, blank)
        for b, hyp in enumerate(hyps):
            ref = labels[b, : int(label_lens[b])].tolist()
            errs += sum(op != "C" for op, _, _ in align(ref, hyp))  # Levenshtein distance
        stats["uer"] = errs / ntokens  # weighted by sample_size = ntokens in the trainer's averages
    return loss, stats, ntokens


class CTCModel(nn.Module):
    """encoder (SSLEncoder) -> dropout -> lm_head (Linear D -> vocab) -> log-softmax -> CTC."""

    def __init__(self, cfg: CTCConfig) -> None:
        super().__init__()
        self.config = cfg
        # the pre-trained encoder's class: encoder_kind's "type" (a plain SSLEncoder when empty)
        self.encoder = build_upstream({"type": "encoder", **cfg.encoder_kind, "encoder": config_to_dict(cfg.encoder)})
        if cfg.freeze_feature_extractor:
            self.encoder.feature_extractor.requires_grad_(False)
        self.final_dropout = Dropout(cfg.final_dropout)
        self.lm_head = nn.Linear(cfg.encoder.embed_dim, cfg.vocab_size)
        # fairseq's Linear() for the CTC projection: xavier weights, zero bias
        nn.init.xavier_uniform_(self.lm_head.weight)
        nn.init.zeros_(self.lm_head.bias)
        self.num_updates = 0

    def model_config(self) -> dict[str, Any]:
        return self.config.to_dict()

    def set_num_updates(self, num_updates: int) -> None:
        self.num_updates = int(num_updates)

    def has_unused_parameters(self) -> bool:
        """For DDP: the encoder gets no gradient while frozen, and masked_spec_embed none without time masking."""
        return self.config.freeze_finetune_updates > 0 or self.config.encoder.mask_prob <= 0

    @property
    def encoder_frozen(self) -> bool:
        return self.num_updates < self.config.freeze_finetune_updates

    def extract_features(self, wav: Tensor, wav_lens: Tensor | None = None,
                         layer: int | None = None) -> tuple[list[Tensor], Tensor]:
        """The fine-tuned encoder as an upstream: speechkit's extract_features call (L+1 hidden states,
        frame lengths); `speechkit.models.upstream.S3PRLUpstream` wraps it in s3prl's interface."""
        return self.encoder.extract_features(wav, wav_lens, layer)

    def log_probs(self, wav: Tensor, wav_lens: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T', V) fp32 log-probs and (B,) frame lengths; masked only in training mode."""
        ctx = torch.no_grad() if (self.training and self.encoder_frozen) else contextlib.nullcontext()
        with ctx:
            out = self.encoder(wav, wav_lens, mask=self.training)
        x = self.final_dropout(out.x)
        return F.log_softmax(self.lm_head(x).float(), dim=-1), out.frame_lens

    def forward(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, float], int]:
        lp, frame_lens = self.log_probs(batch["wav"], batch["wav_lens"])
        return ctc_loss_and_stats(lp, frame_lens, batch, self.config.blank, self.config.zero_infinity, self.training)


def finetune_encoder_config(base: EncoderConfig, overrides: dict[str, Any] | None) -> EncoderConfig:
    """``base`` (the pre-trained architecture) with fine-tuning regularisation/masking overrides."""
    overrides = dict(overrides or {})
    bad = sorted(k for k in overrides if k not in FINETUNE_ENCODER_FIELDS)
    if bad:
        raise ValueError(f"model.encoder: {bad} cannot be changed for fine-tuning (the architecture comes from "
                         f"the pre-trained model); allowed: {list(FINETUNE_ENCODER_FIELDS)}")
    return dataclasses.replace(base, **overrides)


def build_ctc_model(vocab_size: int, init: nn.Module | None = None, encoder_config: EncoderConfig | None = None,
                    from_scratch: bool = False, encoder_overrides: dict[str, Any] | None = None,
                    **head: Any) -> CTCModel:
    """A :class:`CTCModel` whose encoder architecture (and, unless ``from_scratch``, weights) come from
    ``init`` (any module holding an SSLEncoder: a pre-training model, an imported one, a CTC model),
    or from ``encoder_config`` when there is no ``init``. ``head``: other :class:`CTCConfig` fields.
    ``from_scratch`` (the baseline) also switches the freezing off: nothing pre-trained to protect."""
    if init is not None:
        enc = find_encoder(init)
        if enc is None:
            raise TypeError(f"{type(init).__name__} holds no SSLEncoder: cannot fine-tune it with CTC "
                            "(use the probe task for other upstreams)")
        base = enc.cfg
    elif encoder_config is not None:  # random weights; the freezing options as given unless from_scratch
        base, enc = encoder_config, None
    else:
        raise ValueError("build_ctc_model needs an init model or an encoder_config")
    if from_scratch:
        # Same architecture, same data, same updates - but nothing pre-trained to protect: the whole
        # network trains from the first update (freezing random weights would only handicap the baseline).
        head = {**head, "freeze_finetune_updates": 0, "freeze_feature_extractor": False}
    # keep the encoder class (e.g. WavLM's bias); a plain SSLEncoder leaves encoder_kind empty, as it always has
    kind = {k: v for k, v in enc.upstream_spec().items() if k != "encoder"} if enc is not None else {}
    if kind == {"type": "encoder"}:
        kind = {}
    cfg = CTCConfig(encoder=finetune_encoder_config(base, encoder_overrides), vocab_size=vocab_size,
                    encoder_kind=kind, **head)
    model = CTCModel(cfg)
    if enc is not None and not from_scratch:
        model.encoder.load_state_dict(enc.state_dict(), strict=True)
        logger.info("CTC model: encoder initialised from the pre-trained model (%d parameters)",
                    sum(p.numel() for p in model.encoder.parameters()))
    else:
        logger.info("CTC model: encoder randomly initialised (from scratch)")
    return model


# ---------------------------------------------------------------------------------------------------
@dataclass
class ProbeCTCConfig(ModelConfig):
    upstream: dict[str, Any] = field(default_factory=dict)  # featurizer.upstream_spec() of the upstream
    vocab_size: int = 32
    blank: int = 0
    head: str = "lstm"  # "linear" | "lstm" (bidirectional, num_layers x hidden_dim per direction)
    hidden_dim: int = 128
    num_layers: int = 2
    dropout: float = 0.1
    layer_norm: bool = False  # layer-norm each hidden state before the weighted sum
    zero_infinity: bool = True
    # keep each training/valid utterance's hidden states after its first pass (whole utterances, frozen
    # upstream: exact), so later epochs train the head alone; costs 4 * (L+1) * D bytes per frame of RAM
    cache_upstream: bool = True
    arch: str = "probe_ctc"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.head not in ("linear", "lstm"):
            raise ValueError(f"probe head must be 'linear' or 'lstm', got {self.head!r}")


class ProbeCTCModel(nn.Module):
    """frozen upstream -> weighted sum of L+1 states -> head -> CTC."""

    def __init__(self, cfg: ProbeCTCConfig, upstream: nn.Module | None = None) -> None:
        super().__init__()
        self.config = cfg
        model = upstream if upstream is not None else build_upstream(cfg.upstream)
        self.upstream = Upstream(model, freeze=True, cache=cfg.cache_upstream)
        self.featurizer = WeightedSumFeaturizer(self.upstream.num_states(), cfg.layer_norm)
        from .speaker import _hidden_dim

        dim = _hidden_dim(model)
        self.dropout = Dropout(cfg.dropout)
        if cfg.head == "lstm":
            self.lstm: nn.LSTM | None = nn.LSTM(dim, cfg.hidden_dim, num_layers=cfg.num_layers, batch_first=True,
                                                bidirectional=True, dropout=cfg.dropout if cfg.num_layers > 1 else 0.0)
            dim = 2 * cfg.hidden_dim
        else:
            self.lstm = None
        self.proj = nn.Linear(dim, cfg.vocab_size)

    @classmethod
    def from_upstream(cls, upstream: nn.Module, vocab_size: int, **kwargs: Any) -> "ProbeCTCModel":
        cfg = ProbeCTCConfig(upstream=upstream_spec(upstream), vocab_size=vocab_size, **kwargs)
        return cls(cfg, upstream_module(upstream))

    @classmethod
    def from_config(cls, data: dict[str, Any]) -> "ProbeCTCModel":
        return cls(ProbeCTCConfig.from_dict(data))

    def model_config(self) -> dict[str, Any]:
        return self.config.to_dict()

    def log_probs(self, wav: Tensor, wav_lens: Tensor, utt_ids: list[str] | None = None) -> tuple[Tensor, Tensor]:
        """``utt_ids`` (training batches) lets the upstream serve its cached hidden states."""
        hs, lens = self.upstream(wav, wav_lens, utt_ids)
        x = self.dropout(self.featurizer(hs))  # (B, T', D)
        if self.lstm is not None:
            packed = nn.utils.rnn.pack_padded_sequence(x, lens.cpu(), batch_first=True, enforce_sorted=False)
            y, _ = self.lstm(packed)
            x, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.size(1))
            x = self.dropout(x)
        return F.log_softmax(self.proj(x).float(), dim=-1), lens

    def forward(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, float], int]:
        lp, lens = self.log_probs(batch["wav"], batch["wav_lens"], batch.get("utt_ids"))
        return ctc_loss_and_stats(lp, lens, batch, self.config.blank, self.config.zero_infinity, self.training)


register_model("ctc", CTCConfig, CTCModel)
register_model("probe_ctc", ProbeCTCConfig, ProbeCTCModel)
