"""The LLM side of the synthetic generators: Krist (`rewrite`) and Quest (`mine` -> `answer`).

- `rewrite` (Krist): each page's main text is cut into parts of at most `output.max_chars` (at
  paragraph, else sentence ends); each part is one request: the prompt file with `{page}` replaced.
- `mine` (Quest): questions matched by `question_pattern` in each page's text (at most
  `max_questions` per page), with their character spans. No model: a regex edit reruns only this.
- `answer` (Quest): each question first goes through the filter prompt (`{question}`, `{page}`;
  the reply must start with yes or no), and a kept question through the answer prompt.

Every request is cached on its own in the item store (kind `llm`), keyed by a hash of what is sent:
the rendered messages (or, for `extractive`, the task and its fields), the backend's identity (its
version and the model's digest or revision), the sampling parameters, the seed, the task's output
schema and the rollout index. Never Python source: editing a prompt re-asks exactly the requests
whose text changed. Each request's seed derives from (spec seed, stage, generator, item id), so a
reply does not depend on which other items exist. Replies are stored as they arrive, so a killed
stage resumes from the requests already answered.

Outputs are validated whatever the backend: a `length` finish, an empty reply, a refusal, a reply
too long (Krist: over twice its page part, a loop or a ramble; numbers spelled out for speech
lengthen a part, and a part that is mostly digits can pass that bound and be dropped; Quest: over
`output.max_chars`), one in another language than `output.language`, and (Quest) an
answer whose content words are not found in its page are dropped, each counted under its reason.

Artifact (`GeneratedTexts`) `texts.parquet`, one row per kept item: `item` (its index), `id`
(`page id#chars=start-end`: the lineage back to the page), `page`, `url`, `start`/`end` (the
character span in the page's main text), `question` (Quest), `text` (what is voiced), `tokens_in`,
`tokens_out`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import polars as pl

from mixc import ir
from mixc.hashing import json_digest
from mixc.stages.base import Context, Declared, Stage, StageError, Stats
from mixc.stages.pages import Page, Pages
from mixc.stages.store import ItemStore
from mixc.stages.transcripts import other_language

LLM_KIND, LLM_SUFFIX = "llm", ".json"
GROUNDED_MIN = 0.5  # a Quest answer needs at least this share of its content words in the page
REWRITE_GROWTH = 2  # a Krist output longer than twice its page part is dropped as too long (a loop, a ramble)
CONTEXT_CHARS = 2000  # Quest prompts show the page this far around the question
SCHEMAS = {"rewrite": "text", "filter": "yes|no", "answer": "text"}  # each task's output schema (in the key)
PLACEHOLDERS = {"rewrite": ("{page}",), "filter": ("{question}",), "answer": ("{question}",)}

TEXT_SCHEMA: dict[str, Any] = {
    "item": pl.Int64, "id": pl.String, "page": pl.String, "url": pl.String, "start": pl.Int64, "end": pl.Int64,
    "question": pl.String, "text": pl.String, "tokens_in": pl.Int64, "tokens_out": pl.Int64,
}


class GeneratedTexts:
    """`texts.parquet`: a generator's kept items, in order (the rewrite and answer artifact)."""
    FILE: ClassVar[str] = "texts.parquet"

    @classmethod
    def write(cls, folder: Path, rows: list[dict]) -> None:
        pl.DataFrame([{**r, "item": i} for i, r in enumerate(rows)], schema=TEXT_SCHEMA).write_parquet(
            folder / cls.FILE)

    @classmethod
    def read(cls, folder: Path) -> pl.DataFrame:
        return pl.read_parquet(folder / cls.FILE)


def prompt_text(root: Path, path: str | None, default: str) -> str:
    """The prompt file a generator names (workspace-relative), else mixc's own `prompts/<default>`."""
    if path is None:
        return resources.files("mixc.stages").joinpath("prompts", default).read_text(encoding="utf-8")
    return (root / path).read_text(encoding="utf-8")


def render(template: str, fields: dict[str, str]) -> str:
    """The template with each `{name}` replaced (only names in `fields`; other braces stay)."""
    for name, value in fields.items():
        template = template.replace("{" + name + "}", value)
    return template


def request_seed(seed: int, stage: str, item: str) -> int:
    """A request's own seed from (spec seed, stage id, item id): independent of other items."""
    return int.from_bytes(hashlib.sha256(f"{seed}\x00{stage}\x00{item}".encode()).digest()[:4], "big") >> 1


@dataclass(frozen=True)
class Ask:
    """One request to build: its task, item id and prompt fields."""
    task: str
    item: str
    fields: dict[str, str]


@dataclass(frozen=True)
class Answered:
    text: str
    finish: str
    tokens_in: int
    tokens_out: int


def drop_reason(answer: Answered, language: str, max_chars: int, page: str | None = None) -> str | None:
    """Why an LLM output cannot be used (None: it can); `page` given: the answer must be grounded in it."""
    from mixc.backends.extractive import grounded, refusal

    text = answer.text.strip()
    if answer.finish == "length":
        return "hit max_tokens"
    if not text:
        return "empty"
    if refusal(text):
        return "refusal"
    if len(text) > max_chars:
        return "too long"
    if other_language(text, language):
        return f"not {language}"
    if page is not None and grounded(text, page) < GROUNDED_MIN:
        return "answer not grounded in the page"
    return None


class LlmStage(Stage):
    """A stage that asks the generator's LLM: the base keys, caches, runs and counts requests."""
    # the backend gets the whole block; only the `keyed` fields of it enter the key
    settings: ClassVar[tuple[str, ...]] = (".llm",)
    keyed: ClassVar[tuple[str, ...]] = (".llm.backend", ".llm.model", ".llm.revision", ".llm.temperature",
                                        ".llm.top_p", ".llm.max_tokens")
    prompts: ClassVar[dict[str, tuple[str, str]]] = {}  # task -> (prompt field, default prompt file)

    @classmethod
    def locate_weights(cls, config: Declared, root: Path) -> None:
        from mixc.backends import llm
        llm.locate(config.get(".llm"), root)

    def fingerprint(self, ctx: Context, spec) -> dict:
        from mixc.backends import llm

        cfg = ctx.read(".llm")
        prompts = {task: hashlib.sha256(self._template(ctx, task).encode()).hexdigest()[:16] for task in self.prompts}
        return {"llm": llm.identity(cfg, ctx.root), "prompts": prompts}

    def _template(self, ctx: Context, task: str) -> str:
        read, default = self.prompts[task]
        path = ctx.read(read)
        try:
            template = prompt_text(ctx.root, path, default)
        except OSError as err:
            raise StageError(f"cannot read the prompt file {path}: {err.strerror}",
                             "fix the path (relative to the spec that writes it)", read) from None
        except UnicodeDecodeError as err:
            raise StageError(f"the prompt file {path} is not UTF-8 text (byte {err.start}: {err.reason})",
                             "save it as UTF-8", read) from None
        missing = [p for p in PLACEHOLDERS[task] if p not in template]
        if missing:
            raise StageError(f"the {task} prompt {path or default} lacks {', '.join(missing)}",
                             f"write {' and '.join(missing)} where the prompt should show it", read)
        return template

    def ask(self, ctx: Context, stats: Stats, asks: list[Ask]) -> list[Answered | None]:
        """Replies to `asks`, in order: stored ones from the item store, the rest from the engine
        (stored as each arrives). None for a request the engine could not answer."""
        from mixc.backends import llm

        cfg, store = ctx.read(".llm"), self._store(ctx)
        sampled = cfg.backend != "extractive"
        templates = {task: self._template(ctx, task) for task in {a.task for a in asks}}
        requests = [self._request(ctx, a, templates[a.task], sampled) for a in asks]
        todo = {r.id: r for r in requests if not store.has(LLM_KIND, r.id, LLM_SUFFIX)}
        stats.counts["requests"] = stats.counts.get("requests", 0) + len(requests)
        stats.counts["requests_cached"] = stats.counts.get("requests_cached", 0) + len(requests) - len(todo)
        if todo:
            engine = llm.load(cfg, ctx.root, ctx.workers)
            try:
                replies = engine.complete(list(todo.values()))
                for reply in ctx.progress(replies, f"{self.kind} {ctx.subject}", len(todo)):
                    body = {"text": reply.text, "finish": reply.finish, "tokens_in": reply.tokens_in,
                            "tokens_out": reply.tokens_out}
                    store.put(LLM_KIND, reply.id, LLM_SUFFIX, _writer(json.dumps(body)))
            finally:
                engine.close()
        out = [self._stored(store, r.id) for r in requests]
        for answer in out:
            if answer is not None:
                stats.counts["tokens_in"] = stats.counts.get("tokens_in", 0) + answer.tokens_in
                stats.counts["tokens_out"] = stats.counts.get("tokens_out", 0) + answer.tokens_out
        return out

    def _request(self, ctx: Context, ask: Ask, template: str, sampled: bool):
        from mixc.backends import llm

        cfg = ctx.read(".llm")
        seed = request_seed(ctx.read("seed"), ctx.node.id, f"{ask.task}:{ask.item}")
        messages = ({"role": "user", "content": render(template, ask.fields)},)
        payload = {"messages": messages} if sampled else {"fields": ask.fields}
        key = json_digest({"llm": ctx.fingerprint["llm"], "task": ask.task, "schema": SCHEMAS[ask.task],
                           "rollout": 0, **payload,
                           **({"sampling": llm.sampling(cfg), "seed": seed} if sampled else {})}, 32)
        return llm.Request(key, ask.task, ask.fields, messages, seed)

    @staticmethod
    def _stored(store: ItemStore, key: str) -> Answered | None:
        path = store.path(LLM_KIND, key, LLM_SUFFIX)
        return Answered(**json.loads(path.read_text())) if path.is_file() else None

    @staticmethod
    def _store(ctx: Context) -> ItemStore:
        assert ctx.items is not None, "LLM stages cache each request in the cache's item store"
        return ctx.items


def _writer(text: str):
    return lambda tmp: tmp.write_text(text)


def page_parts(text: str, max_chars: int) -> list[tuple[int, int]]:
    """Spans that cut a page's text into parts of at most `max_chars`, at paragraph ends where they
    fit, else at sentence ends, else hard."""
    from mixc.backends.extractive import sentence_spans

    pieces: list[tuple[int, int]] = []
    for para in re.finditer(r"[^\n]+(?:\n(?!\n)[^\n]*)*", text):
        if para.end() - para.start() <= max_chars:
            pieces.append((para.start(), para.end()))
            continue
        for s, e in sentence_spans(para.group()):
            pieces += [(para.start() + a, para.start() + min(a + max_chars, e)) for a in range(s, e, max_chars)]
    parts: list[tuple[int, int]] = []
    for start, end in pieces:
        if parts and end - parts[-1][0] <= max_chars:
            parts[-1] = (parts[-1][0], end)
        else:
            parts.append((start, end))
    return parts


def item_id(page: Page, start: int, end: int) -> str:
    return f"{page.id}#chars={start}-{end}"


class RewriteStage(LlmStage):
    kind, version, doc = "rewrite", 1, "page text rewritten for speech (Krist)"
    reads = LlmStage.keyed + (".output", "seed")
    settings = LlmStage.settings + (".prompt",)
    weights = ".llm.model"
    prompts = {"rewrite": (".prompt", "krist_rewrite.txt")}

    def run(self, ctx: Context, stats: Stats) -> None:
        out: ir.Generated = ctx.read(".output")
        pages = Pages.read(ctx.input_of("extract"))
        parts = [(page, s, e) for page in pages for s, e in page_parts(page.text, out.max_chars)]
        parts = parts[:out.max_items] if out.max_items is not None else parts
        stats.items_in = len(parts)
        asks = [Ask("rewrite", item_id(p, s, e), {"page": p.text[s:e]}) for p, s, e in parts]
        rows = []
        for (page, start, end), answer in zip(parts, self.ask(ctx, stats, asks)):
            limit = REWRITE_GROWTH * (end - start)
            reason = "no reply" if answer is None else drop_reason(answer, out.language, limit)
            if reason or answer is None:
                stats.drop(reason or "no reply")
                continue
            rows.append({"id": item_id(page, start, end), "page": page.id, "url": page.url, "start": start,
                         "end": end, "question": None, "text": answer.text.strip(), "tokens_in": answer.tokens_in,
                         "tokens_out": answer.tokens_out})
        stats.items_out = len(rows)
        stats.counts["pages"] = len(pages)
        GeneratedTexts.write(ctx.out, rows)


QUESTION_SCHEMA: dict[str, Any] = {"page": pl.Int64, "start": pl.Int64, "end": pl.Int64, "question": pl.String}


class MineStage(Stage):
    """Questions mined from page text with the spec's regex; `questions.parquet`: page (index in the
    pages artifact), start, end (the question's span in the page's text), question."""
    kind, version, doc = "mine", 1, "questions mined from pages (Quest)"
    reads = (".question_pattern", ".max_questions")
    FILE: ClassVar[str] = "questions.parquet"

    def run(self, ctx: Context, stats: Stats) -> None:
        from mixc.backends.extractive import mine_questions

        pattern, limit = ctx.read(".question_pattern"), ctx.read(".max_questions")
        try:
            re.compile(pattern)
        except re.error as err:
            raise StageError(f"question_pattern is not a valid regular expression: {err}",
                             "check the escaping: in a spec string a backslash is written \\\\",
                             ".question_pattern") from None
        rows = []
        for page in Pages.read(ctx.input_of("extract")):
            stats.items_in += 1
            found = mine_questions(page.text, pattern, limit)
            stats.counts["pages_with_questions"] = stats.counts.get("pages_with_questions", 0) + bool(found)
            rows += [{"page": page.page, "start": s, "end": e, "question": q} for q, s, e in found]
        stats.items_out = len(rows)
        pl.DataFrame(rows, schema=QUESTION_SCHEMA).write_parquet(ctx.out / self.FILE)

    @classmethod
    def questions(cls, folder: Path) -> pl.DataFrame:
        return pl.read_parquet(folder / cls.FILE)


def context(text: str, start: int, end: int) -> str:
    """The page around a question: what Quest's prompts show as {page}."""
    return text[max(0, start - CONTEXT_CHARS):end + CONTEXT_CHARS]


def said_yes(answer: Answered | None) -> bool:
    return answer is not None and answer.finish != "length" and \
        re.match(r"\W*yes\b", answer.text.strip(), re.IGNORECASE) is not None


class AnswerStage(LlmStage):
    kind, version, doc = "answer", 1, "questions filtered and answered (Quest)"
    reads = LlmStage.keyed + (".output", "seed")
    settings = LlmStage.settings + (".filter_prompt", ".answer_prompt")
    weights = ".llm.model"
    prompts = {"filter": (".filter_prompt", "quest_filter.txt"), "answer": (".answer_prompt", "quest_answer.txt")}

    def run(self, ctx: Context, stats: Stats) -> None:
        out: ir.Generated = ctx.read(".output")
        pages = Pages.read(ctx.input_of("extract"))
        questions = MineStage.questions(ctx.input_of("mine")).to_dicts()
        questions = questions[:out.max_items] if out.max_items is not None else questions
        stats.items_in = len(questions)
        items = [(q, pages[q["page"]]) for q in questions]
        asks = [self._ask("filter", q, page) for q, page in items]
        verdicts = self.ask(ctx, stats, asks)
        kept = [(q, page) for (q, page), verdict in zip(items, verdicts) if said_yes(verdict)]
        stats.drop("filtered out", len(items) - len(kept))
        answers = self.ask(ctx, stats, [self._ask("answer", q, page) for q, page in kept])
        rows = []
        for (q, page), answer in zip(kept, answers):
            reason = "no reply" if answer is None else drop_reason(answer, out.language, out.max_chars, page.text)
            if reason or answer is None:
                stats.drop(reason or "no reply")
                continue
            rows.append({"id": item_id(page, q["start"], q["end"]), "page": page.id, "url": page.url,
                         "start": q["start"], "end": q["end"], "question": q["question"],
                         "text": f"{q['question']}\n\n{answer.text.strip()}", "tokens_in": answer.tokens_in,
                         "tokens_out": answer.tokens_out})
        stats.items_out = len(rows)
        GeneratedTexts.write(ctx.out, rows)

    @staticmethod
    def _ask(task: str, question: dict, page: Page) -> Ask:
        fields = {"question": question["question"], "page": context(page.text, question["start"], question["end"])}
        return Ask(task, item_id(page, question["start"], question["end"]), fields)
