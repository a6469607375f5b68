"""espeak-ng English phoneme mnemonics -> a compact ARPAbet-style phone set (39 phones + SIL).

espeak marks stress with a leading ``'`` (primary) or ``,`` (secondary) and has accent-specific
variants (``I2``, ``@2``, ``t#``, ``aI2`` ...). For alignments and phone purity what matters is
the phoneme, so variants fold into one symbol, as TIMIT's 61 labels fold into 39: schwa joins AH,
syllabic L joins L, every pause (``_``, ``_:``, ``_!``, ``_|``) becomes ``SIL``. Mnemonics not in the
table (possible for text outside the corpus vocabulary, e.g. foreign words) keep their espeak name
without stress marks, so nothing is silently mislabelled.
"""
from __future__ import annotations

SIL = "SIL"

# Every symbol the corpus' alignments can contain (tests check this).
PHONE_SET: tuple[str, ...] = (
    "AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW",
    "B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R", "S", "SH",
    "T", "TH", "V", "W", "Y", "Z", "ZH", SIL,
)

ESPEAK_TO_PHONE: dict[str, str] = {
    # vowels
    "0": "AA", "A:": "AA", "A@": "AA", "aa": "AE", "a": "AE", "a#": "AH", "A": "AA",
    "@": "AH", "@2": "AH", "@5": "AH", "V": "AH", "VR": "AH", "3": "ER", "3:": "ER", "@r": "ER",
    "E": "EH", "E2": "EH", "e@": "EH", "e": "EH", "I": "IH", "I2": "IH", "I#": "IH", "IR": "IH",
    "i@": "IH", "i@3": "IY", "i": "IY", "i:": "IY", "O": "AO", "O:": "AO", "O2": "AO", "O@": "AO",
    "o@": "AO", "OI": "OY", "U": "UH", "U@": "UH", "u:": "UW", "u": "UW", "eI": "EY", "aI": "AY",
    "aI2": "AY", "aI3": "AY", "aI@": "AY", "aU": "AW", "oU": "OW", "o": "OW", "@U": "OW",
    # consonants
    "@L": "L", "l": "L", "L": "L", "b": "B", "d": "D", "d#": "D", "D": "DH", "f": "F", "g": "G",
    "h": "HH", "dZ": "JH", "k": "K", "x": "K", "m": "M", "n": "N", "N": "NG", "p": "P",
    "r": "R", "r-": "R", "s": "S", "S": "SH", "t": "T", "t#": "T", "t2": "T", "t[": "T", "?": "T",
    "T": "TH", "v": "V", "w": "W", "w#": "W", "W": "W", "j": "Y", "z": "Z", "Z": "ZH", "tS": "CH",
}

# Events that are not a new segment but a modifier of the previous phoneme (palatalisation).
CONTINUATION = frozenset({";"})


def map_phoneme(mnemonic: str) -> str | None:
    """The compact symbol for an espeak mnemonic; ``None`` for a continuation marker."""
    name = mnemonic.lstrip("',%=")
    if name in CONTINUATION:
        return None
    if not name or name.startswith("_"):
        return SIL
    return ESPEAK_TO_PHONE.get(name, name)
