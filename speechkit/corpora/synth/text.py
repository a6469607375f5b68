"""Word lists and a small grammar for the synthetic corpus' sentences.

The vocabulary is closed (:data:`VOCABULARY`, a few hundred words) but the grammar composes
millions of distinct sentences of 2 to ~16 words, so a recogniser has to model words and their
order, and WER on held-out sentences means something. Every word is plain lower-case ASCII; the
transcripts are upper-cased, as LibriSpeech's are.

:class:`GridGrammar` speaks the GRID corpus' fixed six-word commands instead (51 words), the
closed-vocabulary task of small-scale lip reading (the synthetic audio-visual corpus offers it).

The lists were written for this project. Homographs whose pronunciation depends on meaning
(read, live, lead, wind, ...) are left out so that a word always has one pronunciation per accent.
"""
from __future__ import annotations

import hashlib
import random
import string

NAMES = (
    "anna ben clara david emma frank grace henry isabel jack kate leo maria nathan olivia peter "
    "rachel sam thomas victor william lucy oscar martin helen george alice robert susan edward"
).split()

# (singular, plural)
NOUNS = [tuple(p.split("/")) for p in (
    "book/books table/tables window/windows garden/gardens river/rivers mountain/mountains "
    "city/cities village/villages house/houses door/doors letter/letters bottle/bottles "
    "basket/baskets candle/candles chair/chairs horse/horses bird/birds dog/dogs cat/cats "
    "apple/apples cup/cups box/boxes ship/ships train/trains road/roads bridge/bridges tree/trees "
    "flower/flowers stone/stones key/keys lamp/lamps picture/pictures song/songs story/stories "
    "teacher/teachers doctor/doctors farmer/farmers sailor/sailors child/children friend/friends "
    "king/kings queen/queens soldier/soldiers painter/painters student/students market/markets "
    "kitchen/kitchens office/offices school/schools forest/forests field/fields island/islands "
    "castle/castles tower/towers clock/clocks coat/coats hat/hats shoe/shoes ring/rings "
    "coin/coins map/maps boat/boats engine/engines wheel/wheels pencil/pencils blanket/blankets "
    "pillow/pillows mirror/mirrors ladder/ladders bell/bells jar/jars sheep/sheep fish/fish "
    "man/men woman/women mouse/mice"
).split()]

ADJECTIVES = (
    "old young small large little tall quiet bright dark heavy warm cold green red blue yellow "
    "white black brown golden silver wooden broken empty clean dusty strange gentle happy tired "
    "careful famous ancient narrow wide simple lovely distant hidden noisy busy lonely proud "
    "round soft sharp rich poor"
).split()

# Transitive verbs: (base, third person singular, past).
VERBS_T = [tuple(v.split("/")) for v in (
    "carry/carries/carried find/finds/found open/opens/opened paint/paints/painted "
    "watch/watches/watched follow/follows/followed build/builds/built clean/cleans/cleaned "
    "push/pushes/pushed pull/pulls/pulled hold/holds/held bring/brings/brought sell/sells/sold "
    "buy/buys/bought keep/keeps/kept lift/lifts/lifted move/moves/moved fix/fixes/fixed "
    "wash/washes/washed draw/draws/drew throw/throws/threw catch/catches/caught hide/hides/hid "
    "visit/visits/visited remember/remembers/remembered forget/forgets/forgot help/helps/helped "
    "call/calls/called send/sends/sent take/takes/took give/gives/gave see/sees/saw "
    "like/likes/liked need/needs/needed want/wants/wanted choose/chooses/chose"
).split()]

# Intransitive verbs: (base, third person singular, past).
VERBS_I = [tuple(v.split("/")) for v in (
    "sleep/sleeps/slept laugh/laughs/laughed wait/waits/waited smile/smiles/smiled "
    "arrive/arrives/arrived return/returns/returned shout/shouts/shouted sing/sings/sang "
    "dance/dances/danced walk/walks/walked run/runs/ran stay/stays/stayed work/works/worked "
    "travel/travels/travelled listen/listens/listened rest/rests/rested"
).split()]

PREPOSITIONS = "in on under near behind beside across over into through above below along toward from with".split()
ADVERBS = "slowly quickly quietly carefully suddenly happily softly finally again".split()
TIMES = [t.split() for t in (
    "today|yesterday|tomorrow|tonight|in the morning|in the evening|at night|after dinner|"
    "before noon|on monday|on tuesday|on wednesday|on thursday|on friday|on saturday|on sunday|"
    "last week|next year|every day|in winter|in summer"
).split("|")]
NUMBERS = "two three four five six seven eight nine ten eleven twelve twenty".split()
DETERMINERS = "the a this that my your his her our their every".split()
SUBJECT_PRONOUNS = [("he", 3), ("she", 3), ("they", 0), ("we", 0), ("i", 0), ("you", 0)]
OBJECT_PRONOUNS = "him her them us me it".split()
AUXILIARIES = "will can must should could would might".split()
QUESTION_WORDS = "where when why how".split()
CONNECTIVES = "and but because while so".split()
FUNCTION_WORDS = "did does do not never always often please of there was were is are".split()


def _vocabulary() -> frozenset[str]:
    words: set[str] = set(NAMES) | set(ADJECTIVES) | set(PREPOSITIONS) | set(ADVERBS)
    words |= set(NUMBERS) | set(DETERMINERS) | set(OBJECT_PRONOUNS) | set(AUXILIARIES)
    words |= set(QUESTION_WORDS) | set(CONNECTIVES) | set(FUNCTION_WORDS) | {"an"}
    words |= {p for p, _ in SUBJECT_PRONOUNS}
    for group in (NOUNS, VERBS_T, VERBS_I):
        for forms in group:
            words.update(forms)
    for t in TIMES:
        words.update(t)
    return frozenset(words)


VOCABULARY: frozenset[str] = _vocabulary()


class Grammar:
    """Samples sentences (lists of lower-case words) with a caller-owned ``random.Random``."""

    spoken: dict[str, str] = {}  # written word -> text given to espeak-ng, where they differ

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def _p(self, prob: float) -> bool:
        return self.rng.random() < prob

    def _det(self, next_word: str) -> str:
        det = self.rng.choice(DETERMINERS)
        if det == "a" and next_word[0] in "aeiou":
            return "an"
        return det

    def noun_phrase(self, allow_plural: bool = True) -> tuple[list[str], int]:
        """Returns (words, person): person 3 for singular subjects (verb takes -s), else 0."""
        r = self.rng
        kind = r.random()
        if kind < 0.2:
            return [r.choice(NAMES)], 3
        if allow_plural and kind < 0.35:
            words = [r.choice(NUMBERS)]
            if self._p(0.5):
                words.append(r.choice(ADJECTIVES))
            return words + [r.choice(NOUNS)[1]], 0
        if allow_plural and kind < 0.45:
            words = ["the"] + ([r.choice(ADJECTIVES)] if self._p(0.5) else [])
            return words + [r.choice(NOUNS)[1]], 0
        noun = [r.choice(NOUNS)[0]]
        if self._p(0.5):
            noun = [r.choice(ADJECTIVES)] + noun
            if self._p(0.15):
                noun = [r.choice(ADJECTIVES)] + noun
        words = [self._det(noun[0])] + noun
        if self._p(0.12):
            tail, _ = self.noun_phrase(allow_plural=False)
            words += ["of"] + tail
        return words, 3

    def subject(self) -> tuple[list[str], int]:
        if self._p(0.3):
            word, person = self.rng.choice(SUBJECT_PRONOUNS)
            return [word], person
        return self.noun_phrase()

    def obj(self) -> list[str]:
        if self._p(0.15):
            return [self.rng.choice(OBJECT_PRONOUNS)]
        return self.noun_phrase()[0]

    def verb_phrase(self, person: int) -> list[str]:
        r = self.rng
        tense = r.random()  # past, present, or auxiliary + base form
        transitive = self._p(0.65)
        forms = r.choice(VERBS_T if transitive else VERBS_I)
        if tense < 0.75:
            words = [forms[2]] if tense < 0.5 else [forms[1] if person == 3 else forms[0]]
            if self._p(0.15):
                words = [r.choice(("always", "never", "often"))] + words
        else:
            words = [r.choice(AUXILIARIES)] + (["not"] if self._p(0.2) else []) + [forms[0]]
        if transitive:
            words += self.obj()
        if self._p(0.35):
            words += [r.choice(PREPOSITIONS)] + self.noun_phrase()[0]
        if self._p(0.2):
            words.append(r.choice(ADVERBS))
        return words

    def clause(self) -> list[str]:
        subj, person = self.subject()
        words = subj + self.verb_phrase(person)
        if self._p(0.2):
            words += self.rng.choice(TIMES)
        return words

    def sentence(self) -> list[str]:
        r = self.rng
        form = r.random()
        if form < 0.55:
            return self.clause()
        if form < 0.7:
            return self.clause() + [r.choice(CONNECTIVES)] + self.clause()
        if form < 0.8:  # question
            subj, person = self.subject()
            aux = "does" if person == 3 else "do"
            if self._p(0.5):
                aux = "did"
            verb = r.choice(VERBS_T)[0]
            return [r.choice(QUESTION_WORDS), aux] + subj + [verb] + self.obj()
        if form < 0.88:  # request
            return ["please", r.choice(VERBS_T)[0]] + self.obj() + [r.choice(PREPOSITIONS)] + \
                self.noun_phrase()[0]
        if form < 0.94:  # existential
            np_words, person = self.noun_phrase()
            be = r.choice(("was", "is") if person == 3 else ("were", "are"))
            return ["there", be] + np_words + [r.choice(PREPOSITIONS)] + self.noun_phrase()[0]
        # very short: name + intransitive verb (+ adverb)
        words = [r.choice(NAMES), r.choice(VERBS_I)[2]]
        if self._p(0.5):
            words.append(r.choice(ADVERBS))
        return words


# The GRID audio-visual corpus' command grammar (Cooke et al., 2006): six slots, 51 words, e.g.
# "bin blue at f two now". Letters are a-z without w; digits are spelled out.
GRID_SLOTS: tuple[tuple[str, ...], ...] = (
    ("bin", "lay", "place", "set"),
    ("blue", "green", "red", "white"),
    ("at", "by", "in", "with"),
    tuple(c for c in string.ascii_lowercase if c != "w"),
    ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    ("again", "now", "please", "soon"),
)


class GridGrammar:
    """GRID's fixed six-word commands (closed vocabulary: the small-vocabulary lip-reading task)."""

    # Written word -> the text espeak-ng is given: alone, "a" is read as the article (a schwa that espeak
    # folds into the word before it), not as the letter name GRID's speakers say.
    spoken = {"a": "eh"}

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def sentence(self) -> list[str]:
        return [self.rng.choice(slot) for slot in GRID_SLOTS]


GRAMMARS = {"open": Grammar, "grid": GridGrammar}


def text_bucket(text: str, num_buckets: int = 20) -> int:
    """A stable bucket for a sentence: decides which part (train/dev/test) may use it, so the
    parts never share a sentence even though every speaker process samples on its own."""
    digest = hashlib.sha1(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % num_buckets
