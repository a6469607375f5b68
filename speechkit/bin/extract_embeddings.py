"""Utterance embeddings for speaker verification, written as a Kaldi ark/scp.

Usage:
    python -m speechkit.bin.extract_embeddings --model exp/sid/checkpoint_best.pt \\
        --data-dir data/test_clean --out exp/sid/embed_test_clean [--kind auto|pooled|embed]
    python -m speechkit.bin.extract_embeddings --model exp/hubert_iter2/checkpoint_best.pt \\
        --data-dir data/test_clean --out exp/hubert_iter2/embed_test_clean [--layer 1]

With a speaker-ID model: the statistics-pooled weighted-sum features (``pooled``) or the embedding
layer's output (``embed``; ``auto`` picks it when the model has one). With any other upstream
checkpoint: mean + standard deviation over time of hidden state --layer (default: the last).
Writes embeddings.ark / embeddings.scp (float32 vectors) into --out; score a trial list with
``python -m speechkit.bin.compute_eer --trials TRIALS --embeddings OUT/embeddings.scp --out DIR``.
"""
from __future__ import annotations

import argparse
import logging
import sys

logger = logging.getLogger("speechkit.bin.extract_embeddings")


def get_parser() -> argparse.ArgumentParser:
    from speechkit.cli import add_inference_args

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_inference_args(p, "speaker-ID or upstream checkpoint")
    p.add_argument("--kind", default="auto", choices=["auto", "pooled", "embed"], help="speaker-ID models")
    p.add_argument("--layer", type=int, default=None, help="hidden state for plain upstreams (default: last)")
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    from speechkit.log import setup_logging

    setup_logging(args.verbose)
    import torch

    from speechkit.cli import load_model, pick_device
    from speechkit.downstream.speaker import SpeakerIDModel, statistics_pooling
    from speechkit.downstream.tasks import audio_batches, upstream_of
    from speechkit.io.ark import ArkWriter
    from speechkit.log import progress

    device = pick_device(args.device)
    model, _ = load_model(args.model, device)
    if isinstance(model, SpeakerIDModel):
        def embed(wav, lens):
            return model.embedding(wav, lens, args.kind)
    else:
        model = upstream_of(model, args.model)

        def embed(wav, lens):
            hs, frame_lens = model.extract_features(wav, lens)
            layer = len(hs) - 1 if args.layer is None else args.layer
            if not 0 <= layer < len(hs):
                raise SystemExit(f"--layer {layer}: the upstream has hidden states 0..{len(hs) - 1}")
            return statistics_pooling(hs[layer], frame_lens)
    batches, n_batches, ds = audio_batches(args.data_dir, args.max_tokens, device=device)
    args.out.mkdir(parents=True, exist_ok=True)
    count = 0
    with torch.inference_mode(), ArkWriter(args.out / "embeddings.ark", args.out / "embeddings.scp") as writer:
        for batch in progress(batches, desc="embed", total=n_batches, unit="batch"):
            emb = embed(batch["wav"].to(device), batch["wav_lens"].to(device)).float().cpu().numpy()
            for utt, vec in zip(batch["utt_ids"], emb):
                writer.write(utt, vec)
                count += 1
    logger.info("wrote %d embeddings of dimension %d to %s", count, emb.shape[1], args.out / "embeddings.scp")
    return 0


if __name__ == "__main__":
    sys.exit(main())
