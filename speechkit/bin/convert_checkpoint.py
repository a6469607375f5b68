"""Convert model checkpoints between speechkit, HF transformers and fairseq.

Usage:
    # HF folder (config.json + model.safetensors / pytorch_model.bin) -> speechkit checkpoint
    python -m speechkit.bin.convert_checkpoint hf_models/wav2vec2-base exp/w2v2_base/checkpoint_import.pt

    # fairseq / unilm checkpoint (dict with 'model' and 'cfg'/'args') -> speechkit checkpoint
    python -m speechkit.bin.convert_checkpoint hubert_base_ls960.pt exp/hubert_base/checkpoint_import.pt

    # speechkit checkpoint -> HF folder (loads with transformers' from_pretrained(folder))
    python -m speechkit.bin.convert_checkpoint exp/w2v2/checkpoint_best.pt hf_export/w2v2 --to hf

The source format is detected (a folder: HF; a file with 'model_config': speechkit; otherwise fairseq)
unless --from is given. Imported checkpoints load with ``speechkit.models.load_pretrained``, so
dump_layer_features and fine-tuning take them like any pre-trained speechkit checkpoint. Heads the
source lacks are freshly initialised (listed in the log); a CTC output layer of a fine-tuned source is
kept under the checkpoint's "extra" key (ctc_head.weight / ctc_head.bias).

Waveform normalisation (zero mean, unit variance per utterance) is read from the source - a HF folder's
preprocessor_config.json `do_normalize`, a fairseq checkpoint's `task.normalize` - and becomes the
model's `encoder.normalize`, so the converted model normalises its input itself; a model that expects
it is reported with a warning. `--normalize on|off` overrides what the source says (a HF folder without
preprocessor_config.json is otherwise judged by its feat_extract_norm). Exporting with `--to hf` writes
preprocessor_config.json too, and HF's fine-tuning SpecAugment (mask_time_prob 0.05) in config.json.
"""
from __future__ import annotations

import argparse
import logging
import pathlib
import sys

logger = logging.getLogger("speechkit.bin.convert_checkpoint")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="HF model folder, fairseq .pt, or speechkit checkpoint")
    p.add_argument("dst", help="output speechkit checkpoint (.pt) or, with --to hf, output folder")
    p.add_argument("--from", dest="src_format", choices=["auto", "hf", "fairseq", "speechkit"], default="auto")
    p.add_argument("--to", choices=["speechkit", "hf"], default="speechkit")
    p.add_argument("--num-classes", type=int, default=None,
                   help="HuBERT/WavLM head size when the source has no head (default 500)")
    p.add_argument("--final-dim", type=int, default=None, help="HuBERT/WavLM head dimension when the source has none")
    p.add_argument("--normalize", choices=["auto", "on", "off"], default="auto",
                   help="waveform normalisation of the imported model (auto: as the source records it)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="fairseq files with hydra/omegaconf configs: allow unpickling arbitrary objects "
                        "(only for files you trust; needs omegaconf)")
    p.add_argument("--verbose", action="store_true")
    return p


def detect_format(src: pathlib.Path) -> str:
    if src.is_dir():
        return "hf"
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such file or folder")
    import pickle

    import torch

    try:
        state = torch.load(src, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        return "fairseq"  # speechkit checkpoints are plain; fairseq ones pickle their configs
    return "speechkit" if isinstance(state, dict) and "model_config" in state else "fairseq"


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    from speechkit.log import setup_logging

    setup_logging(args.verbose)
    src, dst = pathlib.Path(args.src), pathlib.Path(args.dst)
    fmt = detect_format(src) if args.src_format == "auto" else args.src_format
    if args.to == "hf":
        if fmt != "speechkit":
            raise SystemExit(f"--to hf converts speechkit checkpoints; {src} looks like a {fmt} source "
                             "(convert it to speechkit first)")
        from speechkit.models import load_pretrained
        from speechkit.models.export_hf import export_hf

        model = load_pretrained(src)
        export_hf(model, dst)
        logger.info("wrote HF folder %s (arch %s)", dst, model.config.arch)
        return 0
    if fmt == "speechkit":
        raise SystemExit(f"{src} is already a speechkit checkpoint (use --to hf to export it)")
    normalize = {"auto": None, "on": True, "off": False}[args.normalize]
    if fmt == "hf":
        from speechkit.models.import_hf_models import import_hf

        conv = import_hf(src, num_classes=args.num_classes, final_dim=args.final_dim, normalize=normalize)
    else:
        from speechkit.models.import_fairseq import import_fairseq

        conv = import_fairseq(src, num_classes=args.num_classes, trust_pickle=args.trust_pickle, normalize=normalize)
    conv.save(dst)
    n = sum(p.numel() for p in conv.model.parameters())
    logger.info("wrote %s: arch %s, %d parameters, from %s", dst, conv.model_config["arch"], n, conv.source)
    if conv.initialised:
        logger.info("freshly initialised (not in the source): %s", ", ".join(conv.initialised))
    if conv.extra:
        logger.info("kept outside the model under 'extra': %s", ", ".join(sorted(conv.extra)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
