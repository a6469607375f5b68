"""CTC fine-tuning of a pre-trained encoder (or the from-scratch baseline): train_downstream --task ctc.

Usage:
    python -m speechkit.bin.finetune_ctc --config conf/finetune_ctc_tiny.yaml \\
        --init exp/hubert_iter2/checkpoint_best.pt --tokenizer data/token_char \\
        --train-data data/train_ft200 --valid-data data/dev_clean --exp-dir exp/ft_hubert_iter2 [--from-scratch]

Every option of speechkit.bin.train_downstream except --task (see its --help). fairseq's fine-tuning
semantics: linear CTC head, conv extractor frozen, the encoder frozen for the first
model.freeze_finetune_updates updates, time + channel masking while training, tri-stage lr.
"""
from __future__ import annotations

import sys

from speechkit.bin.train_downstream import main as _main


def main(argv: list[str] | None = None) -> int:
    return _main(argv, task="ctc")


if __name__ == "__main__":
    sys.exit(main())
