"""LRS3 preparation on a synthetic corpus in the official layout, with damaged inputs mixed in."""
import shutil

import numpy as np
import pytest

from speechkit.corpora.lrs3 import (Lrs3Error, parse_lrs3_txt, prepare_lrs3, read_valid_ids, split_at_word_gaps,
                                    train_unit_model)
from speechkit.io.datadir import DataDir, validate_data_dir
from speechkit.io.video import write_av

from av_fixtures import lrs3_copy, synth_av_root  # noqa: F401  (fixtures)


def test_split_rule():
    words = [("A", 0.1, 0.5), ("B", 0.6, 1.0), ("C", 1.6, 2.0), ("D", 2.1, 2.3), ("E", 3.0, 3.4)]
    assert split_at_word_gaps(words, 10.0) == [(0.0, 10.0, ["A", "B", "C", "D", "E"])]  # short: unsplit
    pieces = split_at_word_gaps(words, 16.0, max_duration=15.0, min_gap=0.4)
    assert [p[2] for p in pieces] == [["A", "B"], ["C", "D"], ["E"]]
    assert pieces[0][0] == 0.0 and pieces[-1][1] == 16.0
    assert pieces[0][1] == pytest.approx(1.3) and pieces[1][1] == pytest.approx(2.65)  # gap midpoints
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))


def test_prepare_lrs3_sets_and_splitting(lrs3_copy, tmp_path):  # noqa: F811
    # damage: a .txt without its .mp4, an .mp4 without audio, a corrupt .mp4
    spk = sorted((lrs3_copy / "trainval").iterdir())[0]
    shutil.copy(next(spk.glob("*.txt")), spk / "59998.txt")
    write_av(spk / "59997.mp4", np.zeros((25, 64, 64), np.uint8))
    shutil.copy(next(spk.glob("*.txt")), spk / "59997.txt")
    (spk / "59996.mp4").write_bytes(b"not a video at all" * 50)
    shutil.copy(next(spk.glob("*.txt")), spk / "59996.txt")

    rep = prepare_lrs3(lrs3_copy, tmp_path / "data", audio_dir=tmp_path / "audio", seed=1)
    assert rep.skipped.counts == {"missing_mp4": 1, "no_audio": 1, "unreadable": 1}
    assert "59998.txt" in (tmp_path / "data" / "lrs3_skipped.txt").read_text()
    for name in ("pretrain", "trainval", "valid", "train_30h", "train_433h", "test"):
        validate_data_dir(tmp_path / "data" / name)
    d = {n: DataDir.load(tmp_path / "data" / n) for n in rep.sets}
    # the long pretrain clip was split into pieces of whole words at long gaps
    assert rep.num_split_clips >= 1
    seg = d["pretrain"].segments
    pieces = [u for u in seg if "_" in u.rsplit("-", 1)[1]]
    assert len(pieces) >= 2
    rec = seg[pieces[0]][0]
    own = sorted((u for u in seg if seg[u][0] == rec), key=lambda u: seg[u][1])
    src = lrs3_copy / "pretrain" / rec.split("-pretrain-")[0] / (rec.split("-pretrain-")[1] + ".txt")
    full = parse_lrs3_txt(src)
    assert " ".join(d["pretrain"].text[u] for u in own) == full.text  # no word lost or repeated
    assert seg[own[0]][1] == 0.0
    assert all(seg[a][2] == seg[b][1] for a, b in zip(own, own[1:]))
    for u in own:
        assert d["pretrain"].utt2num_samples[u] == round(seg[u][2] * 16000) - round(seg[u][1] * 16000)
    # set arithmetic
    tv, va = set(d["trainval"].utt_ids), set(d["valid"].utt_ids)
    assert va and va < tv and set(d["train_30h"].utt_ids) == tv - va
    assert set(d["train_433h"].utt_ids) == set(d["pretrain"].utt_ids) | (tv - va)
    assert all("-test-" in u for u in d["test"].utt_ids)
    # the other sets are unsplit; audio lengths are whole 25 fps frames of the synthetic clips
    assert d["trainval"].segments is None
    assert all(n % 640 == 0 for n in d["trainval"].utt2num_samples.values())
    u = d["test"].utt_ids[0]
    assert d["test"].extra["video_src.scp"][u].endswith(".mp4")
    assert d["test"].text[u] == d["test"].text[u].upper()

    # a user valid list in av_hubert's format picks exactly those clips
    pick = sorted(tv)[:2]
    ids = tmp_path / "lrs3-valid.id"
    ids.write_text("".join(f"trainval/{x.split('-trainval-')[0]}/{x.split('-trainval-')[1]}\n" for x in pick))
    assert read_valid_ids(ids) == set(pick)
    rep2 = prepare_lrs3(lrs3_copy, tmp_path / "data2", audio_dir=tmp_path / "audio", valid_ids=ids)
    assert set(DataDir.load(rep2.sets["valid"]).utt_ids) == set(pick)
    bad = tmp_path / "bad.id"
    bad.write_text("pretrain/x/00001\n")
    with pytest.raises(Lrs3Error, match=r"bad\.id:1"):
        read_valid_ids(bad)

    # unit model: 1000 units are too many for a tiny corpus -> the largest allowed size
    out = train_unit_model([tmp_path / "data" / "train_433h" / "text"], tmp_path / "lang", vocab_size=1000)
    from speechkit.text.tokenizer import load_tokenizer

    tok = load_tokenizer(out)
    assert 10 < tok.vocab_size < 1000
    text = d["test"].text[u]
    assert tok.decode(tok.encode(text)) == text


def test_faceless_clip_is_counted_and_dropped_by_roi_extraction(lrs3_copy, tmp_path):  # noqa: F811
    from speechkit.corpora.synth import make_voices
    from speechkit.corpora.synth_av import lrs3_txt, make_clip, make_face_styles
    from speechkit.features.roi_extract import extract_shard, merge_roi_shards

    spk = sorted((lrs3_copy / "test").iterdir())[0]
    clip = make_clip(["a blank wall"], make_voices(1)[0], make_face_styles(1)[0], np.random.default_rng(0),
                     size=96, face=False)
    write_av(spk / "00077.mp4", clip.video, clip.audio)
    (spk / "00077.txt").write_text(lrs3_txt(clip))
    prepare_lrs3(lrs3_copy, tmp_path / "data", audio_dir=tmp_path / "audio")
    test_dir = tmp_path / "data" / "test"
    n_before = len(DataDir.load(test_dir).utt_ids)
    rep = extract_shard(test_dir, tmp_path / "roi", job=1, num_jobs=1)
    faceless = f"{spk.name}-test-00077"
    assert rep.failed[faceless].startswith("no_face")
    summary = merge_roi_shards(test_dir, tmp_path / "roi", 1)
    assert summary["failed"] == 1 and summary["dropped"] == 1
    assert faceless in (test_dir / "roi_failed.txt").read_text()
    d = DataDir.load(test_dir)
    assert faceless not in d.utt_ids and len(d.utt_ids) == n_before - 1
    for u in d.utt_ids:  # video frames agree with the audio (4 x 100 Hz frames per video frame)
        assert d.utt2num_frames[u] * 640 == d.utt2num_samples[u]
    validate_data_dir(test_dir)


def test_missing_folder_is_an_error(tmp_path):
    (tmp_path / "lrs3" / "pretrain").mkdir(parents=True)
    with pytest.raises(Lrs3Error, match="trainval: no such folder"):
        prepare_lrs3(tmp_path / "lrs3", tmp_path / "data")
