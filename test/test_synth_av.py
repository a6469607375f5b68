"""The synthetic audio-visual corpus: visemes, coarticulation, rendering, detectability, layouts."""
import json

import cv2
import numpy as np

from speechkit.corpora.synth import make_voices
from speechkit.corpora.synth.text import GRID_SLOTS, GridGrammar, text_bucket
from speechkit.corpora.synth_av import (SAMPLES_PER_FRAME, VISEMES, FaceRenderer, make_clip, make_face_styles,
                                        make_synth_av_corpus, mouth_trajectory, viseme_targets,
                                        written_word_segments)
from speechkit.features.mouth_roi import RoiConfig, extract_mouth_rois
from speechkit.io.video import probe, read_audio, read_video

from av_fixtures import synth_av_root  # noqa: F401  (fixture)


def test_visemes_and_coarticulation():
    sr = 16000
    phones = [("SIL", 0, 3200), ("M", 3200, 6400), ("AA", 6400, 9600), ("AY", 9600, 12800), ("SIL", 12800, 16000)]
    tgt = viseme_targets(phones, 16000)
    assert tgt.shape == (100, 3)
    assert tgt[30, 0] == VISEMES["M"][0] == 0.0  # bilabial closure
    assert tgt[50, 0] == VISEMES["AA"][0]
    # the diphthong glides from AA to IY: opening falls, width rises across the phone
    assert tgt[61, 0] > tgt[78, 0] and tgt[61, 1] < tgt[78, 1]
    traj = mouth_trajectory(phones, 25, smooth_ms=35.0, sample_rate=sr)
    assert traj.shape == (25, 3)
    # smoothing: no jump bigger than the target step, and the open vowel is anticipated in the /m/
    assert np.abs(np.diff(traj[:, 0])).max() < VISEMES["AA"][0]
    assert traj[9, 0] > 0.02  # last /m/ frame already opening toward AA
    assert traj[12, 0] > 0.8


def test_mouth_sizes_are_not_rounded_to_whole_pixels():
    # Drawn at the frame's resolution, the opening's half-height (1-11 px) took whole-pixel values only:
    # 101 openings from closed to wide drew 16-18 distinct mouths, and visemes a few hundredths apart in
    # opening (T/D/N vs S/Z vs TH) the same one. Drawn supersampled, every step draws its own mouth.
    for style in make_face_styles(3, seed=5):
        r = FaceRenderer(style)
        still = np.array([0.0, 0.0, 0.0, 1.0])
        frames = [r.frame(np.array([op, 0.5, 0.0]), still, np.random.default_rng(0), 0.0, 1.0)
                  for op in np.linspace(0, 1, 101)]
        assert len({f.tobytes() for f in frames}) == 101


def test_clip_lengths_and_mouth_follows_speech():
    voice = make_voices(1, seed=3)[0]
    style = make_face_styles(1, seed=3)[0]
    rng = np.random.default_rng(0)
    clip = make_clip(["please pay the man", "a bird sang"], voice, style, rng)
    assert len(clip.audio) == SAMPLES_PER_FRAME * len(clip.video)
    assert clip.video.shape[1:] == (160, 160, 3)
    assert clip.text.startswith("PLEASE PAY")
    # the pause between the sentences shows in the word timings (> 0.4 s)
    gaps = [b[1] - a[2] for a, b in zip(clip.words, clip.words[1:])]
    assert max(gaps) > 0.4
    assert clip.phones[0][1] == 0 and clip.phones[-1][2] == len(clip.audio)
    assert all(a[2] == b[1] for a, b in zip(clip.phones, clip.phones[1:]))  # contiguous
    # the dark mouth opening in the extracted crops follows the phone-driven opening (lip reading is
    # learnable), and, more loosely, the audio energy
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in clip.video])
    res = extract_mouth_rois(gray, RoiConfig(detect_every=1))
    dark = (res.frames[:, 20:80, 15:81] < 45).mean(axis=(1, 2))
    opening = mouth_trajectory(clip.phones, len(clip.video))[:, 0]
    assert np.corrcoef(dark, opening)[0, 1] > 0.7
    energy = np.log(np.sqrt((clip.audio.reshape(len(clip.video), -1) ** 2).mean(1)) + 1e-4)
    assert np.corrcoef(dark, energy)[0, 1] > 0.2


def test_transcript_keeps_words_espeak_folds_into_a_neighbour():
    """espeak-ng reports no word for some unstressed words (here the article "a" after "at"); the transcript
    is still the sentence, the folded word gets an empty segment where the word before it ends."""
    segs = [("BIN", 10, 20), ("AT", 20, 30), ("ZERO", 30, 40)]
    assert written_word_segments(["bin", "at", "a", "zero"], segs) == [
        ("BIN", 10, 20), ("AT", 20, 30), ("A", 30, 30), ("ZERO", 30, 40)]
    assert written_word_segments(["a", "bin"], [("BIN", 5, 9)])[0] == ("A", 5, 5)
    assert written_word_segments(["bin", "a"], [("BIN", 5, 9)])[1] == ("A", 9, 9)
    # a spoken form stands for its written word ("a" said as the letter name)
    assert written_word_segments(["at", "a"], [("AT", 0, 4), ("EH", 4, 8)], {"a": "eh"})[1] == ("A", 4, 8)
    try:
        written_word_segments(["bin"], [("BLUE", 0, 4)])
        raise AssertionError("an unknown word must be an error")
    except ValueError as e:
        assert "BLUE" in str(e)
    voice, style = make_voices(1, seed=3)[0], make_face_styles(1, seed=3)[0]
    for spoken in (None, GridGrammar.spoken):  # espeak folds "a" here; said as "eh" it is a word of its own
        clip = make_clip(["bin blue at a zero again"], voice, style, np.random.default_rng(0), spoken=spoken)
        assert clip.text == "BIN BLUE AT A ZERO AGAIN"
        assert [w for w, _, _ in clip.words] == clip.text.split()
    a = clip.words[3]
    assert a[2] - a[1] > 0.05  # the letter name has its own stretch of audio


def test_grid_grammar():
    import random

    g = GridGrammar(random.Random(0))
    sentences = [g.sentence() for _ in range(400)]
    assert all(len(s) == 6 and all(w in slot for w, slot in zip(s, GRID_SLOTS)) for s in sentences)
    assert sum(len(slot) for slot in GRID_SLOTS) == 51 and "w" not in GRID_SLOTS[3]
    assert {s[3] for s in sentences} == set(GRID_SLOTS[3])  # every letter is drawn


def test_faces_are_detected_across_speakers():
    voices = make_voices(6, seed=1)
    styles = make_face_styles(6, seed=1)
    rates = []
    for i in range(6):
        clip = make_clip(["the cat sat"], voices[i], styles[i], np.random.default_rng(i))
        gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in clip.video[::3]])
        rates.append(extract_mouth_rois(gray, RoiConfig(detect_every=1, no_face="center")).detection_rate)
    assert np.mean(rates) >= 0.9 and min(rates) >= 0.6, rates


def test_tiny_corpora_layouts(synth_av_root):  # noqa: F811
    lrs3 = synth_av_root / "lrs3"
    for part in ("pretrain", "trainval", "test"):
        mp4s = sorted((lrs3 / part).glob("*/*.mp4"))
        assert mp4s, part
        for m in mp4s:
            assert len(m.parent.name) == 11
            txt = m.with_suffix(".txt").read_text().splitlines()
            assert txt[0].startswith("Text:  ") and txt[1].startswith("Conf:  ") and txt[3] == "WORD START END ASDSCORE"
    assert sorted(p.name for p in (lrs3 / "trainval").glob("*/*.mp4"))[0] == "50001.mp4"
    # no test sentence is in the training text: test speakers say sentences of text bucket 0 only
    for part in ("trainval", "test"):  # one sentence per clip
        texts = [t.read_text().splitlines()[0][len("Text:  "):].lower() for t in (lrs3 / part).glob("*/*.txt")]
        assert {text_bucket(t) == 0 for t in texts} == {part == "test"}
    durations = [probe(m).video_duration for m in (lrs3 / "pretrain").glob("*/*.mp4")]
    assert max(durations) > 15.0  # the clip the pretrain splitting needs
    m = next((lrs3 / "test").glob("*/*.mp4"))
    info = probe(m)
    assert info.fps == 25 and info.audio_rate == 16000 and info.audio_channels == 1
    assert len(read_audio(m)) == SAMPLES_PER_FRAME * len(read_video(m))

    vox = synth_av_root / "voxceleb2"
    mp4 = sorted(p.relative_to(vox / "dev" / "mp4").with_suffix("") for p in (vox / "dev" / "mp4").glob("*/*/*.mp4"))
    m4a = sorted(p.relative_to(vox / "dev" / "aac").with_suffix("") for p in (vox / "dev" / "aac").glob("*/*/*.m4a"))
    assert mp4 and mp4 == m4a
    assert all(p.parts[0].startswith("id") and len(p.parts[0]) == 7 for p in mp4)
    assert (vox / "test" / "mp4").is_dir()
    # cached: a second call does not rewrite (stamp) and returns the same folder
    stamp = json.loads((lrs3 / ".synth_av.json").read_text())
    assert stamp["size"] == "tiny"
    before = (lrs3 / ".synth_av.json").stat().st_mtime_ns
    assert make_synth_av_corpus(synth_av_root, "lrs3", "tiny", seed=0) == lrs3
    assert (lrs3 / ".synth_av.json").stat().st_mtime_ns == before


def test_files_do_not_depend_on_the_number_of_processes(synth_av_root, tmp_path):
    """Each speaker is written in a fresh process (espeak-ng keeps state across calls), so --nj 2 writes
    byte for byte what one process at a time writes, and what this process synthesized before does not
    matter."""
    import hashlib

    from speechkit.corpora.synth import Voice, synthesize

    synthesize("a word first", Voice(name="en-us", pitch=80))  # the calling process's engine now has state
    make_synth_av_corpus(tmp_path, "lrs3", "tiny", seed=0, nj=2)

    def digests(root):
        return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    assert digests(tmp_path / "lrs3") == digests(synth_av_root / "lrs3")
    assert digests(tmp_path / "lrs3_alignments") == digests(synth_av_root / "lrs3_alignments")
