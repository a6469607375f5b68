"""Tiny audio-visual data dirs for the AV dataset and seq2seq tests: tone audio (downstream_helpers) and
mouth-ROI clips whose brightness follows the spoken character, stored as .npz (lossless, fast)."""
from __future__ import annotations

import pathlib

import numpy as np
import soundfile as sf

from downstream_helpers import SR, TONE_S, TONES, tone_audio

ROI = 24  # stored ROI side; tests crop 16


def stand_in_audio_features(wav: np.ndarray) -> np.ndarray:
    """wav -> (ceil(N / 640), 104): per-640-sample block log energies of 104 sub-blocks (a simple, real
    function of the audio standing in for the stacked log-fbank of speechkit.features.av_audio)."""
    n = -(-len(wav) // 640)
    x = np.zeros(n * 640, np.float32)
    x[: len(wav)] = wav
    blocks = x.reshape(n, 640)[:, :624].reshape(n, 104, 6)
    feats = np.log(np.mean(blocks ** 2, axis=2) + 1e-6)
    # normalised per frame, as AV-HuBERT's features are
    return ((feats - feats.mean(1, keepdims=True)) / (feats.std(1, keepdims=True) + 1e-5)).astype(np.float32)


def roi_clip(text: str, num_frames: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = rng.integers(90, 110, size=(num_frames, ROI, ROI)).astype(np.float32)
    per = TONE_S * 25
    for i, ch in enumerate(text.replace(" ", "")):
        a, b = int(round((0.05 * 25) + i * per)), int(round((0.05 * 25) + (i + 1) * per))
        level = 40.0 * (1 + list(TONES).index(ch))
        frames[a:b, 8:16, 6:18] += level
    return np.clip(frames, 0, 255).astype(np.uint8)


def make_av_data_dir(root: pathlib.Path, texts: dict[str, tuple[int, str]], *, km_rate: int | None = None,
                     missing_roi: tuple[str, ...] = (), video_frames_delta: dict[str, int] | None = None) -> pathlib.Path:
    """texts: utt -> (speaker, text). Writes wav.scp, video.scp (.npz ROIs), utt2num_frames, utt2num_samples,
    text, utt2spk, spk2utt and, with km_rate, km.test labels at that rate."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "wav").mkdir(exist_ok=True)
    (root / "roi").mkdir(exist_ok=True)
    delta = video_frames_delta or {}
    tables: dict[str, list[str]] = {k: [] for k in ("wav.scp", "video.scp", "utt2num_frames", "utt2num_samples",
                                                   "text", "utt2spk", "km.test")}
    for i, (utt, (spk, words)) in enumerate(sorted(texts.items())):
        x = tone_audio(words, spk, i)
        sf.write(root / "wav" / f"{utt}.flac", x, SR)
        nv = int(round(len(x) / SR * 25)) + delta.get(utt, 0)
        tables["wav.scp"].append(f"{utt} {root / 'wav' / f'{utt}.flac'}")
        tables["utt2num_samples"].append(f"{utt} {len(x)}")
        tables["text"].append(f"{utt} {words}")
        tables["utt2spk"].append(f"{utt} {utt.split('-')[0]}")
        if utt not in missing_roi:
            np.savez_compressed(root / "roi" / f"{utt}.npz", frames=roi_clip(words, nv, i))
            tables["video.scp"].append(f"{utt} {root / 'roi' / f'{utt}.npz'}")
            tables["utt2num_frames"].append(f"{utt} {nv}")
        if km_rate:
            n = nv * km_rate // 25
            tables["km.test"].append(f"{utt} " + " ".join(str((j // 3) % 7) for j in range(n)))
    for name, lines in tables.items():
        if lines:
            (root / name).write_text("\n".join(lines) + "\n")
    spk2utt: dict[str, list[str]] = {}
    for utt in sorted(texts):
        spk2utt.setdefault(utt.split("-")[0], []).append(utt)
    (root / "spk2utt").write_text("".join(f"{s} {' '.join(u)}\n" for s, u in sorted(spk2utt.items())))
    return root


# --------------------------------------------------------------------------- a stand-in AV encoder
import dataclasses  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402


@dataclasses.dataclass
class StandInOut:
    x: torch.Tensor
    padding_mask: torch.Tensor | None
    frame_lens: torch.Tensor


class StandInAVEncoder(nn.Module):
    """A small real AV encoder with AV-HuBERT's encoder call signature: audio Linear(104 -> D), video
    Conv3d + spatial pooling + Linear, a missing stream zero-filled, concat fusion, one pre-LN transformer layer."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.output_dim = dim
        self.audio_proj = nn.Linear(104, dim)
        self.video_conv = nn.Conv3d(1, 8, kernel_size=(3, 3, 3), padding=(1, 1, 1))
        self.video_proj = nn.Linear(8 * 4 * 4, dim)
        self.fuse = nn.Linear(2 * dim, dim)
        from speechkit.downstream.seq2seq_decoder import MultiheadAttention

        self.attn = MultiheadAttention(dim, 2, 0.0)  # one pre-LN self-attention + FFN layer
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))
        self.calls: list[tuple[bool, bool]] = []  # (audio given, video given), for the tests

    def forward(self, audio_feats, video, lengths, mask=False, modality_dropout=None, utt_ids=None) -> StandInOut:
        self.calls.append((audio_feats is not None, video is not None))
        ref = audio_feats if audio_feats is not None else video
        b = ref.size(0)
        t = audio_feats.size(1) if audio_feats is not None else video.size(2)
        d = self.output_dim
        a = self.audio_proj(audio_feats) if audio_feats is not None else ref.new_zeros(b, t, d)
        if video is not None:
            v = torch.relu(self.video_conv(video))  # (B, 8, T, H, W)
            v = nn.functional.adaptive_avg_pool3d(v, (t, 4, 4))  # (B, 8, T, 4, 4)
            v = self.video_proj(v.permute(0, 2, 1, 3, 4).reshape(b, t, -1))
        else:
            v = ref.new_zeros(b, t, d)
        from speechkit.downstream.seq2seq_decoder import sinusoidal_positions

        x = self.fuse(torch.cat([a, v], dim=-1)) + sinusoidal_positions(t, d, 0).to(a.dtype)  # where in time
        pad = torch.arange(t, device=x.device)[None, :] >= lengths.to(x.device)[:, None]
        h = self.ln1(x)
        x = x + self.attn(h, *self.attn.project_kv(h), (~pad)[:, None, None, :])
        x = x + self.ffn(self.ln2(x))
        return StandInOut(x.masked_fill(pad[:, :, None], 0.0), pad, lengths)


@dataclasses.dataclass
class StandInConfig:
    encoder: object = None  # the registry resolves an EncoderConfig here (unused by the stand-in)
    dim: int = 32
    arch: str = "test_av_standin"

    def to_dict(self):
        return {"arch": self.arch, "dim": self.dim}


class StandInAVModel(nn.Module):
    """A 'pre-trained' AV model as the registry sees one: an ``avhubert`` encoder, model_config(),
    extract_features()."""

    def __init__(self, cfg: StandInConfig) -> None:
        super().__init__()
        self.config = cfg
        self.avhubert = StandInAVEncoder(cfg.dim)
        self.final_proj = nn.Linear(cfg.dim, 8)  # a pre-training head the seq2seq model drops

    def model_config(self):
        return self.config.to_dict()

    def extract_features(self, audio_feats, video, lengths=None, layer=None):
        out = self.avhubert(audio_feats, video, lengths)
        return [out.x], out.frame_lens


def register_stand_in() -> None:
    from speechkit.models import register_model

    register_model("test_av_standin", StandInConfig, StandInAVModel, {})


def stand_in_checkpoint(path: pathlib.Path, seed: int = 0, dim: int = 32) -> pathlib.Path:
    register_stand_in()
    torch.manual_seed(seed)
    model = StandInAVModel(StandInConfig(dim=dim))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "model_config": model.model_config(), "num_updates": 0}, path)
    return path
