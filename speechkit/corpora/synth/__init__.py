"""The embedded synthetic speech corpus: English speech from espeak-ng (bundled by the
``espeakng-loader`` wheel) in LibriSpeech's on-disk layout, with frame-level phone alignments.

- :func:`synthesize` -- text + :class:`Voice` -> :class:`Utterance` (audio, phone and word segments).
- :func:`make_voices` -- N distinct speakers (accent, variant, pitch, range, rate).
- :func:`generate_corpus` -- the whole corpus (train-clean-100 / dev-clean / test-clean).
"""
from speechkit.corpora.synth.generate import PARTS, SIZES, SYNTH_VERSION, generate_corpus
from speechkit.corpora.synth.phones import PHONE_SET, SIL
from speechkit.corpora.synth.speak import Utterance, frame_labels, normalize_text, synthesize
from speechkit.corpora.synth.text import VOCABULARY
from speechkit.corpora.synth.voices import Voice, make_voices

__all__ = [
    "PARTS", "PHONE_SET", "SIL", "SIZES", "SYNTH_VERSION", "VOCABULARY", "Utterance", "Voice",
    "frame_labels", "generate_corpus", "make_voices", "normalize_text", "synthesize",
]
