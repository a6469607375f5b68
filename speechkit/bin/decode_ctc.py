"""Decode a data dir with a CTC model (fine-tuned or probe), then score it.

Usage:
    python -m speechkit.bin.decode_ctc --model exp/ft/checkpoint_best.pt --data-dir data/test_clean \\
        --out exp/ft/decode_test_clean [--beam 10] [--lm data/token_char/lm3.json --lm-weight 0.5] [--cer]
    # word-level: lexicon + word n-gram LM (ARPA), a grid of LM weights / word scores tuned on dev ...
    python -m speechkit.bin.decode_ctc --model M --data-dir data/dev --out exp/ft/decode_dev_lm \\
        --lexicon data/lang_word/lexicon.txt --lm data/lang_word/lm3.arpa \\
        --lm-weight 0.5 1 2 --word-score -1 0 1 [--greedy-out exp/ft/decode_dev]
    # ... and applied to test
    python -m speechkit.bin.decode_ctc --model M --data-dir data/test --out exp/ft/decode_test_lm \\
        --lexicon data/lang_word/lexicon.txt --lm data/lang_word/lm3.arpa --tuned-from exp/ft/decode_dev_lm

Batched (length-sorted batches of up to --max-tokens samples) with a progress bar; greedy by default,
CTC prefix beam search with --beam N > 1 (optionally with shallow fusion of a token n-gram LM from
speechkit.bin.train_token_lm).

With --lexicon, decoding is word-level (speechkit.downstream.word_decode: flashlight-text's lexicon
beam search, --beam hypotheses, default 50) with the word n-gram LM --lm (ARPA or KenLM binary, e.g.
from speechkit.bin.train_word_lm or the official LibriSpeech 4-gram; without --lm the lexicon alone
constrains the words). Scores are ``log P_ctc + lm_weight * log10 P_lm + word_score * words``, log10
as KenLM gives it (the convention of fairseq/torchaudio weights). Several --lm-weight / --word-score
values make a grid: the acoustic model runs once, every pair is decoded and scored (WER; needs the
data dir's text), the pairs and their WERs go to ``lm_grid.json`` and the best pair's output to
--out. --tuned-from DIR takes the best pair of DIR/lm_grid.json (tune on dev, apply to test).
--greedy-out DIR also writes the greedy decoding of the same forward pass there (scored the same way). The tokenizer is the one the trainer copied into the model's exp dir
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
    from speechkit.downstream.word_grid import add_word_search_args

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_inference_args(p, "CTC checkpoint (ctc or probe_ctc)")
    p.add_argument("--tokenizer", type=pathlib.Path, default=None,
                   help="tokenizer folder (default: <model dir>/tokenizer)")
    p.add_argument("--beam", type=int, default=None,
                   help="beam size; 1 = greedy (default without --lexicon; 50 with it)")
    add_word_search_args(p, "word-level decoding with this lexicon ('WORD tok tok ...', from "
                         "speechkit.bin.train_word_lm)", "token n-gram LM (json) for shallow fusion; with --lexicon "
                         "a word n-gram LM (ARPA/KenLM)")
    p.add_argument("--greedy-out", type=pathlib.Path, default=None,
                   help="also write (and score) greedy decoding of the same forward pass into this dir")
    p.add_argument("--insertion-bonus", type=float, default=0.0)
    p.add_argument("--dataset", default=None, help="row label in RESULTS.md (default: the name of --out)")
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
    from speechkit.downstream.ctc_decode import CTCDecoder, DecodeConfig, decode_batches
    from speechkit.downstream.tasks import audio_batches, read_info
    from speechkit.downstream.word_grid import weight_grid, word_decode_grid
    from speechkit.log import progress
    from speechkit.text.tokenizer import load_tokenizer

    device = pick_device(args.device)
    model, state = load_model(args.model, device, lambda m: hasattr(m, "log_probs"), "a CTC model")
    tok_dir = args.tokenizer or args.model.parent / "tokenizer"
    tokenizer = load_tokenizer(tok_dir)
    vocab = state["model_config"].get("vocab_size")
    if vocab != tokenizer.vocab_size:
        raise SystemExit(f"{tok_dir}: tokenizer has {tokenizer.vocab_size} tokens but {args.model} was trained "
                         f"with {vocab}")
    grid = weight_grid(args)
    batches, n_batches, ds = audio_batches(args.data_dir, args.max_tokens, device=device)

    def log_prob_batches():
        with torch.inference_mode():
            for batch in progress(batches, desc="forward", total=n_batches, unit="batch"):
                lp, lens = model.log_probs(batch["wav"].to(device), batch["wav_lens"].to(device))
                yield batch["utt_ids"], lp.float().cpu(), lens.cpu()

    t0 = time.perf_counter()
    # Several decodings of one forward pass (a grid, --greedy-out) keep the log-probs in memory
    # (B x T x V floats: small for characters); a single decoding streams them.
    cached = list(log_prob_batches()) if len(grid) > 1 or args.greedy_out is not None else None
    t_forward = time.perf_counter() - t0
    audio_s = float(ds.sizes.sum()) / ds.sample_rate
    info = read_info(args.model)
    ckpt_updates = int(state.get("num_updates", 0))
    # "updates": what the model trained for; the checkpoint's own count too when it is an earlier one (best)
    facts = {"labeled utts": info.get("labeled utts"), "updates": info.get("updates", ckpt_updates),
             "ckpt updates": ckpt_updates if ckpt_updates != info.get("updates", ckpt_updates) else None,
             "peak lr": info.get("peak lr"), "init": _init_name(info.get("init"))}
    text = args.data_dir / "text"
    can_score = not args.no_score and text.is_file()
    if not can_score and not args.no_score:
        logger.info("%s: no reference text, not scoring", args.data_dir)
    if args.greedy_out is not None:
        greedy = decode_batches(iter(cached), CTCDecoder(DecodeConfig(), blank=model.config.blank), tokenizer)
        rc = _finish(args, greedy, args.greedy_out, {**facts, "decode": "greedy"}, can_score)
        if rc:
            return rc
    source = cached if cached is not None else log_prob_batches()

    t1, c1 = time.perf_counter(), time.process_time()
    if args.lexicon is None:
        lm = None
        if args.lm is not None:
            from speechkit.text.ngram_lm import TokenNgramLM

            lm = TokenNgramLM.load(args.lm)
        beam = args.beam or 1
        method = "beam" if beam > 1 or lm is not None else "greedy"
        dcfg = DecodeConfig(method=method, beam_size=beam, lm_weight=grid[0][0], insertion_bonus=args.insertion_bonus)
        hyps = decode_batches(iter(source), CTCDecoder(dcfg, blank=model.config.blank, lm=lm), tokenizer,
                              total=n_batches)
        facts["decode"] = "greedy" if method == "greedy" else f"beam {dcfg.beam_size}"
        if lm is not None:
            facts["lm"] = f"{args.lm.name} x{grid[0][0]:g}"
    else:
        hyps, facts["decode"] = word_decode_grid(args, tokenizer, source, grid, can_score)
    what = "forward %.1f s, search" % t_forward if cached is not None else "forward and search"
    logger.info("decoded %d utterances (%.1f s of audio): %s %.1f s (CPU %.1f s; %s) -> %s", len(hyps), audio_s,
                what, time.perf_counter() - t1, time.process_time() - c1, facts["decode"], args.out / "hyp")
    return _finish(args, hyps, args.out, facts, can_score)


def _finish(args, hyps: dict[str, str], out: pathlib.Path, facts: dict, can_score: bool) -> int:
    from speechkit.downstream.ctc_decode import write_hyp
    from speechkit.text.scoring import score_files, summary_line

    write_hyp(out / "hyp", hyps)
    if not can_score:
        return 0
    utt2spk = args.data_dir / "utt2spk"
    dataset = args.dataset if args.dataset and out == args.out else None
    for result, _ in score_files(args.data_dir / "text", out / "hyp", out, cer=args.cer,
                                 utt2spk=utt2spk if utt2spk.is_file() else None, dataset=dataset,
                                 info={k: v for k, v in facts.items() if v is not None}):
        print(summary_line(result, dataset or out.resolve().name))
    return 0


def _init_name(init: str | None) -> str | None:
    """``exp/hubert_iter2/checkpoint_best.pt`` -> ``hubert_iter2`` (the experiment tag)."""
    if init is None or init == "scratch":
        return init
    p = pathlib.Path(init)
    return p.parent.name or str(p)


if __name__ == "__main__":
    sys.exit(main())
