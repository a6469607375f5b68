"""VoxCeleb2 preparation (mp4 and aac variants, id lists) and VoxCeleb1 trial conversion."""
import pytest

from speechkit.corpora.voxceleb2 import VoxCelebError, convert_voxceleb1_trials, prepare_voxceleb2, vox_utt_id
from speechkit.io.datadir import DataDir, validate_data_dir

from av_fixtures import synth_av_root, vox_copy  # noqa: F401  (fixtures)


def test_mp4_and_aac_variants(vox_copy, tmp_path):  # noqa: F811
    bad = next((vox_copy / "dev" / "mp4").glob("*/*/*.mp4"))
    bad_rel = bad.relative_to(vox_copy / "dev" / "mp4").with_suffix("")
    bad.write_bytes(b"\x00" * 100)  # corrupt one video
    rep = prepare_voxceleb2(vox_copy, tmp_path / "data", audio_dir=tmp_path / "audio")
    assert rep.source == "mp4" and rep.skipped.counts == {"unreadable": 1}
    dev = DataDir.load(rep.sets["dev"])
    validate_data_dir(rep.sets["dev"])
    assert dev.text is None  # unlabelled
    assert vox_utt_id(str(bad_rel)) not in dev.utt_ids
    for u in dev.utt_ids:
        spk, rest = u.split("-", 1)
        assert dev.utt2spk[u] == spk and spk.startswith("id")
        assert dev.extra["video_src.scp"][u].endswith(".mp4")
    assert "test" in rep.sets

    rep_aac = prepare_voxceleb2(vox_copy, tmp_path / "data_aac", audio_dir=tmp_path / "audio_aac", source="aac")
    dev_aac = DataDir.load(rep_aac.sets["dev"])
    assert rep_aac.source == "aac" and "video_src.scp" not in dev_aac.extra
    assert set(dev_aac.utt_ids) == set(dev.utt_ids) | {vox_utt_id(str(bad_rel))}
    for u in dev.utt_ids:  # the m4a and the mp4 hold the same audio (same length in samples)
        assert dev_aac.utt2num_samples[u] == dev.utt2num_samples[u]


def test_id_list_selection(vox_copy, tmp_path):  # noqa: F811
    clips = sorted((vox_copy / "dev" / "mp4").glob("*/*/*.mp4"))
    rel = [c.relative_to(vox_copy / "dev" / "mp4").with_suffix("").as_posix() for c in clips]
    lst = tmp_path / "vox-en.id"
    lst.write_text(f"dev/mp4/{rel[0]}\n{rel[1]}.wav\n\n" + "".join(
        f"test/mp4/{p.relative_to(vox_copy / 'test' / 'mp4').with_suffix('').as_posix()}\n"
        for p in (vox_copy / "test" / "mp4").glob("*/*/*.mp4")))
    rep = prepare_voxceleb2(vox_copy, tmp_path / "data", audio_dir=tmp_path / "audio", id_list=lst)
    assert DataDir.load(rep.sets["dev"]).utt_ids == sorted(vox_utt_id(r) for r in rel[:2])
    assert rep.num_not_selected == len(rel) - 2


def test_trial_conversion(tmp_path):
    src = tmp_path / "veri_test.txt"
    src.write_text("1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav\n"
                   "0 id10270/x6uYqmx31kE/00001.wav id10300/ize_eiCFEg0/00003.wav\n")
    n = convert_voxceleb1_trials(src, tmp_path / "out" / "trials")
    assert n == 2
    assert (tmp_path / "out" / "trials").read_text().splitlines() == [
        "id10270-x6uYqmx31kE-00001 id10270-8jEAjG6SegY-00008 target",
        "id10270-x6uYqmx31kE-00001 id10300-ize_eiCFEg0-00003 nontarget"]
    src.write_text("1 id10270/x6uYqmx31kE/00001.wav\n")
    with pytest.raises(VoxCelebError, match=r"veri_test\.txt:1"):
        convert_voxceleb1_trials(src, tmp_path / "t2")


def test_missing_layout_is_an_error(tmp_path):
    with pytest.raises(VoxCelebError, match="none of"):
        prepare_voxceleb2(tmp_path, tmp_path / "data")
