"""AV dataset/collater (25 Hz streams cut together, transforms, bad input) and noise augmentation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from av_helpers import make_av_data_dir, stand_in_audio_features
from speechkit.features.noise import NoiseAugment, NoiseSource, babble_from_data_dir, make_babble, mix_at_snr
from speechkit.io.datadir import DataDirError
from speechkit.io.video import VideoError
from speechkit.train.av_dataset import AVCollater, AVDataset

TEXTS = {"s1-a": (0, "AB"), "s1-b": (0, "ABCD"), "s2-a": (1, "DCA"), "s2-b": (1, "B")}


@pytest.fixture
def av_dir(tmp_path):
    return make_av_data_dir(tmp_path / "av", TEXTS, km_rate=100)


def collate(ds, modalities="audiovisual", **kw):
    col = AVCollater(modalities, stand_in_audio_features, crop_size=16, label_rates=ds.label_rates, **kw)
    return col([ds[i] for i in range(len(ds))]), col


def test_batch_contract_streams_cut_together(av_dir):
    ds = AVDataset(av_dir, ["test"], [100])
    batch, _ = collate(ds, train=False)
    n = torch.tensor([int(x) for x in ds.sizes])
    T = int(n.max())
    assert batch["audio_feats"].shape == (4, T, 104) and batch["video"].shape == (4, 1, T, 16, 16)
    assert torch.equal(batch["lengths"], n)
    assert torch.equal(batch["padding_mask"], torch.arange(T)[None] >= n[:, None])
    assert torch.equal(batch["wav_lens"], n * 640)
    for b in range(4):  # padding is zero in both streams, labels are 4 per frame
        assert batch["audio_feats"][b, n[b]:].abs().sum() == 0 and batch["video"][b, :, n[b]:].abs().sum() == 0
        assert int(batch["label_lens"][b]) == 4 * int(n[b])
    # eval = centre crop, normalised
    clip = ds[0]["video"]
    from speechkit.features.roi_transforms import eval_transform
    assert torch.allclose(batch["video"][0, 0, : n[0]], torch.from_numpy(eval_transform(clip, 16)))


def test_train_transforms_are_seeded_per_epoch_and_crop_both_streams(av_dir):
    ds = AVDataset(av_dir, ["test"], [100])
    items = [ds[i] for i in range(len(ds)) if ds.utt_ids[i] != "s2-b"]  # s2-b is 6 frames long
    col = AVCollater("audiovisual", stand_in_audio_features, crop_size=16, label_rates=[100], train=True,
                     max_frames=8, pad=False, random_crop=True, seed=3)
    col.set_epoch(1)
    a = col(items)
    b = col(items)
    assert all(torch.equal(a[k], b[k]) for k in ("audio_feats", "video", "labels"))  # same (seed, epoch)
    col.set_epoch(2)
    c = col(items)
    assert not torch.equal(a["video"], c["video"])
    assert a["video"].shape[2] == 8 and bool((a["lengths"] == 8).all())  # cropped to the shortest / max
    # the time crop is the same for audio and labels: find the audio crop offset and check the labels
    eval_col = AVCollater("audiovisual", stand_in_audio_features, crop_size=16, label_rates=[100], train=False)
    full = eval_col(items)
    starts = set()
    for i in range(3):
        n = int(full["lengths"][i])
        offs = [s for s in range(n - 8 + 1) if torch.equal(full["audio_feats"][i, s:s + 8], a["audio_feats"][i])]
        assert offs, "audio crop is not a window of the full features"
        s = offs[0]
        starts.add(s)
        assert torch.equal(a["labels"][i, :32], full["labels"][i, 4 * s: 4 * s + 32])
    assert starts != {0}  # random crops, not always the start


def test_modalities_and_missing_stream_errors(av_dir):
    ds_v = AVDataset(av_dir, modalities="video")
    batch, _ = collate(ds_v, "video", train=False)
    assert "audio_feats" not in batch and ds_v[0]["wav"] is None
    ds_a = AVDataset(av_dir, modalities="audio")
    batch, _ = collate(ds_a, "audio", train=False)
    assert "video" not in batch
    # an item without video in an audio-visual batch: an error naming the utterance
    ds = AVDataset(av_dir)
    items = [ds[i] for i in range(2)]
    items[1] = {**items[1], "video": None}
    col = AVCollater("audiovisual", stand_in_audio_features, crop_size=16, train=False)
    with pytest.raises(ValueError, match=f"utterance {items[1]['utt']}: no video"):
        col(items)
    with pytest.raises(ValueError, match="audio_features callable"):
        AVCollater("audio", None)


def test_missing_roi_and_length_mismatch_are_counted_skips_or_errors(tmp_path):
    d = make_av_data_dir(tmp_path / "bad", TEXTS, missing_roi=("s1-b",), video_frames_delta={"s2-a": 3})
    (d / "roi_failed.txt").write_text("s1-b no_face: no face in 12 frames\n")
    ds = AVDataset(d)
    assert ds.utt_ids == ["s1-a", "s2-b"]
    assert ds.skipped == {"no mouth ROI": ["s1-b"], "audio/video length mismatch": ["s2-a"]}
    (d / "utt2roi").write_text("s1-a face\ns2-a face\ns2-b center\n")
    assert AVDataset(d).utt_ids == ["s1-a", "s2-b"]
    ds_c = AVDataset(d, skip_center_rois=True)
    assert ds_c.utt_ids == ["s1-a"] and ds_c.skipped["no face"] == ["s2-b"]
    with pytest.raises(DataDirError, match="s1-b: no mouth ROI: no_face"):
        AVDataset(d, strict=True)
    # audio-only does not need the ROI, but the length rule still holds when both tables are there
    assert AVDataset(d, modalities="audio").utt_ids == ["s1-a", "s1-b", "s2-b"]
    # a mismatch within the tolerance passes (1 frame = 40 ms)
    d2 = make_av_data_dir(tmp_path / "ok", TEXTS, video_frames_delta={"s2-a": 1})
    assert len(AVDataset(d2)) == 4
    # a mismatch only visible in the decoded streams is an error naming the utterance
    (d2 / "utt2num_frames").unlink()
    np.savez_compressed(d2 / "roi" / "s2-a.npz", frames=np.zeros((3, 24, 24), np.uint8))
    ds2 = AVDataset(d2)
    with pytest.raises(VideoError, match="utterance s2-a"):
        ds2[ds2.utt_ids.index("s2-a")]
    (d / "video.scp").unlink()
    with pytest.raises(DataDirError, match="video.scp: not found"):
        AVDataset(d)


def test_targets_are_never_cropped(av_dir):
    ds = AVDataset(av_dir, targets={u: [1, 2] for u in TEXTS})
    batch, _ = collate(ds, train=False, no_crop=True)
    assert batch["labels"].tolist() == [[1, 2]] * 4
    with pytest.raises(ValueError, match="cropped"):
        collate(ds, train=False, no_crop=True, max_frames=5)
    ds = AVDataset(av_dir, targets={"s1-a": [1]})
    assert ds.utt_ids == ["s1-a"] and len(ds.skipped["no target"]) == 3


def test_mix_at_snr_hits_the_snr():
    rng = np.random.default_rng(0)
    s = rng.standard_normal(16000).astype(np.float32)
    n = 0.01 * rng.standard_normal(16000).astype(np.float32)
    for snr in (0.0, -5.0, 10.0):
        y = mix_at_snr(s, n, snr)
        added = y.astype(np.float64) - s
        assert 10 * np.log10(np.mean(s.astype(np.float64) ** 2) / np.mean(added ** 2)) == pytest.approx(snr, abs=1e-3)
    assert np.array_equal(mix_at_snr(np.zeros(10, np.float32), n[:10], 0.0), np.zeros(10))


def test_babble_noise_dir_and_augment_are_seeded(av_dir, tmp_path):
    import soundfile as sf

    clips = babble_from_data_dir(av_dir, num_clips=2, num_speakers=3, seed=0)
    assert len(clips) == 2 and clips[0].dtype == np.float32
    assert np.array_equal(clips[0], babble_from_data_dir(av_dir, num_clips=2, num_speakers=3, seed=0)[0])
    assert np.allclose(make_babble([np.ones(5), 3 * np.ones(7)]), 2 * np.ones(5))
    with pytest.raises(ValueError, match="needs that many"):
        babble_from_data_dir(av_dir, num_speakers=10)
    (tmp_path / "noise" / "sub").mkdir(parents=True)
    sf.write(tmp_path / "noise" / "sub" / "hum.wav", 0.1 * np.sin(np.arange(4000) / 5.0), 16000)
    src = NoiseSource.from_dir(tmp_path / "noise")
    aug = NoiseAugment([src, NoiseSource(clips, name="babble")], prob=1.0, snrs=[0.0, -5.0])
    wav = np.random.default_rng(1).standard_normal(20000).astype(np.float32) * 0.1
    y1, snr1 = aug(wav, np.random.default_rng([7, 3]))
    y2, snr2 = aug(wav, np.random.default_rng([7, 3]))
    assert snr1 in (0.0, -5.0) and snr1 == snr2 and np.array_equal(y1, y2) and not np.array_equal(y1, wav)
    assert aug.__class__(aug.sources, prob=0.0, snrs=[0.0])(wav, np.random.default_rng(0))[1] is None
    with pytest.raises(ValueError, match="no audio files"):
        NoiseSource.from_dir(av_dir / "roi")
    # noisy eval batches: the same noise for the same seed, other noise for another seed
    ds = AVDataset(av_dir, modalities="audio")
    a, _ = collate(ds, "audio", train=False, noise=aug, seed=5)
    b, _ = collate(ds, "audio", train=False, noise=aug, seed=5)
    c, _ = collate(ds, "audio", train=False, noise=aug, seed=6)
    clean, _ = collate(ds, "audio", train=False)
    assert torch.equal(a["audio_feats"], b["audio_feats"]) and not torch.equal(a["audio_feats"], c["audio_feats"])
    assert not torch.equal(a["audio_feats"], clean["audio_feats"])


def test_make_babble_cli_writes_a_noise_folder(av_dir, tmp_path):
    import soundfile as sf

    from speechkit.bin import make_babble

    out = tmp_path / "babble"
    assert make_babble.main(["--data-dir", str(av_dir), "--out", str(out), "--num-clips", "2",
                             "--num-speakers", "3", "--seed", "4"]) == 0
    wav, sr = sf.read(out / "babble_1.wav", dtype="float32")
    assert sr == 16000 and np.array_equal(wav, babble_from_data_dir(av_dir, 2, 3, seed=4)[1])
    assert len(NoiseSource.from_dir(out)) == 2
