"""Layer features of an AV-HuBERT checkpoint (the k-means input of later AV iterations), per modality."""
import pathlib

import numpy as np
import pytest
import soundfile as sf
import torch

from speechkit.bin.dump_layer_features import main as dump_main
from speechkit.features.av_audio import av_audio_features
from speechkit.features.roi_transforms import eval_transform
from speechkit.io.ark import read_scp
from speechkit.models import build_model

SR = 16000


def write_av_data(root: pathlib.Path, frames=(10, 14, 7), mismatch: str | None = None) -> pathlib.Path:
    rng = np.random.default_rng(0)
    data = root / "data"
    (root / "media").mkdir(parents=True)
    data.mkdir()
    wav_scp, video_scp, utt2spk = [], [], []
    for i, n in enumerate(frames):
        utt = f"spk{i}-utt{i}"
        seconds = n / 25 * (2.0 if utt == mismatch else 1.0)
        wav = (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32)
        sf.write(root / "media" / f"{utt}.wav", wav, SR)
        np.savez_compressed(root / "media" / f"{utt}.npz", frames=rng.integers(0, 255, (n, 96, 96), dtype=np.uint8))
        wav_scp.append(f"{utt} {root / 'media' / f'{utt}.wav'}")
        video_scp.append(f"{utt} {root / 'media' / f'{utt}.npz'}")
        utt2spk.append(f"{utt} spk{i}")
    spk2utt = [f"{line.split()[1]} {line.split()[0]}" for line in utt2spk]  # one utterance per speaker
    for name, lines in (("wav.scp", wav_scp), ("video.scp", video_scp), ("utt2spk", utt2spk), ("spk2utt", spk2utt)):
        (data / name).write_text("\n".join(lines) + "\n")
    return data


@pytest.fixture(scope="module")
def av_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model({"arch": "avhubert", "preset": "tiny"})
    path = tmp_path_factory.mktemp("ckpt") / "av.pt"
    torch.save({"model": model.state_dict(), "model_config": model.model_config()}, path)
    return path, model.eval()


def test_dump_audiovisual_matches_model_and_modalities_differ(tmp_path, av_checkpoint):
    ckpt, model = av_checkpoint
    data = write_av_data(tmp_path)
    feats = {}
    for mod in ("audiovisual", "video", "audio"):
        out = tmp_path / f"dump_{mod}"
        assert dump_main(["--checkpoint", str(ckpt), "--layer", "1", "--modalities", mod, "--data-dir", str(data),
                          "--out", str(out)]) == 0
        feats[mod] = dict(read_scp(out / "feats.scp"))
        assert (out / "utt2num_frames").read_text().split() == ["spk0-utt0", "10", "spk1-utt1", "14", "spk2-utt2", "7"]
    got = feats["audiovisual"]["spk1-utt1"]
    assert got.shape == (14, 64)
    # each utterance by hand, alone: stacked filterbank fitted to the video, centre-cropped normalised ROIs
    # (spk2-utt2 was padded from 7 to 14 frames in the dump's batch: padding must not change it)
    for utt, n in (("spk1-utt1", 14), ("spk2-utt2", 7)):
        wav, _ = sf.read(tmp_path / "media" / f"{utt}.wav", dtype="float32")
        with np.load(tmp_path / "media" / f"{utt}.npz") as z:
            rois = eval_transform(z["frames"])
        audio = torch.from_numpy(av_audio_features(wav, n))[None]
        video = torch.from_numpy(np.ascontiguousarray(rois))[None, None]
        with torch.no_grad():
            hs, _ = model.extract_features(audio, video, torch.tensor([n]), layer=1)
        np.testing.assert_allclose(feats["audiovisual"][utt], hs[1][0].numpy(), rtol=1e-4, atol=1e-4)
    assert not np.allclose(feats["video"]["spk1-utt1"], got, atol=1e-3)
    assert not np.allclose(feats["audio"]["spk1-utt1"], got, atol=1e-3)


def test_av_mismatch_is_a_counted_skip(tmp_path, av_checkpoint, caplog):
    ckpt, _ = av_checkpoint
    data = write_av_data(tmp_path, mismatch="spk2-utt2")
    out = tmp_path / "dump"
    assert dump_main(["--checkpoint", str(ckpt), "--layer", "2", "--data-dir", str(data), "--out", str(out)]) == 0
    assert sorted(dict(read_scp(out / "feats.scp"))) == ["spk0-utt0", "spk1-utt1"]
    assert "spk2-utt2" in caplog.text and "skipped 1 of 3" in caplog.text


def test_modalities_needs_an_av_checkpoint(tmp_path):
    model = build_model({"arch": "hubert", "preset": "tiny"})
    path = tmp_path / "hubert.pt"
    torch.save({"model": model.state_dict(), "model_config": model.model_config()}, path)
    data = write_av_data(tmp_path)
    with pytest.raises(SystemExit, match="audio-visual"):
        dump_main(["--checkpoint", str(path), "--layer", "1", "--modalities", "video", "--data-dir", str(data),
                   "--out", str(tmp_path / "o")])


def test_rois_are_cropped_to_the_size_the_model_was_trained_on(tmp_path, av_checkpoint):
    """A model trained on 44x44 crops of 48x48 ROIs (the mini AV recipe) gets centre crops of 44, not 88."""
    _, model = av_checkpoint
    ckpt = tmp_path / "av44.pt"
    torch.save({"model": model.state_dict(), "model_config": model.model_config(),
                "train_config": {"model": {"arch": "avhubert", "av_data": {"crop_size": 44}}}}, ckpt)
    data = write_av_data(tmp_path, frames=(6, 5))
    for line in (data / "video.scp").read_text().splitlines():  # 48x48 ROIs
        path = line.split()[1]
        with np.load(path) as z:
            np.savez_compressed(path, frames=z["frames"][:, 24:72, 24:72])
    out = tmp_path / "dump"
    assert dump_main(["--checkpoint", str(ckpt), "--layer", "1", "--modalities", "video", "--data-dir", str(data),
                      "--out", str(out)]) == 0
    with np.load(tmp_path / "media" / "spk1-utt1.npz") as z:
        rois = eval_transform(z["frames"], 44)
    with torch.no_grad():
        hs, _ = model.extract_features(None, torch.from_numpy(np.ascontiguousarray(rois))[None, None],
                                       torch.tensor([5]), layer=1)
    np.testing.assert_allclose(dict(read_scp(out / "feats.scp"))["spk1-utt1"], hs[1][0].numpy(), rtol=1e-4, atol=1e-4)
