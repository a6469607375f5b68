"""Evaluate a speaker-ID model (speechkit.bin.train_downstream --task sid) on a data dir: accuracy.

Usage:
    python -m speechkit.bin.eval_sid --model exp/sid/checkpoint_best.pt --data-dir data/test_clean \\
        --out exp/sid/eval_test_clean

The speaker of an utterance is taken as in training (``speaker_key`` in the model's
downstream_info.json: the utterance-id prefix by default, or utt2spk); every test speaker must be
one of the model's training speakers. Writes into --out ``predictions`` (``<utt> <predicted>
<reference>``) and ``result_sid.json`` (accuracy in percent; read by speechkit.bin.make_results), and
prints one summary line.
"""
from __future__ import annotations

import argparse
import logging
import sys

logger = logging.getLogger("speechkit.bin.eval_sid")


def get_parser() -> argparse.ArgumentParser:
    from speechkit.cli import add_inference_args

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_inference_args(p, "speaker-ID checkpoint (train_downstream --task sid)")
    p.add_argument("--speaker-key", default=None, choices=["prefix", "utt2spk"],
                   help="where speakers come from (default: as in training)")
    p.add_argument("--dataset", default=None, help="row label in RESULTS.md (default: name of --data-dir)")
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    from speechkit.log import setup_logging

    setup_logging(args.verbose)
    import numpy as np
    import torch

    from speechkit.cli import load_model, pick_device
    from speechkit.downstream.data import speaker_of
    from speechkit.downstream.metrics import sid_result_record
    from speechkit.downstream.speaker import SpeakerIDModel
    from speechkit.downstream.tasks import audio_batches, read_info
    from speechkit.log import progress
    from speechkit.results import write_result_json

    device = pick_device(args.device)
    model, _ = load_model(args.model, device, lambda m: isinstance(m, SpeakerIDModel), "a speaker-ID model")
    info = read_info(args.model)
    key = args.speaker_key or info.get("speaker_key", "prefix")
    spk_of = speaker_of(args.data_dir, key)
    speakers = model.config.speakers
    index = {s: i for i, s in enumerate(speakers)}
    unknown = sorted({s for s in spk_of.values() if s not in index})
    if unknown:
        raise SystemExit(f"{args.data_dir}: {len(unknown)} speaker(s) unseen in training, e.g. {unknown[:5]}")
    batches, n_batches, _ = audio_batches(args.data_dir, args.max_tokens, device=device)
    utts, preds = [], []
    with torch.inference_mode():
        for batch in progress(batches, desc="sid", total=n_batches, unit="batch"):
            logits = model.logits(batch["wav"].to(device), batch["wav_lens"].to(device))
            preds.extend(logits.argmax(-1).cpu().tolist())
            utts.extend(batch["utt_ids"])
    targets = np.array([index[spk_of[u]] for u in utts])
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "predictions", "w", encoding="utf-8") as f:
        for u, p in sorted(zip(utts, preds)):
            f.write(f"{u} {speakers[p]} {spk_of[u]}\n")
    dataset = args.dataset or args.data_dir.resolve().name
    facts = {k: info[k] for k in ("labeled utts", "updates", "epochs", "speakers") if k in info}
    facts["upstream"] = "frozen" if model.config.freeze_upstream else "fine-tuned"
    record = sid_result_record(np.array(preds), targets, dataset, info=facts)
    write_result_json(args.out / "result_sid.json", record)
    print(f"{dataset}: speaker ID accuracy {record.values['Acc(%)']:.2f} % ({record.counts['correct']} / "
          f"{record.counts['total']}, {len(speakers)} speakers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
