"""A minimal ctypes binding to libespeak-ng (as bundled by the ``espeakng-loader`` wheel).

Only what the synthetic corpus needs: synchronous synthesis into memory with phoneme and word
events. Struct layout and constants follow espeak-ng 1.52's ``speak_lib.h``
(``ESPEAK_API_REVISION 12``)::

    typedef struct {
        espeak_EVENT_TYPE type;          // int
        unsigned int unique_identifier;
        int text_position;               // 1-based character offset of the word/phoneme's text
        int length;                      // word length in characters (WORD events)
        int audio_position;              // ms
        int sample;                      // sample index from the start of the message
        void *user_data;
        union { int number; const char *name; char string[8]; } id;   // phoneme mnemonic
    } espeak_EVENT;                      // 40 bytes on LP64

The library keeps global state (voice, parameters, some filter memory) across calls, so callers
that need bit-identical output must make the same calls in the same order in a fresh process
(see ``generate.py``). All calls go through one lock: espeak-ng is not thread-safe.
"""
from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass

import numpy as np

# espeak_AUDIO_OUTPUT / options / flags / parameters / event types (speak_lib.h).
AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_PHONEME_EVENTS = 0x0001
CHARS_UTF8 = 1
POS_CHARACTER = 1
PARAM_RATE, PARAM_VOLUME, PARAM_PITCH, PARAM_RANGE = 1, 2, 3, 4
EVENT_LIST_TERMINATED, EVENT_WORD, EVENT_SENTENCE, EVENT_END = 0, 1, 2, 5
EVENT_MSG_TERMINATED, EVENT_PHONEME, EVENT_SAMPLERATE = 6, 7, 8
EE_OK = 0


class EspeakError(RuntimeError):
    """espeak-ng could not be loaded, initialised, or refused a call (names the call and value)."""


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class Event:
    """One espeak event: ``kind`` is ``"phoneme"`` or ``"word"``; ``sample`` at the native rate."""

    kind: str
    sample: int
    text_position: int  # 1-based character offset into the UTF-8 text
    length: int  # characters (words only)
    phoneme: str  # espeak mnemonic, with stress marks (phonemes only)


@dataclass
class RawSynthesis:
    audio: np.ndarray  # int16 (T,) at ``sample_rate``
    sample_rate: int
    events: list[Event]


class Espeak:
    """The process-wide espeak-ng engine. Use :func:`engine` rather than constructing one."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as e:  # pragma: no cover - it is a pinned runtime dependency
            raise EspeakError("the espeakng-loader package is missing (see requirements.txt)") from e
        lib_path = espeakng_loader.get_library_path()
        data_path = espeakng_loader.get_data_path()
        try:
            self._lib = ctypes.CDLL(lib_path)
        except OSError as e:
            raise EspeakError(f"cannot load libespeak-ng from {lib_path}: {e}") from e
        lib = self._lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
        lib.espeak_Info.restype = ctypes.c_char_p
        # espeak-ng >= 1.51: seeds the generator behind breath noise and flutter, which is
        # otherwise seeded from the clock (voices f2, f3, f5 ... would differ run to run).
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None

        # The path argument is the folder *containing* espeak-ng-data.
        parent = os.path.dirname(os.path.abspath(data_path))
        rate = lib.espeak_Initialize(
            AUDIO_OUTPUT_SYNCHRONOUS, 0, parent.encode(), INITIALIZE_PHONEME_EVENTS
        )
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed (returned {rate}) with data folder {data_path}")
        self.sample_rate = rate
        self.version = (lib.espeak_Info(None) or b"?").decode()
        self._lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        self._events: list[Event] = []
        # Keep a reference to the ctypes callback: if it were garbage-collected, espeak would
        # call freed memory.
        self._callback = _CALLBACK(self._on_audio)
        lib.espeak_SetSynthCallback(self._callback)
        self._voice: str | None = None

    def _on_audio(self, wav, num_samples, events) -> int:  # called by espeak from espeak_Synth
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == EVENT_PHONEME:
                # string[8] is NUL-terminated unless the mnemonic uses all 8 bytes.
                name = bytes(ev.id.string).split(b"\0", 1)[0].decode("utf-8", "replace")
                self._events.append(Event("phoneme", ev.sample, ev.text_position, 0, name))
            elif ev.type == EVENT_WORD:
                self._events.append(Event("word", ev.sample, ev.text_position, ev.length, ""))
            i += 1
        if num_samples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, (num_samples,)).copy())
        return 0  # continue synthesis

    def synth(self, text: str, voice: str, pitch: int, pitch_range: int, rate: int,
              seed: int = 0) -> RawSynthesis:
        """Synthesize ``text`` (UTF-8) with ``voice`` (e.g. ``"en-us+f3"``) into memory.
        ``seed`` seeds espeak's noise generator (breathy voices), for reproducible output."""
        with self._lock:
            self._lib.espeak_ng_SetRandSeed(int(seed))
            if voice != self._voice:
                err = self._lib.espeak_SetVoiceByName(voice.encode())
                if err != EE_OK:
                    raise EspeakError(f"espeak_SetVoiceByName({voice!r}) failed with code {err}; "
                                      "expected a voice such as 'en-us' or 'en-gb-scotland+m5'")
                self._voice = voice
            # Parameters are set on every call so that the output depends only on the arguments.
            for param, value, name in ((PARAM_PITCH, pitch, "pitch"), (PARAM_RANGE, pitch_range, "range"),
                                       (PARAM_RATE, rate, "rate"), (PARAM_VOLUME, 100, "volume")):
                err = self._lib.espeak_SetParameter(param, int(value), 0)
                if err != EE_OK:
                    raise EspeakError(f"espeak_SetParameter({name}={value}) failed with code {err}")
            self._chunks, self._events = [], []
            data = text.encode("utf-8")
            err = self._lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
            if err != EE_OK:
                raise EspeakError(f"espeak_Synth failed with code {err} for text {text!r}")
            audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            events = sorted(self._events, key=lambda e: e.sample)  # stable: keeps event order on ties
            self._chunks, self._events = [], []
        return RawSynthesis(audio=audio.astype(np.int16, copy=False), sample_rate=self.sample_rate,
                            events=events)


_ENGINE: Espeak | None = None
_ENGINE_LOCK = threading.Lock()


def engine() -> Espeak:
    """The process-wide engine, initialised on first use."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = Espeak()
        return _ENGINE
