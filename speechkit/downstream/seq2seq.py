"""Attention encoder-decoder fine-tuning (AV-HuBERT's VSR / ASR / AVSR seq2seq) with an optional CTC head.

Model (parameter names follow fairseq's ``av_hubert_seq2seq``, so fine-tuned checkpoints map by a table)::

    encoder.w2v_model   the pre-trained encoder (AV-HuBERT's AVHubertEncoder, or an audio SSLEncoder)
    decoder.*           speechkit.downstream.seq2seq_decoder.TransformerDecoder (fairseq TransformerDecoder names)
    ctc_proj            Linear(D_enc -> V), only with a CTC weight (not in the anchor; ESPnet-style joint training)

The encoder interface (:class:`EncoderAdapter`): ``adapter(batch, modalities) -> (x (B, T, D), padding_mask
(B, T) bool True at padding)``, ``adapter.output_dim``, ``adapter.kind`` ("av" or "wav"). Two adapters:

* :class:`AVEncoderAdapter` wraps any module called as AV-HuBERT's encoder:
  ``m(audio_feats | None, video | None, lengths, mask=bool, modality_dropout=bool | None, utt_ids=...)``
  returning an object with ``x``, ``padding_mask`` (or None) and ``frame_lens``. ``modalities`` picks the
  streams it gets from the batch; the other is passed as None, which the encoder zero-fills (VSR = video
  only, ASR = audio only, AVSR = both).
* :class:`WavEncoderAdapter` wraps an audio ``SSLEncoder`` (HuBERT & co.; ``batch["wav"]``), so the same
  decoder, training and decoding run on audio-only models too.

Training (``forward``): label-smoothed cross-entropy (fairseq's ``label_smoothed_cross_entropy``: eps 0.1,
``(1 - eps - eps / (V - 1)) * nll + eps / (V - 1) * sum_v -log p_v``), targets = tokens + EOS, decoder input
= EOS + tokens (fairseq's BOS-less convention); with ``ctc_weight`` w the loss is ``(1 - w) att + w ctc``. The
loss is a mean per target token (EOS included) with ``sample_size`` = tokens. The encoder runs under
``no_grad`` for the first ``freeze_finetune_updates`` updates (the trainer passes the count in).

Token ids are the tokenizer's (speechkit.text.tokenizer): id 0 is the CTC blank there, which never occurs in a
transcript, so the decoder uses it as BOS/EOS (``eos`` field): the CTC head and the decoder share one
vocabulary and the tied embedding matrix stays V x D.

Decoding (:meth:`Seq2SeqModel.decode`): batched beam search (``speechkit.downstream.beam_search``) with a
length penalty, ``max_len = max_len_a * T + max_len_b`` tokens, and joint CTC/attention scoring when the
model has a CTC head and ``ctc_weight > 0``.
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

from speechkit.models.config_utils import config_from_dict, config_to_dict
from speechkit.models.dropout import Dropout

from .beam_search import CTCPrefixScorer, Hypothesis, beam_search
from .seq2seq_decoder import DecoderConfig, TransformerDecoder, decoder_config

logger = logging.getLogger(__name__)

MODALITIES = ("audio", "video", "audiovisual")


# ------------------------------------------------------------------------------------------- encoders
class EncoderAdapter(nn.Module):
    """The encoder interface of the seq2seq model; subclasses hold the wrapped module as ``w2v_model``."""

    kind = ""
    output_dim: int

    def forward(self, batch: dict[str, Any], modalities: str, mask: bool = False,
                modality_dropout: bool = False) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


class AVEncoderAdapter(EncoderAdapter):
    kind = "av"

    def __init__(self, module: nn.Module, output_dim: int) -> None:
        super().__init__()
        self.w2v_model = module
        self.output_dim = output_dim

    def forward(self, batch: dict[str, Any], modalities: str, mask: bool = False,
                modality_dropout: bool = False) -> tuple[Tensor, Tensor]:
        if modalities not in MODALITIES:
            raise ValueError(f"modalities must be one of {MODALITIES}, got {modalities!r}")
        audio = batch.get("audio_feats") if modalities != "video" else None
        video = batch.get("video") if modalities != "audio" else None
        utts = batch.get("utt_ids")
        if modalities in ("audio", "audiovisual") and audio is None:
            raise ValueError(f"modalities={modalities!r} but the batch has no audio_feats (utterances {utts})")
        if modalities in ("video", "audiovisual") and video is None:
            raise ValueError(f"modalities={modalities!r} but the batch has no video (utterances {utts})")
        # modality dropout only makes sense when both streams are there (AVSR fine-tuning), and only when asked
        # for: the anchor fine-tunes without it (AV-HuBERT's extract_finetune)
        md = None if modalities == "audiovisual" and modality_dropout else False
        out = self.w2v_model(audio, video, batch["lengths"], mask=mask, modality_dropout=md, utt_ids=utts)
        x = out.x
        pad = out.padding_mask
        if pad is None:
            pad = torch.arange(x.size(1), device=x.device)[None, :] >= out.frame_lens.to(x.device)[:, None]
        return x, pad


class WavEncoderAdapter(EncoderAdapter):
    kind = "wav"

    def __init__(self, module: nn.Module, output_dim: int) -> None:
        super().__init__()
        self.w2v_model = module
        self.output_dim = output_dim

    def forward(self, batch: dict[str, Any], modalities: str, mask: bool = False,
                modality_dropout: bool = False) -> tuple[Tensor, Tensor]:
        if modalities != "audio":
            raise ValueError(f"an audio SSL encoder takes modalities='audio' only, got {modalities!r}")
        if "wav" not in batch:
            raise KeyError(f"an audio SSL encoder needs batch['wav'] (utterances {batch.get('utt_ids')})")
        out = self.w2v_model(batch["wav"], batch["wav_lens"], mask=mask)
        pad = torch.arange(out.x.size(1), device=out.x.device)[None, :] >= out.frame_lens[:, None]
        return out.x, pad


def locate_encoder(model: nn.Module) -> dict[str, Any]:
    """How to find the encoder inside a pre-trained model: ``{kind, attr, upstream}`` where ``upstream`` is
    what :func:`build_encoder` rebuilds it from (a registry model_config, or an SSLEncoder spec)."""
    if hasattr(model, "avhubert") and hasattr(model, "model_config"):
        return {"kind": "av", "attr": "avhubert", "upstream": model.model_config()}
    from .featurizer import find_encoder, upstream_spec

    if find_encoder(model) is not None:
        return {"kind": "wav", "attr": "", "upstream": upstream_spec(model)}
    raise TypeError(f"{type(model).__name__} holds neither an AV encoder (an 'avhubert' module) nor an SSLEncoder: "
                    "it cannot be the encoder of a seq2seq model")


def encoder_module(model: nn.Module, where: dict[str, Any]) -> nn.Module:
    if where["kind"] == "av":
        return getattr(model, where["attr"])
    from .featurizer import find_encoder

    return find_encoder(model)  # type: ignore[return-value]


def build_encoder(where: dict[str, Any], init: nn.Module | None = None) -> EncoderAdapter:
    """The adapter around ``init``'s encoder (weights kept), or around a fresh one rebuilt from ``where``."""
    if init is None:
        if where["kind"] == "av":
            from speechkit.models import build_model

            init = build_model(dict(where["upstream"]))
        else:
            from .featurizer import build_upstream

            init = build_upstream(dict(where["upstream"]))
    module = encoder_module(init, where)
    if where["kind"] == "av":
        dim = getattr(module, "output_dim", None) or module.cfg.encoder.embed_dim
        return AVEncoderAdapter(module, int(dim))
    return WavEncoderAdapter(module, module.cfg.embed_dim)


# ------------------------------------------------------------------------------------------- model
@dataclass
class Seq2SeqConfig:
    encoder: dict[str, Any] = field(default_factory=dict)  # locate_encoder(): kind, attr, upstream
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    vocab_size: int = 1000
    eos: int = 0  # BOS/EOS id: the tokenizer's blank, never part of a transcript
    modalities: str = "audiovisual"
    label_smoothing: float = 0.1
    ctc_weight: float = 0.0  # > 0: a CTC head on the encoder, trained jointly
    freeze_finetune_updates: int = 0
    apply_mask: bool = False  # the anchor fine-tunes without encoder masking (apply_mask: false)
    modality_dropout: bool = False  # AVSR: the pre-trained model's modality dropout in training (not in the anchor)
    final_dropout: float = 0.0  # on the encoder output, before the decoder and the CTC head
    arch: str = "seq2seq"

    def __post_init__(self) -> None:
        if isinstance(self.decoder, dict):
            self.decoder = decoder_config(self.decoder)
        if self.arch != "seq2seq":
            raise ValueError(f"Seq2SeqConfig.arch must be 'seq2seq', got {self.arch!r}")
        if self.modalities not in MODALITIES:
            raise ValueError(f"model.modalities must be one of {MODALITIES}, got {self.modalities!r}")
        if not 0.0 <= self.ctc_weight <= 1.0:
            raise ValueError(f"model.ctc_weight must be in [0, 1], got {self.ctc_weight}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"model.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 <= self.eos < self.vocab_size:
            raise ValueError(f"eos id {self.eos} outside the vocabulary of size {self.vocab_size}")

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Seq2SeqConfig":
        return config_from_dict(cls, data, "model_config")


def label_smoothed_nll(lprobs: Tensor, target: Tensor, eps: float, ignore: int = -100) -> tuple[Tensor, Tensor, int]:
    """fairseq's label-smoothed loss summed over non-ignored targets: (loss_sum, nll_sum, count)."""
    valid = target != ignore
    lp = lprobs[valid]
    tgt = target[valid]
    nll = -lp.gather(1, tgt[:, None]).squeeze(1)
    smooth = -lp.sum(dim=1)
    eps_i = eps / (lprobs.size(-1) - 1)
    loss = (1.0 - eps - eps_i) * nll + eps_i * smooth
    return loss.sum(), nll.sum(), int(valid.sum())


class Seq2SeqModel(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig, encoder: EncoderAdapter | None = None) -> None:
        super().__init__()
        self.config = cfg
        self.encoder = encoder if encoder is not None else build_encoder(cfg.encoder)
        d = self.encoder.output_dim
        self.final_dropout = Dropout(cfg.final_dropout)
        self.decoder = TransformerDecoder(cfg.decoder, cfg.vocab_size, d)
        self.ctc_proj = nn.Linear(d, cfg.vocab_size) if cfg.ctc_weight > 0 else None
        self.num_updates = 0

    def model_config(self) -> dict[str, Any]:
        return self.config.to_dict()

    def set_num_updates(self, num_updates: int) -> None:
        self.num_updates = int(num_updates)

    def has_unused_parameters(self) -> bool:
        """A frozen encoder (first updates), or a stream left out by modality choice, gets no gradient."""
        return self.config.freeze_finetune_updates > 0 or getattr(self.config, "modalities", "") != "audiovisual"

    @property
    def encoder_frozen(self) -> bool:
        return self.num_updates < self.config.freeze_finetune_updates

    def encode(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        frozen = self.training and self.encoder_frozen
        ctx = torch.no_grad() if frozen else contextlib.nullcontext()
        with ctx:
            x, pad = self.encoder(batch, self.config.modalities, mask=self.training and self.config.apply_mask,
                                  modality_dropout=self.training and self.config.modality_dropout)
        return self.final_dropout(x), pad

    def forward(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, float], int]:
        cfg = self.config
        if "labels" not in batch:
            raise KeyError("seq2seq training needs batch['labels'] (token ids padded with -100) and 'label_lens'")
        x, pad = self.encode(batch)
        labels = batch["labels"].to(x.device)
        lens = batch["label_lens"].to(x.device)
        B, L = labels.shape
        if bool((lens == 0).any()):
            raise ValueError(f"empty transcript in the batch: {batch.get('utt_ids')}")
        tokens = labels.clamp(min=0)
        prev = torch.cat([torch.full((B, 1), cfg.eos, dtype=torch.long, device=x.device), tokens], dim=1)
        target = torch.cat([labels, torch.full((B, 1), -100, dtype=torch.long, device=x.device)], dim=1)
        target[torch.arange(B, device=x.device), lens] = cfg.eos  # EOS right after each transcript
        logits = self.decoder(prev, x, pad)  # (B, L + 1, V)
        lprobs = F.log_softmax(logits, dim=-1)
        loss_sum, nll_sum, n = label_smoothed_nll(lprobs, target, cfg.label_smoothing)
        att = loss_sum / n
        stats: dict[str, float] = {"nll_loss": float(nll_sum.detach()) / n}
        with torch.no_grad():
            valid = target != -100
            stats["accuracy"] = float((lprobs.argmax(-1)[valid] == target[valid]).float().mean())
        loss = att
        if self.ctc_proj is not None:
            ctc_lp = F.log_softmax(self.ctc_proj(x).float(), dim=-1)
            frame_lens = (~pad).sum(dim=1)
            with torch.backends.cudnn.flags(enabled=False):
                ctc = F.ctc_loss(ctc_lp.transpose(0, 1), labels[labels >= 0], frame_lens, lens, blank=0,
                                 reduction="sum", zero_infinity=True) / n
            stats["ctc_loss"] = float(ctc.detach())
            loss = (1 - cfg.ctc_weight) * att + cfg.ctc_weight * ctc
        stats["loss"] = float(loss.detach())
        return loss, stats, n

    @torch.no_grad()
    def decode(self, batch: dict[str, Any], beam: int = 5, len_penalty: float = 1.0, max_len_a: float = 1.0,
               max_len_b: int = 0, ctc_weight: float = 0.0, nbest: int = 1) -> list[list[Hypothesis]]:
        """Beam search for every utterance of ``batch``; hypotheses without BOS/EOS."""
        was_training = self.training
        self.eval()
        try:
            x, pad = self.encode(batch)
            B = x.size(0)
            frame_lens = (~pad).sum(dim=1)
            max_lens = [min(int(max_len_a * int(n) + max_len_b), self.config.decoder.max_target_positions - 1)
                        for n in frame_lens.tolist()]
            max_lens = [max(m, 1) for m in max_lens]
            order = torch.arange(B, device=x.device).repeat_interleave(beam)
            x_b, pad_b = x.index_select(0, order), pad.index_select(0, order)
            cache: dict[str, Any] = {}

            def step(prefixes: Tensor) -> Tensor:
                return F.log_softmax(self.decoder(prefixes, x_b, pad_b, cache=cache)[:, -1], dim=-1)

            def reorder(rows: Tensor) -> None:
                TransformerDecoder.reorder_cache(cache, rows)

            ctc = None
            if ctc_weight > 0:
                if self.ctc_proj is None:
                    raise ValueError("ctc_weight > 0 needs a model trained with a CTC head (model.ctc_weight > 0)")
                lp = F.log_softmax(self.ctc_proj(x_b).float(), dim=-1)
                ctc = CTCPrefixScorer(lp, frame_lens.index_select(0, order), blank=0, eos=self.config.eos)
            return beam_search(step, reorder, B, beam, self.config.eos, self.config.eos, max_lens, len_penalty,
                               ctc=ctc, ctc_weight=ctc_weight, device=x.device, nbest=nbest)
        finally:
            self.train(was_training)


def override_encoder(where: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``where`` with the AV encoder's transformer settings replaced (fairseq's ``w2v_args`` overrides at
    fine-tuning: dropout, attention_dropout, activation_dropout, layerdrop, mask_prob, mask_length,
    feature_grad_mult (0 freezes the frontends), ...; and the AV model's modality_dropout / audio_dropout, which
    AVSR fine-tuning applies when both streams are given). The new values become part of the fine-tuned model's
    config, so the checkpoint rebuilds with them."""
    import copy

    from speechkit.models.encoder import EncoderConfig

    if where["kind"] != "av":
        raise ValueError("model.encoder_overrides applies to AV encoders (AV-HuBERT) only")
    known = {f.name for f in dataclasses.fields(EncoderConfig)} - {"conv_layers", "extractor_mode", "conv_bias",
                                                                  "embed_dim", "num_layers", "num_heads", "ffn_dim",
                                                                  "layer_norm_first", "pos_conv_kernel",
                                                                  "pos_conv_groups"}
    top = {"modality_dropout", "audio_dropout", "mask_prob_video", "mask_length_video"}  # AVHubertConfig fields
    bad = sorted(set(overrides) - known - top)
    if bad:
        raise ValueError(f"model.encoder_overrides.{bad[0]}: not an encoder setting that fine-tuning may change; "
                         f"expected one of {sorted(known | top)}")
    where = copy.deepcopy(where)
    enc = where["upstream"].setdefault("encoder", {})
    if isinstance(enc, EncoderConfig):
        enc = where["upstream"]["encoder"] = dataclasses.asdict(enc)
    for k, v in overrides.items():
        (where["upstream"] if k in top else enc)[k] = v
    return where


def build_seq2seq_model(vocab_size: int, init: nn.Module, *, from_scratch: bool = False,
                        encoder_overrides: dict[str, Any] | None = None, **head: Any) -> Seq2SeqModel:
    """A :class:`Seq2SeqModel` on the encoder of ``init`` (a pre-trained model: AV-HuBERT or an audio SSL model),
    its weights copied unless ``from_scratch`` (then re-initialised, and nothing is frozen);
    ``encoder_overrides`` changes the encoder's regularisation and masking (:func:`override_encoder`)."""
    where = locate_encoder(init)
    if encoder_overrides:
        where = override_encoder(where, encoder_overrides)
    if from_scratch:
        head = {**head, "freeze_finetune_updates": 0}
    cfg = Seq2SeqConfig(encoder=where, vocab_size=vocab_size, **head)
    fresh = build_encoder(where)
    if not from_scratch:
        fresh.w2v_model.load_state_dict(encoder_module(init, where).state_dict(), strict=True)
    model = Seq2SeqModel(cfg, fresh)
    logger.info("seq2seq model: %s encoder (%s), %d encoder + %d decoder parameters", where["kind"],
                "random" if from_scratch else "pre-trained", sum(p.numel() for p in model.encoder.parameters()),
                sum(p.numel() for p in model.decoder.parameters()))
    return model


def load_seq2seq(path, map_location: str = "cpu") -> tuple[Seq2SeqModel, dict[str, Any]]:
    """A trained seq2seq checkpoint -> (model in eval mode, checkpoint dict)."""
    import pathlib

    from speechkit.models import PretrainedLoadError

    path = pathlib.Path(path)
    if not path.is_file():
        raise PretrainedLoadError(f"{path}: checkpoint file not found")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("model_config", {}).get("arch") != "seq2seq":
        raise PretrainedLoadError(f"{path}: not a seq2seq checkpoint (model_config.arch must be 'seq2seq')")
    model = Seq2SeqModel(Seq2SeqConfig.from_dict(state["model_config"]))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise PretrainedLoadError(f"{path}: weights do not fit the seq2seq model of its model_config: {e}") from e
    return model.eval(), state


# ------------------------------------------------------------------------------------------- fairseq import
FAIRSEQ_DROPPED = ("decoder.embed_positions._float_tensor", "decoder.version")


def fairseq_seq2seq_state(fs_state: dict[str, Tensor], vocab_rows: list[int] | None = None,
                          encoder_map: Any = None) -> dict[str, Tensor]:
    """A fine-tuned fairseq ``av_hubert_seq2seq`` state dict -> this model's keys.

    The decoder maps one to one (fairseq's TransformerDecoder names are ours); the sinusoidal-position
    buffer and version entries are dropped. ``encoder.w2v_model.*`` goes through ``encoder_map`` (the AV-HuBERT
    importer's key table for the bare encoder; identity when None). ``vocab_rows[i]`` = the fairseq dictionary
    row of our token id ``i`` (fairseq numbers <s>, <pad>, </s>, <unk> first, then the sentencepiece pieces;
    our EOS id 0 takes fairseq's </s> row 2): the embedding rows are gathered in that order.
    """
    out: dict[str, Tensor] = {}
    enc: dict[str, Tensor] = {}
    for k, v in fs_state.items():
        if k in FAIRSEQ_DROPPED:
            continue
        if k.startswith("encoder.w2v_model."):
            enc[k[len("encoder.w2v_model."):]] = v
        elif k.startswith("decoder."):
            out[k] = v
        else:
            raise KeyError(f"fairseq seq2seq checkpoint: unexpected key {k!r} (expected encoder.w2v_model.* or "
                           "decoder.*)")
    if encoder_map is not None:
        enc = encoder_map(enc)
    out.update({f"encoder.w2v_model.{k}": v for k, v in enc.items()})
    if vocab_rows is not None:
        idx = torch.tensor(vocab_rows, dtype=torch.long)
        for k in ("decoder.embed_tokens.weight", "decoder.embed_out"):
            if k in out:
                if int(idx.max()) >= out[k].size(0):
                    raise ValueError(f"vocab_rows refers to row {int(idx.max())} but {k} has {out[k].size(0)} rows")
                out[k] = out[k].index_select(0, idx)
    return out
