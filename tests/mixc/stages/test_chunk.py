"""Chunking rules (fine: sentence splits, min/max; coarse: same-speaker merges) and transcript filters."""

from mixc.audio import Utterance, Word
from mixc.ir import CoarseChunks, Filters, FineChunks
from mixc.stages.chunk import Chunk, coarse, fine, limit
from mixc.stages.transcripts import drop_reason, max_ngram_count


def words(text: str, start: float, step: float = 0.4, gap_after: dict[int, float] | None = None) -> tuple[Word, ...]:
    """One word every `step` seconds (each lasting 0.3 s), with extra pauses after given word indices."""
    out, t = [], start
    for i, w in enumerate(text.split()):
        out.append(Word(round(t, 3), round(t + 0.3, 3), w, 0.9))
        t += step + (gap_after or {}).get(i, 0.0)
    return tuple(out)


def utt(text: str, start: float, speaker: str = "S0", **kw) -> Chunk:
    ws = words(text, start, **kw)
    return Chunk(start - 0.1, ws[-1].end + 0.1, speaker, ws)


def test_fine_splits_at_sentence_ends_midway_between_words():
    u = utt("One two three. Four five six? Seven eight nine.", 10.0)
    pieces = fine([u], FineChunks(min=0.5, max=20))
    assert [p.text for p in pieces] == ["One two three.", "Four five six?", "Seven eight nine."]
    assert pieces[0].start == u.start and pieces[-1].end == u.end  # the utterance's own edges
    cut = (u.words[2].end + u.words[3].start) / 2
    assert pieces[0].end == pieces[1].start == round(cut, 3)  # contiguous, cut midway
    assert fine([u], FineChunks(split="none", min=0.5, max=20)) == [u]


def test_fine_joins_short_sentences_and_cuts_long_ones_at_the_widest_pause():
    u = utt("Yes. Right. And then we went to the market in the morning", 0.0, gap_after={7: 1.0})
    pieces = fine([u], FineChunks(min=1.0, max=3.0))
    assert all(p.duration >= 1.0 for p in pieces)
    assert all(p.duration <= 3.0 for p in pieces)
    assert pieces[0].text.startswith("Yes. Right.")  # the short sentences joined what follows
    assert any(p.text.endswith("the") for p in pieces)  # the widest pause (after word 7) became a cut
    assert [w.text for p in pieces for w in p.words] == [w.text for w in u.words]  # nothing lost


def test_limit_keeps_a_single_long_word_whole():
    one = Chunk(0.0, 30.0, "S0", ({"start": 0.0, "end": 30.0, "text": "aaa", "prob": 1.0},))
    assert limit(one, 5.0) == [one]


def test_coarse_merges_consecutive_turns_of_a_speaker_within_gap_and_max():
    a1, a2 = utt("Hello there my friend.", 0.0, "S0"), utt("How are you today?", 2.2, "S0")
    b1 = utt("Fine thanks.", 4.5, "S1")
    a3 = utt("Good to hear.", 6.0, "S0")
    a4 = utt("Much later now.", 20.0, "S0")  # after a long pause
    chunks = coarse([a1, a2, b1, a3, a4], CoarseChunks(max=60, max_gap=2.0))
    assert [c.speaker for c in chunks] == ["S0", "S1", "S0", "S0"]
    assert chunks[0].text == "Hello there my friend. How are you today?"
    assert chunks[0].start == a1.start and chunks[0].end == a2.end
    tight = coarse([a1, a2], CoarseChunks(max=2.0, max_gap=2.0))
    assert len(tight) >= 2 and all(c.duration <= 2.0 for c in tight)


def test_fine_chunks_are_shorter_than_coarse_on_a_conversation():
    turns = [utt(f"Sentence {i} here. Another one now. And a third.", 6.0 * i, f"S{(i // 2) % 2}")
             for i in range(8)]
    f = fine(turns, FineChunks(min=0.5, max=20))
    c = coarse(turns, CoarseChunks(max=60, max_gap=2.0))
    assert sum(p.duration for p in f) / len(f) < sum(p.duration for p in c) / len(c)


def u_of(text: str, duration: float = 3.0, confidence: float = 0.9, language: str = "en") -> Utterance:
    n = max(len(text.split()), 1)
    ws = tuple(Word(i * duration / n, (i + 1) * duration / n, w, confidence) for i, w in enumerate(text.split()))
    return Utterance(0.0, duration, "S0", text, ws, confidence, language)


def test_each_filter_has_its_reason():
    cfg = Filters(min_duration=0.5, max_duration=30, min_confidence=0.5, ngram=3, max_ngram_repeats=2)
    assert drop_reason(u_of("The weather is fine today."), cfg) is None
    assert drop_reason(u_of(" ... "), cfg) == "empty transcript"
    assert drop_reason(u_of("Hi.", duration=0.3), cfg) == "too short"
    assert drop_reason(u_of("A long one.", duration=40), cfg) == "too long"
    assert drop_reason(u_of("Hola.", language="es"), cfg) == "language es"
    assert drop_reason(u_of("Die Hauptstadt des Landes ist eine große Hafenstadt."), cfg) == "language de"
    assert drop_reason(u_of("thank you so " * 5), cfg) == "repeated n-gram loop"
    assert drop_reason(u_of("The weather is fine today.", confidence=0.2), cfg) == "low confidence"
    assert max_ngram_count("a b c a b c a b c", 3) == 3 and max_ngram_count("a b", 3) == 0
