"""Eval sets, compiled with the spec: `eval_items` reads and checks the questions, `eval_encode`
voices the ones without audio and frames each question the way training framed its chunks.

`eval_items` reads jsonl files in one of these layouts (`format`, else told apart by each line's keys):

- `mixc`: {"question": str, "choices": [str, ...], "answer": int (index into choices) | str (the
  answer alone), "audio": path of the spoken question (relative to the jsonl file), "id", "topic"};
- `webquestions`: {"question", "answers": [str, ...], "url"?}: the first answer is gold;
- `triviaqa`: {"question", "answer": {"value": str, "aliases": [...]}, "question_id"?}.

A line that cannot be used is dropped and counted under its reason, and listed with its
file:line in report.md: `not json`, `empty question`, `no answer`, `wrong number of choices`,
`answer out of range`, `missing audio`, `duplicate id`. An item that brings only its answer gets
`choices - 1` distractors drawn from the other items' answers (distinct from the gold one, case
and spacing aside) and its gold position, both seeded by (spec seed, set, item id): built once and
frozen, so the artifact's digest (recorded in plan.json) names the multiple-choice version scored.

Files may also be parquet (the layout Hugging Face copies of the spoken sets ship in), with the
same fields under these names or their aliases (`Question`/`Questions`, `Answer`, `question_audio`,
MMLU's `subject` as the topic); an audio field that is a {"bytes", "path"} struct is saved into the
artifact.

Artifact (`EvalItems`): `items.parquet`, one row per item: `id`, `topic`, `question`, `choices`
(list), `answer` (index), `audio` (an absolute path, `audio/NAME` for embedded audio saved beside
the table, or null), `where` (file:line or file:row).

`eval_encode` (artifact `EvalEncoded`): `items.jsonl`, one framed item a line, and `eval.json`
(kind, counts, the voice). The spoken context is `<audio> codes </audio> <text>` (the question's
audio through the spec's audio tokenizer), the written one `<text> question </text> <text>`, and a
choice is its text with a leading space, as a text chunk that follows another chunk is tokenised in
training (markers as `interleave.markers` sets them; none when it is `none`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mixc import ir
from mixc.lang.workspace import expand
from mixc.stages.base import Context, Stage, StageError, Stats

REASONS = ("not json", "empty question", "no answer", "wrong number of choices", "answer out of range",
           "missing audio", "duplicate id")


@dataclass(frozen=True)
class Item:
    id: str
    topic: str | None
    question: str
    choices: tuple[str, ...]  # empty for an answer-only item until distractors are drawn
    answer: int | str  # index into choices, or the answer text of an answer-only item
    audio: str | None
    where: str


class Unusable(Exception):
    """A line of an eval file that cannot be scored; the message is its drop reason."""


def _text(value: Any) -> str:
    return " ".join(str(value).split()) if isinstance(value, (str, int, float)) else ""


# the names other layouts give these fields (Hugging Face copies of the spoken sets, MMLU's `subject`)
ALIASES = {"question": ("Question", "Questions"), "answer": ("Answer",), "audio": ("question_audio",),
           "topic": ("subject",)}
AUDIO_DIR = "audio"  # embedded question audio, saved in the eval_items artifact


def _canonical(row: dict) -> dict:
    out = dict(row)
    for name, aliases in ALIASES.items():
        if out.get(name) is None:
            out[name] = next((row[a] for a in aliases if row.get(a) is not None), None)
    return out


def _layout(row: dict, declared: str) -> str:
    if declared != "auto":
        return declared
    if "answers" in row:
        return "webquestions"
    if isinstance(row.get("answer"), dict):
        return "triviaqa"
    return "mixc"


def _audio(value: Any, folder: Path, out: Path | None) -> str | None:
    """The question's audio: a file path (relative to the eval file), or a Hugging Face audio
    struct ({"bytes", "path"}), whose bytes are saved under out/audio/ (kept relative to `out`)."""
    if not value:
        return None
    if isinstance(value, dict) and value.get("bytes"):
        if out is None:
            raise Unusable("missing audio")
        data = bytes(value["bytes"])
        name = f"{hashlib.sha256(data).hexdigest()[:20]}{Path(str(value.get('path') or '.wav')).suffix or '.wav'}"
        (out / AUDIO_DIR).mkdir(exist_ok=True)
        (out / AUDIO_DIR / name).write_bytes(data)
        return f"{AUDIO_DIR}/{name}"
    path = folder / str(value.get("path") if isinstance(value, dict) else value)
    if not path.is_file():
        raise Unusable("missing audio")
    return str(path)


def parse_line(row: dict, declared: str, folder: Path, where: str, n: int, out: Path | None = None) -> Item:
    """One row (a jsonl line, a parquet row) as an Item, or Unusable with its reason; embedded
    audio is saved under `out`."""
    row = _canonical(row)
    layout = _layout(row, declared)
    question = _text(row.get("question"))
    if not question:
        raise Unusable("empty question")
    choices: tuple[str, ...] = ()
    if layout == "webquestions":
        answers = [a for a in (_text(x) for x in row.get("answers") or []) if a]
        answer: int | str = answers[0] if answers else ""
        ident = _text(row.get("id")) or f"{n}"
    elif layout == "triviaqa":
        answer = _text((row.get("answer") or {}).get("value"))
        ident = _text(row.get("question_id") or row.get("id")) or f"{n}"
    else:
        choices = tuple(_text(c) for c in row.get("choices") or [])
        raw = row.get("answer")
        answer = raw if isinstance(raw, int) and not isinstance(raw, bool) else _text(raw)
        ident = _text(row.get("id")) or f"{n}"
    if answer == "":
        raise Unusable("no answer")
    if choices and any(not c for c in choices):
        raise Unusable("wrong number of choices")
    if isinstance(answer, int) and not 0 <= answer < len(choices):
        raise Unusable("answer out of range")
    audio = _audio(row.get("audio"), folder, out)
    return Item(ident, _text(row.get("topic")) or None, question, choices, answer, audio, where)


def _rows(path: Path) -> Iterator[tuple[int, dict | None]]:
    """(line or row number, the row; None for a line that is not a JSON object) of a jsonl or parquet file."""
    if path.suffix == ".parquet":
        yield from enumerate(pl.read_parquet(path).to_dicts(), 1)
        return
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            yield number, row if isinstance(row, dict) else None


def file_rows(root: Path, path: Path, stats: Stats) -> Iterator[tuple[str, dict]]:
    """(file:row, row) of every JSON object row of a jsonl or parquet file; an unreadable file and a
    line that is not a JSON object are set aside as `not json`, with their place."""
    rel = os.path.relpath(path, root)
    try:
        rows = list(_rows(path))
    except (OSError, UnicodeDecodeError, pl.exceptions.PolarsError) as err:
        stats.quarantine(rel, f"cannot read it ({err})", "not json")
        return
    for number, row in rows:
        if row is None:
            stats.quarantine(f"{rel}:{number}", "not a JSON object", "not json")
        else:
            yield f"{rel}:{number}", row


def read_items(root: Path, files: list[Path], declared: str, stats: Stats, out: Path | None = None) -> list[Item]:
    """Every usable item of the files, in file and row order; the rest dropped and listed."""
    items: list[Item] = []
    seen: set[str] = set()
    for path in files:
        for where, row in file_rows(root, path, stats):
            try:
                item = parse_line(row, declared, path.parent, where, len(items), out)
                if item.id in seen:
                    raise Unusable("duplicate id")
            except Unusable as why:
                stats.quarantine(where, str(why), str(why))
                continue
            seen.add(item.id)
            items.append(item)
    return items


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def with_choices(items: list[Item], n: int, seed: int, name: str, stats: Stats) -> list[Item]:
    """Every item with exactly n choices and an index answer: answer-only items get n-1 distractors
    drawn from the other items' answers, and a gold position, seeded per item."""
    pool = sorted({_key(a): a for i in items for a in ([i.answer] if isinstance(i.answer, str) else [])}.values())
    out = []
    for item in items:
        if isinstance(item.answer, int):
            if len(item.choices) != n:
                stats.quarantine(item.where, f"{len(item.choices)} choices, the set asks for {n}",
                                 "wrong number of choices")
                continue
            out.append(item)
            continue
        others = [a for a in pool if _key(a) != _key(item.answer)]
        if len(others) < n - 1:
            raise StageError(f"eval set '{name}' has {len(pool)} distinct answers: too few to draw {n - 1} "
                             "distractors per answer-only question",
                             "add questions, give their choices, or lower `choices`", ".choices")
        digest = hashlib.sha256(f"{seed}\x00{name}\x00{item.id}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        picked = [others[i] for i in rng.choice(len(others), n - 1, replace=False)]
        gold = int(rng.integers(n))
        choices = tuple(picked[:gold] + [item.answer] + picked[gold:])
        out.append(Item(item.id, item.topic, item.question, choices, gold, item.audio, item.where))
    return out


class EvalItems:
    """`items.parquet`: the checked items of one eval set."""
    FILE = "items.parquet"

    @classmethod
    def write(cls, folder: Path, items: list[Item]) -> None:
        frame = pl.DataFrame({"id": [i.id for i in items], "topic": [i.topic for i in items],
                              "question": [i.question for i in items], "choices": [list(i.choices) for i in items],
                              "answer": [int(i.answer) for i in items], "audio": [i.audio for i in items],
                              "where": [i.where for i in items]},
                             schema={"id": pl.String, "topic": pl.String, "question": pl.String,
                                     "choices": pl.List(pl.String), "answer": pl.Int64, "audio": pl.String,
                                     "where": pl.String})
        frame.write_parquet(folder / cls.FILE, statistics=False)

    @classmethod
    def read(cls, folder: Path) -> pl.DataFrame:
        return pl.read_parquet(folder / cls.FILE)


def _audio_files(root: Path, files: list[Path]) -> dict[str, str]:
    """The question audio files the eval files name (for the key: an edited recording rebuilds the
    set; embedded audio is part of its file already)."""
    found = {}
    for path in files:
        try:
            rows = [_canonical(row) for _, row in _rows(path) if row is not None]
        except (OSError, UnicodeDecodeError, pl.exceptions.PolarsError):
            continue
        for row in rows:
            audio = row.get("audio")
            name = audio.get("path") if isinstance(audio, dict) and not audio.get("bytes") else audio
            if isinstance(name, str) and (path.parent / name).is_file():
                found[os.path.relpath(path.parent / name, root)] = str(path.parent / name)
    return found


class EvalItemsStage(Stage):
    kind, version, doc = "eval_items", 1, "eval questions read, checked, given choices"
    reads = (".files", ".format", ".limit", ".choices", "seed")

    def fingerprint(self, ctx: Context, spec) -> dict:
        files = expand(ctx.root, ctx.read(".files"))
        audio = _audio_files(ctx.root, files)
        return {"files": {os.path.relpath(p, ctx.root): ctx.digest(p) for p in files},
                "audio": {rel: ctx.digest(Path(p)) for rel, p in sorted(audio.items())}}

    def run(self, ctx: Context, stats: Stats) -> None:
        files = expand(ctx.root, ctx.read(".files"))
        items = read_items(ctx.root, files, ctx.read(".format"), stats, ctx.out)
        stats.items_in = len(items) + sum(stats.dropped.values())
        limit = ctx.read(".limit")
        items = with_choices(items[:limit] if limit is not None else items, ctx.read(".choices"), ctx.read("seed"),
                             ctx.subject, stats)
        if not items:
            raise StageError(f"eval set '{ctx.subject}' has no usable question",
                             "check its files (report.md lists each dropped line with its reason)", ".files")
        EvalItems.write(ctx.out, items)
        stats.items_out = len(items)
        stats.counts.update(spoken=sum(1 for i in items if i.audio), voiced=sum(1 for i in items if not i.audio))


# ----------------------------------------------------------------------------- eval_encode


def _voice(ctx: Context) -> tuple[ir.Voice, ir.Tts]:
    text = ctx.read(".voice")
    voice = ir.Voice.parse(text, "flite")
    return voice, ir.Tts(voices=(text,))


def question_audio(ctx: Context, items: pl.DataFrame, revision: str) -> list[np.ndarray]:
    """Each question's audio at 16 kHz: its recording, else the held-out voice reading it (memoised
    per text and voice in the item store, beside the generators' audio)."""
    import soundfile

    from mixc.audio import to_mono_16k
    from mixc.backends import tts
    from mixc.stages.items import AUDIO_KIND, AUDIO_SUFFIX, item_key, load_wav, put_audio

    store = ctx.items
    assert store is not None, "the executor gives every stage its item store"
    voice, cfg = _voice(ctx)
    speaker = None
    out = []
    saved = ctx.input_of("eval_items")  # embedded audio lives there, under audio/
    for question, audio in zip(items["question"].to_list(), items["audio"].to_list()):
        if audio:
            samples, rate = soundfile.read(saved / audio, dtype="float32", always_2d=True)
            out.append(to_mono_16k(samples, rate))
            continue
        key = item_key("eval-question", revision, question)
        if not store.has(AUDIO_KIND, key, AUDIO_SUFFIX):
            speaker = speaker or tts.load(voice, cfg, ctx.root)
            put_audio(store, key, speaker.speak(question))
        out.append(load_wav(store.path(AUDIO_KIND, key, AUDIO_SUFFIX)))
    return out


@dataclass(frozen=True)
class Frames:
    """Marker ids around each modality (None: no markers) and the audio code offset."""
    audio_offset: int
    audio: tuple[int, int] | None
    text: tuple[int, int] | None
    text_size: int

    def spoken(self, codes: np.ndarray) -> list[int]:
        body = [int(c) + self.audio_offset for c in codes]
        head = [self.audio[0], *body, self.audio[1]] if self.audio else body
        return head + ([self.text[0]] if self.text else [])

    def written(self, question: list[int]) -> list[int]:
        if self.text:
            return [self.text[0], *question, self.text[1], self.text[0]]
        return list(question)


class EvalEncodedStage(Stage):
    kind, version, doc = "eval_encode", 1, "eval questions voiced, encoded and framed"
    reads = (".kind", ".voice", "interleave.markers")

    def fingerprint(self, ctx: Context, spec) -> dict:
        from mixc.backends import tts
        voice, cfg = _voice(ctx)
        return {"voice": tts.revision(voice, cfg, ctx.root)}

    def run(self, ctx: Context, stats: Stats) -> None:
        from mixc.plan.vocab import layout
        from mixc.stages.audio_tokens import TOKENIZER, AudioVocab
        from mixc.stages.tokenizer import VocabFile, load_codec

        items = EvalItems.read(ctx.input_of("eval_items"))
        text_tok = ctx.inputs_of("train_bpe", "load_text_tokenizer")[0]
        audio_dir = next(iter(ctx.inputs_of("train_audio_tokenizer", "load_audio_tokenizer")), None)
        codebook = AudioVocab.read(audio_dir).codebook_size if audio_dir else None
        lay = layout(VocabFile.read(text_tok), codebook, ctx.read("interleave.markers"))
        m = lay.markers
        frames = Frames(lay.audio_offset, (m["<audio>"], m["</audio>"]) if "<audio>" in m else None,
                        (m["<text>"], m["</text>"]) if "<text>" in m else None, lay.text.size)
        spoken_kind = ctx.read(".kind") in ir.SPOKEN_EVAL_KINDS
        codes: list[np.ndarray | None] = [None] * len(items)
        if spoken_kind:
            if audio_dir is None:
                raise StageError(f"eval set '{ctx.subject}' is spoken, and the spec has no audio tokenizer",
                                 "declare `tokenizer audio` (or use kind = mc for written questions)", ".kind")
            from mixc.audio_tokenizer import load_tokenizer
            wavs = question_audio(ctx, items, ctx.fingerprint["voice"])
            codes = list(load_tokenizer(audio_dir / TOKENIZER).encode(wavs))
        codec = load_codec(text_tok)
        with open(ctx.out / "items.jsonl", "w", encoding="utf-8") as out:
            for row, item_codes in zip(items.iter_rows(named=True), codes):
                choices = [" " + c for c in row["choices"]]
                question, *choice_ids = codec.encode_batch([row["question"], *choices])
                framed = {"id": row["id"], "topic": row["topic"], "where": row["where"], "question": row["question"],
                          "choices": row["choices"], "answer": row["answer"],
                          "choice_chars": [len(c) for c in row["choices"]],  # lm-eval's acc_norm: no space
                          "choice_tokens": [list(map(int, c)) for c in choice_ids],
                          "written": frames.written(list(map(int, question))),
                          "spoken": frames.spoken(item_codes) if item_codes is not None else None}
                out.write(json.dumps(framed, ensure_ascii=False) + "\n")
        (ctx.out / "eval.json").write_text(json.dumps({"kind": ctx.read(".kind"), "items": len(items),
                                                       "voice": ctx.read(".voice") if spoken_kind else None,
                                                       "text_size": frames.text_size}, indent=1) + "\n")
        stats.items_in = stats.items_out = len(items)


# ----------------------------------------------------------------------------- eval_text (kind lm)


def held_out_texts(root: Path, files: list[Path], stats: Stats) -> list[tuple[str, str]]:
    """(where, text) of every document of the files: jsonl or parquet rows with a `text` field, or a
    whole .txt file; the rest dropped and listed."""
    out = []
    for path in files:
        rel = os.path.relpath(path, root)
        if path.suffix == ".txt":
            try:
                out.append((rel, path.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError) as err:
                stats.quarantine(rel, f"cannot read it ({err})", "not text")
            continue
        for where, row in file_rows(root, path, stats):
            text = row.get("text")
            if not isinstance(text, str) or not text.strip():
                stats.quarantine(where, "no text", "no text")
            else:
                out.append((where, text))
    return out


class EvalTextStage(Stage):
    kind, version, doc = "eval_text", 1, "held-out text tokenised into scored windows"
    reads = (".files", ".limit", "pack.seq_len", "interleave.markers")

    def fingerprint(self, ctx: Context, spec) -> dict:
        return {"files": {os.path.relpath(p, ctx.root): ctx.digest(p) for p in expand(ctx.root, ctx.read(".files"))}}

    def run(self, ctx: Context, stats: Stats) -> None:
        """Each document as a text chunk (`<text> ids </text>` when the markers name text), cut into
        windows of at most seq_len tokens; a window's first token is context, the rest are scored."""
        from mixc.plan.vocab import layout
        from mixc.stages.audio_tokens import AudioVocab
        from mixc.stages.tokenizer import VocabFile, load_codec

        texts = held_out_texts(ctx.root, expand(ctx.root, ctx.read(".files")), stats)
        limit = ctx.read(".limit")
        texts = texts[:limit] if limit is not None else texts
        if not texts:
            raise StageError(f"eval set '{ctx.subject}' has no text", "give it jsonl/parquet with a `text` field, "
                             "or .txt files", ".files")
        text_tok = ctx.inputs_of("train_bpe", "load_text_tokenizer")[0]
        audio_dir = next(iter(ctx.inputs_of("train_audio_tokenizer", "load_audio_tokenizer")), None)
        lay = layout(VocabFile.read(text_tok), AudioVocab.read(audio_dir).codebook_size if audio_dir else None,
                     ctx.read("interleave.markers"))
        wrap = (lay.markers["<text>"], lay.markers["</text>"]) if "<text>" in lay.markers else None
        seq_len, windows = ctx.read("pack.seq_len"), 0
        codec = load_codec(text_tok)
        with open(ctx.out / "items.jsonl", "w", encoding="utf-8") as out:
            for (where, _), ids in zip(texts, codec.encode_batch([t for _, t in texts])):
                tokens = [wrap[0], *map(int, ids), wrap[1]] if wrap else list(map(int, ids))
                for k, start in enumerate(range(0, max(len(tokens) - 1, 1), seq_len)):
                    window = tokens[start:start + seq_len]
                    if len(window) > 1:
                        out.write(json.dumps({"id": f"{where}#{k}", "where": where, "tokens": window}) + "\n")
                        windows += 1
        (ctx.out / "eval.json").write_text(json.dumps({"kind": "lm", "items": windows, "voice": None,
                                                       "text_size": lay.text.size}, indent=1) + "\n")
        stats.items_in, stats.items_out = len(texts) + sum(stats.dropped.values()), windows
        stats.counts["documents"] = len(texts)


HELDOUT_PREFIX = "heldout/"  # the held-out set of a stream is named heldout/STREAM


class EvalHeldoutStage(Stage):
    """A stream's held-out sequences (packed like its training ones, `pack`'s `heldout/`) as `lm`
    items: the whole sequence is scored where its loss mask is 1, as the training loss would be."""
    kind, version, doc = "eval_heldout", 1, "held-out sequences of a training stream, to score"
    reads = ("eval.heldout_sequences",)

    def run(self, ctx: Context, stats: Stats) -> None:
        from mixc.stages.pack import HELDOUT, PackedSequences

        packed = PackedSequences.open(ctx.input_of("pack") / HELDOUT)
        limit = ctx.read("eval.heldout_sequences")
        rows = np.unique(np.linspace(0, packed.count - 1, min(limit, packed.count)).round().astype(int)) \
            if packed.count else np.zeros(0, int)  # spread over the stream, not its first documents
        with open(ctx.out / "items.jsonl", "w", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps({"id": f"{ctx.subject}#{row}", "lineage": packed.lineage_of(row).tolist(),
                                      "tokens": packed.tokens(row, row + 1)[0].tolist(),
                                      "mask": packed.masks(row, row + 1)[0].tolist()}) + "\n")
        (ctx.out / "eval.json").write_text(json.dumps({"kind": "lm", "items": len(rows), "voice": None}) + "\n")
        stats.items_in, stats.items_out = packed.count, len(rows)
