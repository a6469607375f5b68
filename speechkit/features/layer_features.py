"""Features from a layer of a trained speechkit model (HuBERT iteration 2's k-means input).

Any checkpoint of the model registry works: pre-training (HuBERT, wav2vec 2.0, ...), imported, or a
downstream model (a fine-tuned CTC model, a probe or speaker-ID model: their encoder).

``LayerFeatures(checkpoint, layer)`` follows speechkit.features' ``FeatureExtractor`` protocol
(``(wav) -> (T, D)``, ``batch(wavs)``, ``dim``, ``frame_rate``), so the generic dumper
(:func:`speechkit.features.dump.dump_job`) writes its ark/scp shards. Frames are the model's
(50 Hz for the stride-320 extractor); ``layer=k`` is the output of transformer layer k
(1-based, fairseq's ``output_layer``), ``layer=0`` the input to the first layer.
"""
from __future__ import annotations

import logging
import os
from typing import Sequence

import numpy as np
import torch

logger = logging.getLogger(__name__)


class LayerFeatures:
    def __init__(self, checkpoint: str | os.PathLike, layer: int, device: str = "cpu",
                 max_batch_samples: int = 16000 * 200, min_fill: float = 0.9):
        from speechkit.models import find_encoder, load_pretrained

        self.device = torch.device(device)
        model = load_pretrained(checkpoint, map_location="cpu")
        enc = find_encoder(model)
        if enc is None:
            raise ValueError(f"{checkpoint}: a {type(model).__name__} holds no SSLEncoder to take layer features from")
        # the model's own extract_features when it has one (the contract), else its encoder's (probe, sid)
        self.model = (model if hasattr(model, "extract_features") else enc).to(self.device).eval()
        if not 0 <= layer <= enc.num_layers:
            raise ValueError(f"{checkpoint}: layer {layer} out of range; the model has {enc.num_layers} layers")
        self.layer = layer
        self.dim = int(enc.cfg.embed_dim)
        sample_rate = getattr(getattr(model, "config", None), "sample_rate", 16000)
        self.frame_rate = sample_rate / enc.feature_extractor.total_stride
        self.max_batch_samples = max_batch_samples
        self.min_fill = min_fill

    @torch.no_grad()
    def batch(self, wavs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Longest-first sub-batches of at most ``max_batch_samples`` padded samples, each holding
        utterances within ``min_fill`` of its longest: padding costs compute (and the masked attention
        path), so a 6 s and a 1 s utterance are not run together."""
        order = sorted(range(len(wavs)), key=lambda i: -len(wavs[i]))
        out: list[np.ndarray | None] = [None] * len(wavs)
        i = 0
        while i < len(order):
            longest = len(wavs[order[i]])
            n = max(1, self.max_batch_samples // max(longest, 1))
            idx = [j for j in order[i : i + n] if len(wavs[j]) >= self.min_fill * longest]
            i += len(idx)
            x = torch.zeros(len(idx), longest)
            lens = torch.tensor([len(wavs[j]) for j in idx], dtype=torch.long)
            for b, j in enumerate(idx):
                x[b, : len(wavs[j])] = torch.from_numpy(np.asarray(wavs[j], dtype=np.float32))
            hidden, frame_lens = self.model.extract_features(x.to(self.device), lens.to(self.device),
                                                             layer=self.layer)
            h = hidden[self.layer].float().cpu()  # (B, T', D)
            for b, j in enumerate(idx):
                out[j] = h[b, : int(frame_lens[b])].numpy().astype(np.float32)
        return out  # type: ignore[return-value]

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        return self.batch([wav])[0]
