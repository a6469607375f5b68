"""Synthetic speakers: an espeak accent + voice variant, with their own pitch, pitch range and rate."""
from __future__ import annotations

import random
from dataclasses import dataclass

# English accents shipped with espeak-ng 1.52 (lang/gmw/en*).
ACCENTS = (
    "en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
    "en-029", "en-us-nyc",
)
# Voice variants (espeak-ng-data/voices/!v): formant and pitch presets, with their gender.
FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5")
MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7")


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker.

    ``name`` is an espeak voice name (``"en-us+f3"``); ``pitch`` and ``range`` are espeak's 0-100
    parameters (50 = the variant's default), ``rate`` is words per minute (espeak's 80-450).
    """

    name: str
    pitch: int = 50
    range: int = 50
    rate: int = 175
    speaker_id: int = 0

    @property
    def accent(self) -> str:
        return self.name.split("+", 1)[0]

    @property
    def variant(self) -> str:
        return self.name.split("+", 1)[1] if "+" in self.name else ""

    @property
    def sex(self) -> str:
        """``"F"`` or ``"M"`` (LibriSpeech's SPEAKERS.TXT column), from the variant."""
        return "F" if self.variant.startswith("f") else "M"


def make_voices(n: int, seed: int = 0) -> list[Voice]:
    """``n`` distinct speakers, deterministic for ``seed``.

    Alternates female and male and cycles through the accents (in a seeded order, so even six
    speakers have six accents); the variant of each sex cycles through its shuffled list, so
    (accent, variant) pairs repeat only beyond 80 speakers (40 F, 40 M), and then with another pitch
    and rate. Speaker ids are distinct integers of 2 to 4 digits, like LibriSpeech's, so sorting by
    id is exercised.
    """
    if n < 1:
        raise ValueError(f"make_voices: expected n >= 1 speakers, got {n}")
    rng = random.Random(f"speechkit-voices-{seed}")
    accents = list(ACCENTS)
    rng.shuffle(accents)
    female, male = list(FEMALE_VARIANTS), list(MALE_VARIANTS)
    rng.shuffle(female)
    rng.shuffle(male)
    ids = rng.sample(range(10, 10000), n)
    voices = []
    for i in range(n):
        k, is_male = divmod(i, 2)
        variants = male if is_male else female
        # Accent and variant advance with different periods (8 and 5 or 7), so the pairs of one sex
        # repeat only after 40 (F) / 56 (M) speakers; men start half-way round the accents so
        # every accent gets both sexes.
        accent = accents[(k + 4 * is_male) % len(accents)]
        variant = variants[k % len(variants)]
        voices.append(Voice(
            name=f"{accent}+{variant}",
            pitch=rng.randint(30, 70),
            range=rng.randint(30, 80),
            rate=rng.randint(145, 195),
            speaker_id=ids[i],
        ))
    return voices
