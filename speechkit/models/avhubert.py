"""AV-HuBERT pre-training: masked prediction of hidden units from lips and audio (Shi et al., 2022).

Batch contract (what the AV pre-training dataset's collater yields; `forward(batch)` reads it)::

    audio_feats  (B, T, 104) float32  stacked log-fbank (speechkit.features.av_audio), already layer-normed
                                      per frame, zero at padding. Missing key or None: no audio in this batch
                                      (its features are zero-filled, as AV-HuBERT does for a missing stream).
    video        (B, 1, T, H, W) float32 mouth ROIs after roi_transforms (crop + normalise), H = W = 88 for
                                      the real models (tests use fewer pixels), zero at padding. Missing or
                                      None: no video (zero-filled features). At least one of the two is needed.
    lengths      (B,) int64           valid 25 Hz frames per clip (the same for both streams; T = max(lengths))
    labels       (B, L) int64         k-means units, padded with -100; at `label_rate` Hz: 100 (MFCC frames,
                                      4 per video frame, subsampled x4 here) or 25 (units of a previous AV model)
    label_lens   (B,) int64           valid labels per clip
    utt_ids      list[str]            for error messages

`forward(batch) -> (loss, stats, sample_size)` as HubertPretrainModel (mean loss over predicted frames plus
feature penalty; `stats["loss_sum"]` the summed form). `extract_features(audio_feats, video, lengths, layer)`
returns (hidden states, frame lengths) with no masking or modality dropout. Fine-tuning reuses the body,
`model.avhubert(audio_feats, video, lengths, mask=..., modality_dropout=...) -> AVEncoderOutput` (x, padding
mask, frame lengths), passing None for a stream it does not use (VSR: audio None). A None stream's frontend
is not in the graph, so DDP then needs find_unused_parameters; pre-training batches carry both streams.

Architecture (names as the released fairseq checkpoints, so import is a table; see import_avhubert)::

    audio_feats (B, T, 104) -> feature_extractor_audio.proj: Linear(104, D)              -> (B, T, D)
    video (B, 1, T, 88, 88) -> feature_extractor_video.resnet (LipResNet) -> .proj: Linear(512, D)
    concat (B, T, 2D) -> layer_norm: LayerNorm(2D) -> post_extract_proj: Linear(2D, D) -> dropout_input
    -> transformer encoder (pos conv + pre-LN layers, speechkit.models.transformer) -> final_proj -> cosine
       logits / logit_temp against label_embs_concat

Modality dropout (training only): with probability `modality_dropout` one stream's features are zeroed for
the whole batch, the audio with probability `audio_dropout`, else the video; so batches train AV, video-only
and audio-only. The draw uses torch's global RNG (saved by the trainer), so a resumed run draws the same.

Masking (`masking_type`):
- "feature": spans (encoder.mask_prob / mask_length, 0.8 / 10) of the fused features are replaced by a
  learned D-dim `mask_emb` (HuBERT's masking).
- "input": audio spans (encoder.mask_prob / mask_length) are replaced by a learned 104-dim `mask_emb`;
  video spans (mask_prob_video / mask_length_video, 0.3 / 5) are replaced by a span of the same clip taken
  from elsewhere (not overlapping it): a masked span still looks like real lips, and the model has to notice
  that it does not fit. The loss's masked frames are the union of both.

Labels at `label_rate` Hz are aligned to the 25 Hz frames by HuBERT's rule (label index = floor(frame x
ratio), ratio = label_rate / 25: every 4th MFCC label, or 25 Hz units as they are).

The transformer fields (sizes, dropouts, layerdrop, feature_grad_mult, audio/feature mask prob and length)
come from `encoder` (an EncoderConfig, shared with the audio models); its conv-extractor fields are unused.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config_utils import config_from_dict, config_to_dict
from .conv_extractor import lengths_to_padding_mask
from .dropout import Dropout
from .encoder import EncoderConfig, GradMultiply
from .hubert import align_labels, masked_prediction_loss
from .lip_resnet import LipResNet
from .masking import compute_mask_indices
from .transformer import TransformerEncoder

MASKING_TYPES = ("input", "feature")
MODALITIES = ("audio", "video", "audiovisual")  # input choices of feature extraction and fine-tuning


@dataclass
class AVHubertConfig:
    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(layer_norm_first=True))
    audio_feat_dim: int = 104  # 26 log-mel filters x 4 stacked 100 Hz frames
    resnet_width: float = 1.0  # channel multiplier of the visual frontend (0.125 for tiny CPU models)
    masking_type: str = "input"  # "input" | "feature"
    mask_prob_video: float = 0.3  # input masking of the video stream (spans of the same clip)
    mask_length_video: int = 5
    modality_dropout: float = 0.0  # probability of dropping one stream for a batch
    audio_dropout: float = 0.0  # given a drop: probability that it is the audio
    num_classes: int = 100
    final_dim: int = 256
    logit_temp: float = 0.1
    label_rate: float = 100.0  # labels per second: 100 (MFCC k-means) or 25 (AV-model units)
    frame_rate: float = 25.0  # model frames per second (the video rate)
    max_label_mismatch: int = 2  # tolerated |label frames - model frames|, in model frames
    pred_masked_weight: float = 1.0
    pred_nomask_weight: float = 0.0
    feature_pen_weight: float = 10.0
    arch: str = "avhubert"

    def __post_init__(self) -> None:
        if isinstance(self.encoder, dict):
            self.encoder = config_from_dict(EncoderConfig, self.encoder, "model_config.encoder")
        if self.arch != "avhubert":
            raise ValueError(f"AVHubertConfig.arch must be 'avhubert', got {self.arch!r}")
        if self.masking_type not in MASKING_TYPES:
            raise ValueError(f"masking_type must be one of {MASKING_TYPES}, got {self.masking_type!r}")
        for name in ("modality_dropout", "audio_dropout", "mask_prob_video"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.label_rate <= 0 or self.frame_rate <= 0:
            raise ValueError(f"label_rate and frame_rate must be positive, got {self.label_rate}, {self.frame_rate}")

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AVHubertConfig":
        return config_from_dict(cls, data, "model_config")


@dataclass
class AVEncoderOutput:
    x: Tensor  # (B, T, D) encoder output
    hidden_states: list[Tensor]  # entry i is the input to layer i, the last the output (as SSLEncoder)
    frame_lens: Tensor  # (B,) valid 25 Hz frames
    padding_mask: Tensor | None  # (B, T) True at padding, None when nothing is padded
    mask_indices: Tensor | None  # (B, T) True at masked frames (either stream under input masking)
    features_pen: Tensor  # scalar: mean square of the fused frontend features over valid frames
    dropped: str | None  # "audio" / "video" when modality dropout (or a missing stream) removed one


class AudioFrontend(nn.Module):
    """Stacked filterbanks -> D. (fairseq's SubModel without a ResNet; a sub-encoder is not supported.)"""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, dim)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, F) -> (B, T, D)
        return self.proj(x)


class VideoFrontend(nn.Module):
    def __init__(self, dim: int, width: float) -> None:
        super().__init__()
        self.resnet = LipResNet(width)
        self.proj = nn.Linear(self.resnet.out_dim, dim)

    def forward(self, video: Tensor, lengths: Tensor) -> Tensor:  # (B, 1, T, H, W) -> (B, T, D)
        return self.proj(self.resnet(video, lengths))


def mask_spans(mask: Tensor) -> list[list[tuple[int, int]]]:
    """(B, T) bool -> per row the maximal runs of True as [start, end) pairs."""
    m = mask.cpu().numpy().astype(np.int8)
    edges = np.diff(np.pad(m, ((0, 0), (1, 1))), axis=1)  # +1 where a run starts, -1 one past its end
    out: list[list[tuple[int, int]]] = []
    for row in edges:
        out.append(list(zip(np.flatnonzero(row == 1).tolist(), np.flatnonzero(row == -1).tolist())))
    return out


def span_sources(mask: Tensor, lengths: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """For video input masking: (B, T) frame indices to read each frame from.

    Every masked run [s, e) (length n) reads frames [p, p + n) of the same clip, p drawn uniformly among
    the starts whose span lies inside the clip and does not overlap [s, e); when the run is too long for
    that, among all other starts inside the clip. Unmasked frames read themselves. One torch.rand draw per
    run (from `generator`, or torch's global RNG), then plain arithmetic: this runs every training step.
    """
    b, t = mask.shape
    runs = mask_spans(mask)
    draws = torch.rand(sum(len(r) for r in runs), generator=generator, dtype=torch.float64).tolist()
    src = np.tile(np.arange(t), (b, 1))
    k = 0
    for i, row in enumerate(runs):
        valid = int(lengths[i])
        for s, e in row:
            u, k = draws[k], k + 1
            n = e - s
            last = valid - n  # the last start whose span fits in the clip
            left = max(0, min(last, s - n) + 1)  # starts 0 .. s - n end before the run
            right = max(0, last - e + 1)  # starts e .. last begin after it
            if left + right > 0:
                j = int(u * (left + right))
                p = j if j < left else e + (j - left)
            else:  # the run is too long to avoid: any other start inside the clip
                others = last + 1 - (1 if 0 <= s <= last else 0)
                if others <= 0:  # the run is the whole clip: nothing else to copy
                    continue
                j = int(u * others)
                p = j if j < s else j + 1
            src[i, s:e] = np.arange(p, p + n)
    return torch.from_numpy(src)


class AVHubertEncoder(nn.Module):
    """Frontends + fusion + (masking) + transformer; the body that fine-tuning reuses."""

    def __init__(self, cfg: AVHubertConfig) -> None:
        super().__init__()
        self.cfg = cfg
        enc = cfg.encoder
        d = enc.embed_dim
        self.feature_extractor_audio = AudioFrontend(cfg.audio_feat_dim, d)
        self.feature_extractor_video = VideoFrontend(d, cfg.resnet_width)
        self.layer_norm = nn.LayerNorm(2 * d, eps=enc.layer_norm_eps)
        self.post_extract_proj = nn.Linear(2 * d, d)
        self.dropout_input = Dropout(enc.dropout_input)
        mask_dim = cfg.audio_feat_dim if cfg.masking_type == "input" else d
        self.mask_emb = nn.Parameter(torch.empty(mask_dim).uniform_())
        self.encoder = TransformerEncoder(
            d, enc.num_layers, enc.num_heads, enc.ffn_dim, layer_norm_first=enc.layer_norm_first,
            pos_conv_kernel=enc.pos_conv_kernel, pos_conv_groups=enc.pos_conv_groups, dropout=enc.dropout,
            attention_dropout=enc.attention_dropout, activation_dropout=enc.activation_dropout,
            layerdrop=enc.layerdrop, eps=enc.layer_norm_eps,
        )

    @property
    def num_layers(self) -> int:
        return len(self.encoder.layers)

    def _check_inputs(self, audio: Tensor | None, video: Tensor | None, lengths: Tensor | None,
                      utt_ids: list[str] | None) -> tuple[int, int, Tensor]:
        if audio is None and video is None:
            raise ValueError(f"AV-HuBERT needs audio_feats or video (or both); the batch has neither "
                             f"(utterances {utt_ids})")
        if audio is not None and (audio.dim() != 3 or audio.size(-1) != self.cfg.audio_feat_dim):
            raise ValueError(f"audio_feats must be (B, T, {self.cfg.audio_feat_dim}), got {tuple(audio.shape)}")
        if video is not None and video.dim() != 5:
            raise ValueError(f"video must be (B, 1, T, H, W), got {tuple(video.shape)}")
        ref = audio if audio is not None else video
        assert ref is not None
        b = ref.size(0)
        t = audio.size(1) if audio is not None else video.size(2)  # type: ignore[union-attr]
        if audio is not None and video is not None and (video.size(0) != b or video.size(2) != t):
            raise ValueError(f"audio_feats {tuple(audio.shape)} and video {tuple(video.shape)} disagree in batch "
                             f"size or frames (both are 25 Hz; utterances {utt_ids})")
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.long)
        lengths = lengths.to(ref.device)
        if bool((lengths <= 0).any()) or bool((lengths > t).any()):
            bad = [i for i, n in enumerate(lengths.tolist()) if n <= 0 or n > t]
            who = [utt_ids[i] for i in bad] if utt_ids else bad
            raise ValueError(f"lengths must be in [1, {t}] frames; bad for {who}: {lengths[bad].tolist()}")
        return b, t, lengths

    def _frontend(self, module: nn.Module, *args: Tensor) -> Tensor:
        mult = self.cfg.encoder.feature_grad_mult
        if mult <= 0:
            with torch.no_grad():
                return module(*args)
        feats = module(*args)
        return GradMultiply.apply(feats, mult) if mult != 1.0 else feats

    def forward(self, audio_feats: Tensor | None, video: Tensor | None, lengths: Tensor | None = None,
                mask: bool = False, num_layers: int | None = None, modality_dropout: bool | None = None,
                generator: torch.Generator | None = None, utt_ids: list[str] | None = None) -> AVEncoderOutput:
        """audio_feats (B, T, 104) / video (B, 1, T, H, W), either may be None (zero-filled features);
        lengths (B,) frames. `mask=True` masks by `masking_type`; modality dropout applies in training
        unless `modality_dropout=False`; `num_layers=k` stops after k transformer layers."""
        cfg = self.cfg
        b, t, lengths = self._check_inputs(audio_feats, video, lengths, utt_ids)
        padding_mask = lengths_to_padding_mask(lengths, t)
        pad_cpu = padding_mask.cpu()
        mask_indices: Tensor | None = None
        if mask and cfg.masking_type == "input":
            enc = cfg.encoder
            mask_indices = torch.zeros(b, t, dtype=torch.bool)
            if audio_feats is not None:
                m_a = compute_mask_indices((b, t), pad_cpu, enc.mask_prob, enc.mask_length, enc.mask_min_masks,
                                           enc.mask_require_same, generator)
                audio_feats = torch.where(m_a.to(audio_feats.device)[:, :, None],
                                          self.mask_emb.to(audio_feats.dtype), audio_feats)
                mask_indices |= m_a
            if video is not None:
                m_v = compute_mask_indices((b, t), pad_cpu, cfg.mask_prob_video, cfg.mask_length_video,
                                           enc.mask_min_masks, enc.mask_require_same, generator)
                src = span_sources(m_v, lengths.cpu(), generator).to(video.device)
                frames = video.transpose(1, 2)  # (B, T, 1, H, W)
                frames = frames[torch.arange(b, device=video.device)[:, None], src]
                video = frames.transpose(1, 2)
                mask_indices |= m_v

        d = cfg.encoder.embed_dim
        feats_a = self._frontend(self.feature_extractor_audio, audio_feats) if audio_feats is not None else None
        feats_v = self._frontend(self.feature_extractor_video, video, lengths) if video is not None else None
        dropped = None
        if feats_a is None or feats_v is None:
            dropped = "audio" if feats_a is None else "video"
        use_dropout = self.training if modality_dropout is None else modality_dropout
        if dropped is None and use_dropout and cfg.modality_dropout > 0:
            # two draws every batch (not only on a drop), so the RNG stream does not depend on outcomes
            u, v = torch.rand(2).tolist()
            if u < cfg.modality_dropout:
                dropped = "audio" if v < cfg.audio_dropout else "video"
            # multiplied by 0 rather than replaced, so both frontends stay in the graph (DDP)
            if dropped == "audio":
                feats_a = feats_a * 0  # type: ignore[operator]
            elif dropped == "video":
                feats_v = feats_v * 0  # type: ignore[operator]
        ref = feats_a if feats_a is not None else feats_v
        assert ref is not None
        if feats_a is None:
            feats_a = ref.new_zeros(b, t, d)
        if feats_v is None:
            feats_v = ref.new_zeros(b, t, d)
        feats = torch.cat([feats_a, feats_v], dim=-1)  # (B, T, 2D)
        valid = ~padding_mask
        sq = feats.float().pow(2).mean(dim=2)
        features_pen = (sq * valid).sum() / valid.sum().clamp(min=1)

        x = self.dropout_input(self.post_extract_proj(self.layer_norm(feats)))  # (B, T, D)
        if mask and cfg.masking_type == "feature":
            enc = cfg.encoder
            mask_indices = compute_mask_indices((b, t), pad_cpu, enc.mask_prob, enc.mask_length,
                                                enc.mask_min_masks, enc.mask_require_same, generator)
            x = torch.where(mask_indices.to(x.device)[:, :, None], self.mask_emb.to(x.dtype), x)
        if mask_indices is not None:
            mask_indices = mask_indices.to(x.device) & valid
        pm = padding_mask if bool(padding_mask.any()) else None
        x, hidden_states = self.encoder(x, pm, num_layers)
        return AVEncoderOutput(x=x, hidden_states=hidden_states, frame_lens=lengths, padding_mask=pm,
                               mask_indices=mask_indices, features_pen=features_pen, dropped=dropped)


class AVHubertPretrainModel(nn.Module):
    def __init__(self, cfg: AVHubertConfig) -> None:
        super().__init__()
        self.config = cfg
        self.avhubert = AVHubertEncoder(cfg)
        # one label set: fairseq's untied final projection has exactly this shape
        self.final_proj = nn.Linear(cfg.encoder.embed_dim, cfg.final_dim)
        self.label_embs_concat = nn.Parameter(torch.empty(cfg.num_classes, cfg.final_dim).uniform_())
        self.label_ratio = cfg.label_rate / cfg.frame_rate  # labels per model frame (4 or 1)

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    def model_config(self) -> dict[str, Any]:
        return self.config.to_dict()

    def extract_features(self, audio_feats: Tensor | None, video: Tensor | None, lengths: Tensor | None = None,
                         layer: int | None = None) -> tuple[list[Tensor], Tensor]:
        """Hidden states as SSLEncoder.extract_features (entry k = output of layer k, 1-based), no masking
        and no modality dropout; a None stream is zero-filled (video-only / audio-only features)."""
        out = self.avhubert(audio_feats, video, lengths, mask=False, num_layers=layer, modality_dropout=False)
        return out.hidden_states, out.frame_lens

    def logits(self, x: Tensor) -> Tensor:
        """(N, D) encoder frames -> (N, num_classes) cosine similarities / logit_temp (fp32)."""
        proj = F.normalize(self.final_proj(x).float(), dim=-1, eps=1e-8)
        embs = F.normalize(self.label_embs_concat.float(), dim=-1, eps=1e-8)
        return proj @ embs.t() / self.config.logit_temp

    def forward(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, float], int]:
        """Masked-prediction loss on a batch of the module's contract: (loss, stats, sample_size), `loss` the
        mean over predicted frames with the feature penalty, as HubertPretrainModel."""
        cfg = self.config
        for key in ("lengths", "labels", "label_lens"):
            if key not in batch:
                raise KeyError(f"AV-HuBERT pre-training needs batch[{key!r}]; the batch has {sorted(batch)}")
        utt_ids = batch.get("utt_ids")
        out = self.avhubert(batch.get("audio_feats"), batch.get("video"), batch["lengths"], mask=True,
                            utt_ids=utt_ids)
        labels = align_labels(batch["labels"].to(out.x.device), batch["label_lens"], out.frame_lens,
                              out.x.size(1), self.label_ratio, cfg.max_label_mismatch, utt_ids)
        loss, stats, sample_size = masked_prediction_loss(self.logits, out.x, labels, out.mask_indices,
                                                          out.features_pen, cfg, utt_ids)
        stats.update(drop_audio=float(out.dropped == "audio"), drop_video=float(out.dropped == "video"))
        return loss, stats, sample_size
