"""The synthetic LRS3 writes phone alignments beside the corpus under the ids the LRS3 prep gives the clips."""
from __future__ import annotations

from av_fixtures import synth_av_root  # noqa: F401  (fixture)
from speechkit.cluster.quality import read_alignments
from speechkit.corpora.lrs3 import prepare_lrs3
from speechkit.io.datadir import DataDir


def test_alignments_match_prepared_utterances(synth_av_root, tmp_path):  # noqa: F811
    assert not (synth_av_root / "lrs3" / "alignments").exists()  # the corpus keeps the official layout
    rep = prepare_lrs3(synth_av_root / "lrs3", tmp_path / "data", audio_dir=tmp_path / "audio", num_valid=1)
    for part in ("trainval", "test"):
        ali = read_alignments(synth_av_root / "lrs3_alignments" / f"{part}.phones")
        d = DataDir.load(rep.sets[part])
        assert sorted(ali) == d.utt_ids
        for utt in d.utt_ids:  # one phone per 25 ms / 10 ms frame of the clip's audio
            n = d.utt2num_samples[utt]
            assert len(ali[utt]) == 1 + (n - 400) // 160, utt
            assert ali[utt][0] == "SIL" and len(set(ali[utt])) > 3
