"""Decode a data dir with a CTC model (fine-tuned or probe), then score it.

Usage:
    python -m speechkit.bin.decode_ctc --model exp/ft/checkpoint_best.pt --data-dir data/test_clean \\
        --out exp/ft/decode_test_clean [--beam 10] [--lm data/token_char/lm3.json --lm-weight 0.5] [--cer]

Batched (length-sorted batches of up to --max-tokens samples) with a progress bar; greedy by default,
CTC prefix beam search with --beam N > 1 (optionally with shallow fusion of a token n-gram LM from
speechkit.bin.train_token_lm). The tokenizer is the one the trainer copied into the model's exp dir
(``tokenizer/``) unless --tokenizer says otherwise. Writes into --out: ``hyp`` (Kaldi text), then,
when the data dir has a ``text``, the scoring files of speechkit.bin.score (result.txt, alignment.txt,
result.json; with --cer also the _cer files). result.json's ``info`` carries the labeled utterances,
the training updates (and the checkpoint's, when it is an earlier one), the initialisation and the
decoding method (shown by make_results).
"""
from __future__ import annotations

import argparse
import logging
import pathlib
import sys
import time

logger = logging.getLogger("speechkit.bin.decode_ctc")


def get_parser() -> argparse.ArgumentParser:
    from speechkit.cli import add_inference_args

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_inference_args(p, "CTC checkpoint (ctc or probe_ctc)")
    p.add_argument("--tokenizer", type=pathlib.Path, default=None,
                   help="tokenizer folder (default: <model dir>/tokenizer)")
    p.add_argument("--beam", type=int, default=1, help="beam size; 1 = greedy (default)")
    p.add_argument("--lm", type=pathlib.Path, default=None, help="token n-gram LM (json) for shallow fusion")
    p.add_argument("--lm-weight", type=float, default=0.0)
    p.add_argument("--insertion-bonus", type=float, default=0.0)
    p.add_argument("--cer", action="store_true", help="also score characters")
    p.add_argument("--no-score", action="store_true", help="only write hyp")
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    from speechkit.log import setup_logging

    setup_logging(args.verbose)
    import torch

    from speechkit.cli import load_model, pick_device
    from speechkit.downstream.ctc_decode import CTCDecoder, DecodeConfig, decode_batches, write_hyp
    from speechkit.downstream.tasks import audio_batches, read_info
    from speechkit.text.tokenizer import load_tokenizer

    device = pick_device(args.device)
    model, state = load_model(args.model, device, lambda m: hasattr(m, "log_probs"), "a CTC model")
    tok_dir = args.tokenizer or args.model.parent / "tokenizer"
    tokenizer = load_tokenizer(tok_dir)
    vocab = state["model_config"].get("vocab_size")
    if vocab != tokenizer.vocab_size:
        raise SystemExit(f"{tok_dir}: tokenizer has {tokenizer.vocab_size} tokens but {args.model} was trained "
                         f"with {vocab}")
    lm = None
    if args.lm is not None:
        from speechkit.text.ngram_lm import TokenNgramLM

        lm = TokenNgramLM.load(args.lm)
    method = "beam" if args.beam > 1 or lm is not None else "greedy"
    dcfg = DecodeConfig(method=method, beam_size=max(args.beam, 1), lm_weight=args.lm_weight,
                        insertion_bonus=args.insertion_bonus)
    decoder = CTCDecoder(dcfg, blank=model.config.blank, lm=lm)

    batches, n_batches, ds = audio_batches(args.data_dir, args.max_tokens)

    def log_prob_batches():
        with torch.inference_mode():
            for batch in batches:
                lp, lens = model.log_probs(batch["wav"].to(device), batch["wav_lens"].to(device))
                yield batch["utt_ids"], lp.cpu(), lens.cpu()

    t0 = time.perf_counter()
    hyps = decode_batches(log_prob_batches(), decoder, tokenizer, total=n_batches)
    elapsed = time.perf_counter() - t0
    audio_s = float(ds.sizes.sum()) / ds.sample_rate
    write_hyp(args.out / "hyp", hyps)
    logger.info("decoded %d utterances (%.1f s of audio) in %.1f s (RTF %.3f, %s) -> %s", len(hyps), audio_s,
                elapsed, elapsed / max(audio_s, 1e-9), method, args.out / "hyp")
    text = args.data_dir / "text"
    if args.no_score:
        return 0
    if not text.is_file():
        logger.info("%s: no reference text, not scoring", args.data_dir)
        return 0
    info = read_info(args.model)
    ckpt_updates = int(state.get("num_updates", 0))
    # "updates": what the model trained for; the checkpoint's own count too when it is an earlier one (best)
    facts = {"labeled utts": info.get("labeled utts"), "updates": info.get("updates", ckpt_updates),
             "ckpt updates": ckpt_updates if ckpt_updates != info.get("updates", ckpt_updates) else None,
             "peak lr": info.get("peak lr"), "init": _init_name(info.get("init")), "decode": "greedy" if method == "greedy" else f"beam {dcfg.beam_size}"}
    if lm is not None:
        facts["lm"] = f"{args.lm.name} x{args.lm_weight:g}"
    from speechkit.text.scoring import score_files, summary_line

    utt2spk = args.data_dir / "utt2spk"
    for result, _ in score_files(text, args.out / "hyp", args.out, cer=args.cer,
                                 utt2spk=utt2spk if utt2spk.is_file() else None,
                                 info={k: v for k, v in facts.items() if v is not None}):
        print(summary_line(result, args.out.resolve().name))
    return 0


def _init_name(init: str | None) -> str | None:
    """``exp/hubert_iter2/checkpoint_best.pt`` -> ``hubert_iter2`` (the experiment tag)."""
    if init is None or init == "scratch":
        return init
    p = pathlib.Path(init)
    return p.parent.name or str(p)


if __name__ == "__main__":
    sys.exit(main())
