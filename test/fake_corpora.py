"""Fake corpora in the exact official on-disk layouts, voiced by the synthetic generator.

Tests (and recipe tests) use these to run corpus preparation without the real corpora::

    from fake_corpora import make_tedlium3, make_librilight_finetuning
    ted = make_tedlium3(tmp_path / "ted")          # ted.root = .../TEDLIUM_release-3
    ll = make_librilight_finetuning(tmp_path / "ll")  # ll.root = .../librispeech_finetuning

Each builder returns what a correct preparation must produce (utterance ids -> text, counts
of the deliberately bad lines), computed from the generator's own words, never by calling
the preparation code under test.

TED-LIUM 3: ``TEDLIUM_release-3/<split>/<set>/sph/<talk>.sph`` (NIST SPHERE, 16 kHz PCM_16)
and ``stm/<talk>.stm``. A talk is synthetic utterances of one voice joined with silence.
Its STM has, like the real corpus, ``ignore_time_segment_in_scoring`` lines over the gaps
(one per talk, the leading one) and a ``<o,f0,gender>`` label; it adds noise markers,
``<sil>``, a ``word(2)`` variant and a trailing ``(name)`` token that preparation must
normalise away, and one zero-length segment (end == start) per set.

Libri-light limited resource: ``librispeech_finetuning/1h/{0..5}/{clean,other}/<spk>/
<chapter>/<spk>-<chapter>-<utt:04d>.flac`` + ``<spk>-<chapter>.trans.txt`` and
``9h/{clean,other}/...``; speaker/chapter ids do not collide across folders except one
chapter shared by ``1h/1`` and ``9h`` with different utterances (as a split chapter would be).
"""
from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import soundfile as sf

from speechkit.corpora.synth import make_voices, synthesize

SR = 16000
SENTENCES = (
    "the old man carried a small book",
    "anna found the key under the table",
    "we walked along the river in the morning",
    "the teacher opened the window",
    "my friend sold his boat yesterday",
    "they watched the ships from the bridge",
    "a little bird sang in the garden",
    "the doctor will visit the village tomorrow",
    "peter painted the door green",
    "the children laughed at night",
    "she keeps her coins in a jar",
    "the farmer moved the sheep across the field",
)


def _sentence(i: int) -> str:
    return SENTENCES[i % len(SENTENCES)]


# ------------------------------------------------------------------ TED-LIUM 3

@dataclasses.dataclass
class FakeTedlium:
    root: pathlib.Path  # .../TEDLIUM_release-3
    # (split, set) -> {utt_id: normalised text} that a correct prep keeps (noise="drop")
    expected: dict[tuple[str, str], dict[str, str]]
    talks: dict[tuple[str, str], list[str]]
    num_ignored: dict[tuple[str, str], int]
    num_zero_length: dict[tuple[str, str], int]

    def sph(self, split: str, set_name: str, talk: str) -> pathlib.Path:
        return self.root / split / set_name / "sph" / f"{talk}.sph"

    def stm(self, split: str, set_name: str, talk: str) -> pathlib.Path:
        return self.root / split / set_name / "stm" / f"{talk}.stm"


def _cs(samples: int) -> str:
    """Samples (multiples of 160) -> STM time with two decimals, exact."""
    assert samples % 160 == 0
    return f"{samples // 16000}.{(samples % 16000) // 160:02d}"


def _tid(talk: str, start: int, end: int) -> str:
    return f"{talk}-{start // 160:07d}-{end // 160:07d}"


def make_tedlium3(
    out_dir: str | pathlib.Path,
    talks_per_set: int = 2,
    utts_per_talk: int = 3,
    splits: tuple[str, ...] = ("legacy",),
    sets: tuple[str, ...] = ("train", "dev", "test"),
    seed: int = 0,
) -> FakeTedlium:
    out_dir = pathlib.Path(out_dir)
    root = out_dir / "TEDLIUM_release-3"
    voices = make_voices(talks_per_set * len(sets), seed)
    rng = np.random.default_rng(seed)
    fake = FakeTedlium(root, {}, {}, {}, {})
    k = 0
    for split in splits:
        for si, set_name in enumerate(sets):
            key = (split, set_name)
            fake.expected[key], fake.talks[key] = {}, []
            fake.num_ignored[key] = fake.num_zero_length[key] = 0
            (root / split / set_name / "sph").mkdir(parents=True, exist_ok=True)
            (root / split / set_name / "stm").mkdir(parents=True, exist_ok=True)
            for ti in range(talks_per_set):
                voice = voices[si * talks_per_set + ti]
                talk = f"Speaker{chr(65 + si)}{ti}_20{10 + ti}X"  # TED style: Name_YearX
                gender = "female" if "+f" in voice.name else "male"
                pieces, lines = [], []
                pos = 0
                gap = int(rng.integers(30, 60)) * 160  # leading gap, ignored in scoring
                pieces.append(np.zeros(gap, np.float32))
                lines.append(f"{talk} 1 {talk} {_cs(0)} {_cs(gap)} <o,f0,{gender}> "
                             f"ignore_time_segment_in_scoring")
                fake.num_ignored[key] += 1
                pos = gap
                for ui in range(utts_per_talk):
                    text = _sentence(k)
                    k += 1
                    audio = synthesize(text.upper(), voice, sample_rate=SR).audio
                    audio = np.pad(audio, (0, -len(audio) % 160))  # 10 ms boundaries
                    start, end = pos, pos + len(audio)
                    words = text.split()
                    # decorations the preparation must normalise away
                    if ui == 0:
                        words = ["{NOISE}"] + words
                    if ui == 1:
                        words = words[:2] + ["<sil>"] + words[2:] + [f"{words[-1]}(2)"]
                        words = words[:-2] + words[-1:]  # replace last word by its variant
                    if ui == 2 and set_name == "train":
                        words = words + [f"({talk}-{ui})"]
                    lines.append(f"{talk} 1 {talk} {_cs(start)} {_cs(end)} "
                                 f"<o,f0,{gender}> {' '.join(words)}")
                    fake.expected[key][_tid(talk, start, end)] = text
                    pieces.append(audio.astype(np.float32))
                    gap = int(rng.integers(20, 40)) * 160
                    pieces.append(np.zeros(gap, np.float32))
                    pos = end + gap
                if ti == 0:  # a segment crossing nothing
                    lines.append(f"{talk} 1 {talk} {_cs(pos)} {_cs(pos)} <o,f0,{gender}> "
                                 f"{_sentence(k)}")
                    fake.num_zero_length[key] += 1
                wav = np.concatenate(pieces)
                sf.write(fake.sph(split, set_name, talk), wav, SR, format="NIST",
                         subtype="PCM_16")
                fake.stm(split, set_name, talk).write_text("\n".join(lines) + "\n")
                fake.talks[key].append(talk)
    return fake


# ------------------------------------------------------------------ Libri-light

@dataclasses.dataclass
class FakeLibrilight:
    root: pathlib.Path  # .../librispeech_finetuning
    # folder relative to root ("1h/0/clean", "9h/other", ...) -> {utt_id: text}
    folders: dict[str, dict[str, str]]
    shared_chapter: str  # "<spk>-<chapter>" present in both 1h/1/clean and 9h/clean

    def expected(self, name: str) -> dict[str, str]:
        """utt -> text for train_10min / train_1h / train_10h."""
        prefixes = {"train_10min": ("1h/0/",), "train_1h": ("1h/",),
                    "train_10h": ("1h/", "9h/")}[name]
        out: dict[str, str] = {}
        for folder, utts in self.folders.items():
            if folder.startswith(prefixes):
                out.update(utts)
        return out


def _write_chapter(chapter_dir: pathlib.Path, spk: int, chapter: int, first_utt: int,
                   texts: list[str], voice) -> dict[str, str]:
    chapter_dir.mkdir(parents=True, exist_ok=True)
    utts = {}
    for i, text in enumerate(texts):
        utt = f"{spk}-{chapter}-{first_utt + i:04d}"
        audio = synthesize(text.upper(), voice, sample_rate=SR).audio
        sf.write(chapter_dir / f"{utt}.flac", audio, SR, format="FLAC", subtype="PCM_16")
        utts[utt] = text.upper()
    with open(chapter_dir / f"{spk}-{chapter}.trans.txt", "w") as f:
        for utt, text in sorted(utts.items()):
            f.write(f"{utt} {text}\n")
    return utts


def make_librilight_finetuning(out_dir: str | pathlib.Path, utts_per_folder: int = 1,
                               seed: int = 0) -> FakeLibrilight:
    root = pathlib.Path(out_dir) / "librispeech_finetuning"
    folders = [f"1h/{i}/{kind}" for i in range(6) for kind in ("clean", "other")]
    folders += ["9h/clean", "9h/other"]
    voices = make_voices(len(folders), seed)
    fake = FakeLibrilight(root, {}, "")
    k = 0
    for fi, folder in enumerate(folders):
        spk, chapter = 100 + 7 * fi, 1000 + 13 * fi
        first = 0
        if folder == "9h/clean":  # continue 1h/1/clean's chapter with new utterances
            spk, chapter = 100 + 7 * 2, 1000 + 13 * 2
            first = 50
            fake.shared_chapter = f"{spk}-{chapter}"
        texts = [_sentence(k + i) for i in range(utts_per_folder)]
        k += utts_per_folder
        fake.folders[folder] = _write_chapter(root / folder / str(spk) / str(chapter), spk,
                                              chapter, first, texts, voices[fi])
    return fake
