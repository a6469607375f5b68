"""Decode a data dir with a seq2seq model (beam search, optional joint CTC), on clean or noisy audio; score.

Usage:
    python -m speechkit.bin.decode_seq2seq --model exp/avsr_base/checkpoint_best.pt --data-dir data/test \\
        --out exp/avsr_base/decode_test_babble_snr0 --modalities audiovisual --babble data/train --snr 0 --seed 0
    # lip reading only, the same model
    python -m speechkit.bin.decode_seq2seq --model ... --modalities video --out exp/avsr_base/decode_test_video
    # MUSAN-style noise at -5 dB
    python -m speechkit.bin.decode_seq2seq --model ... --noise-dir /corpora/musan/noise --snr -5 --seed 0 ...
    # word-level decoding of the CTC head: LM weight and word score tuned on valid, applied to test
    python -m speechkit.bin.decode_seq2seq --model M --data-dir data/valid --out exp/vsr/decode_valid_lm \
        --lexicon data/lang_word/lexicon.txt --lm data/lang_word/lm3.arpa --lm-weight 0.5 1 2 --word-score -1 0 1
    python -m speechkit.bin.decode_seq2seq --model M --data-dir data/test --out exp/vsr/decode_test_lm \
        --lexicon data/lang_word/lexicon.txt --lm data/lang_word/lm3.arpa --tuned-from exp/vsr/decode_valid_lm

Beam search with --beam (default 5) and --len-penalty (fairseq's lenpen, default 1.0); at most
``--max-len-a x frames + --max-len-b`` tokens; --ctc-weight w > 0 rescores with the model's CTC head (joint
CTC/attention decoding; the model must have been trained with model.ctc_weight > 0). --lexicon (with --lm, a
word n-gram LM) decodes the CTC head alone at the word level instead, as speechkit.bin.decode_ctc does: a
lexicon-constrained beam search, with --lm-weight / --word-score grids tuned on one set (lm_grid.json) and
applied to another with --tuned-from. --modalities picks the
input streams (default: the one the model was fine-tuned with); a stream left out is zero-filled by the
encoder. Noise (--noise-dir folders and/or --babble, babble made from that data dir's speech) is added to
every utterance at --snr dB, drawn from --seed: the same seed gives the same noisy test set. Writes into
--out ``hyp`` (Kaldi text) and ``decode_info.json``, then scores with speechkit.bin.score when the data dir
has a ``text``.
"""
from __future__ import annotations

import argparse
import json
import logging
import pathlib
import sys
import time

logger = logging.getLogger("speechkit.bin.decode_seq2seq")


def get_parser() -> argparse.ArgumentParser:
    from speechkit.downstream.word_grid import add_word_search_args

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, type=pathlib.Path, help="seq2seq checkpoint (speechkit.bin.finetune_av)")
    p.add_argument("--data-dir", required=True, type=pathlib.Path, help="data dir to decode")
    p.add_argument("--out", required=True, type=pathlib.Path, help="decode dir (hyp, result.txt, ...)")
    p.add_argument("--tokenizer", type=pathlib.Path, default=None, help="default: <model dir>/tokenizer")
    p.add_argument("--modalities", choices=["audio", "video", "audiovisual"], default=None,
                   help="input streams (default: the model's)")
    p.add_argument("--beam", type=int, default=None, help="beam size (default 5; with --lexicon 50)")
    p.add_argument("--len-penalty", type=float, default=1.0)
    p.add_argument("--max-len-a", type=float, default=1.0, help="max tokens = a x encoder frames + b")
    p.add_argument("--max-len-b", type=int, default=0)
    p.add_argument("--ctc-weight", type=float, default=0.0, help="joint CTC/attention decoding weight")
    add_word_search_args(p, "word-level decoding of the CTC head with this lexicon (speechkit.bin.train_word_lm) "
                         "instead of the attention beam search", "with --lexicon: a word n-gram LM (ARPA/KenLM)")
    p.add_argument("--noise-dir", action="append", default=[], help="folder of noise audio (repeatable)")
    p.add_argument("--babble", type=pathlib.Path, default=None, metavar="DATA_DIR",
                   help="babble noise made from this data dir's speech")
    p.add_argument("--babble-speakers", type=int, default=30, help="voices per babble clip (the anchor: 30)")
    p.add_argument("--snr", type=float, default=None, help="SNR in dB of the added noise (needs a noise source)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise draws (babble voices, segments)")
    p.add_argument("--audio-features", default=None,
                   help="module:callable for AV audio features (default: the one the model was trained with)")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="per batch: 25 Hz frames for AV models (default 3000), samples for audio models")
    p.add_argument("--cer", action="store_true", help="also score characters")
    p.add_argument("--no-score", action="store_true", help="only write hyp")
    p.add_argument("--allow-missing", action="store_true",
                   help="score utterances the dataset skipped (no mouth ROI, A/V mismatch) as empty output")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    from speechkit.log import progress, setup_logging

    setup_logging(args.verbose)
    if (args.noise_dir or args.babble) and args.snr is None:
        raise SystemExit("--noise-dir/--babble need --snr (dB)")
    if args.snr is not None and not (args.noise_dir or args.babble):
        raise SystemExit("--snr needs a noise source (--noise-dir or --babble)")
    import torch

    from speechkit.downstream.ctc_decode import write_hyp
    from speechkit.downstream.seq2seq import load_seq2seq
    from speechkit.downstream.seq2seq_task import AVDataConfig, build_noise, decode_batches_for, resolve_callable
    from speechkit.downstream.tasks import read_info
    from speechkit.text.tokenizer import load_tokenizer

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, state = load_seq2seq(args.model)
    model.to(device).eval()
    tok_dir = args.tokenizer or args.model.parent / "tokenizer"
    tokenizer = load_tokenizer(tok_dir)
    if tokenizer.vocab_size != model.config.vocab_size:
        raise SystemExit(f"{tok_dir}: tokenizer has {tokenizer.vocab_size} tokens but {args.model} was trained "
                         f"with {model.config.vocab_size}")
    modalities = args.modalities or model.config.modalities
    model.config.modalities = modalities
    noise = build_noise(args.noise_dir, str(args.babble) if args.babble else None, prob=1.0, snrs=[args.snr or 0.0],
                        babble_speakers=args.babble_speakers, seed=args.seed)
    if noise is not None and modalities == "video":
        logger.warning("noise is added to the audio, but --modalities video reads none: this decode is clean")
        noise = None
    av = AVDataConfig(**{k: v for k, v in (state.get("train_config", {}).get("model", {}).get("av_data") or {}).items()})
    feats = resolve_callable(args.audio_features) if args.audio_features else None
    if model.encoder.kind == "av":
        max_tokens = args.max_tokens or 3000
    else:
        max_tokens = args.max_tokens or 16000 * 240
    batches, n_batches, ds = decode_batches_for(model, str(args.data_dir), modalities=modalities,
                                                max_tokens=max_tokens, noise=noise, seed=args.seed, av=av,
                                                audio_features=feats)
    hyps: dict[str, str] = {}
    t0 = time.perf_counter()
    if args.lexicon is not None:
        hyps, how = _lexicon_decode(args, model, tokenizer, batches, n_batches, device)
    else:
        how = f"beam {args.beam or 5} lenpen {args.len_penalty:g}" + (f" ctc {args.ctc_weight:g}"
                                                                      if args.ctc_weight > 0 else "")
        for batch in progress(batches, "decode", total=n_batches, unit="batch"):
            batch = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
            results = model.decode(batch, beam=args.beam or 5, len_penalty=args.len_penalty,
                                   max_len_a=args.max_len_a, max_len_b=args.max_len_b, ctc_weight=args.ctc_weight)
            for utt, nbest in zip(batch["utt_ids"], results):
                hyps[utt] = tokenizer.decode(nbest[0].tokens) if nbest else ""
    elapsed = time.perf_counter() - t0
    write_hyp(args.out / "hyp", hyps)
    noise_desc = "clean" if noise is None else (
        "+".join([*(pathlib.Path(d).name for d in args.noise_dir), *(["babble"] if args.babble else [])])
        + f" {args.snr:g} dB seed {args.seed}")
    facts = {"modalities": modalities, "noise": noise_desc, "decode": how}
    (args.out / "decode_info.json").write_text(json.dumps({**facts, "utterances": len(hyps),
                                                           "seconds": round(elapsed, 2)}, indent=2) + "\n")
    logger.info("decoded %d utterances in %.1f s (%s, %s) -> %s", len(hyps), elapsed, modalities, noise_desc,
                args.out / "hyp")
    text = args.data_dir / "text"
    if args.no_score or not text.is_file():
        if not text.is_file():
            logger.info("%s: no reference text, not scoring", args.data_dir)
        return 0
    info = read_info(args.model)
    facts.update({"labeled utts": info.get("labeled utts"), "updates": info.get("updates", state.get("num_updates"))})
    from speechkit.bin import score

    score_argv = ["--ref", str(text), "--hyp", str(args.out / "hyp"), "--out", str(args.out)]
    if (args.data_dir / "utt2spk").is_file():
        score_argv += ["--utt2spk", str(args.data_dir / "utt2spk")]
    if args.cer:
        score_argv.append("--cer")
    if args.allow_missing:
        score_argv.append("--allow-missing")
    elif getattr(ds, "dropped", None):
        logger.warning("%d utterance(s) of %s were skipped (see above) and have no hypothesis; scoring will fail "
                       "unless --allow-missing counts them as empty output", len(ds.dropped), args.data_dir)
    for k, v in facts.items():
        if v is not None:
            score_argv += ["--info", f"{k}={v}"]
    return score.main(score_argv)


def _lexicon_decode(args, model, tokenizer, batches, n_batches, device) -> tuple[dict[str, str], str]:
    """Word-level decoding of the model's CTC head (lexicon + word LM, speechkit.downstream.word_grid)."""
    import torch
    import torch.nn.functional as F

    from speechkit.downstream.word_grid import weight_grid, word_decode_grid
    from speechkit.log import progress

    if model.ctc_proj is None:
        raise SystemExit(f"{args.model}: --lexicon decodes the CTC head, but this model was trained without one "
                         "(model.ctc_weight = 0)")
    if args.ctc_weight > 0:
        raise SystemExit("--ctc-weight applies to the attention beam search, not to --lexicon decoding")
    grid = weight_grid(args)
    source = []
    with torch.inference_mode():
        for batch in progress(batches, "forward", total=n_batches, unit="batch"):
            batch = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
            x, pad = model.encode(batch)
            lp = F.log_softmax(model.ctc_proj(x).float(), dim=-1)
            source.append((batch["utt_ids"], lp.cpu(), (~pad).sum(dim=1).cpu()))
    can_score = not args.no_score and (args.data_dir / "text").is_file()
    hyps, how = word_decode_grid(args, tokenizer, source, grid, can_score)
    return hyps, "CTC " + how


if __name__ == "__main__":
    sys.exit(main())
