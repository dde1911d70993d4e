"""A throwaway mixc workspace for compile tests: a root marker, text data, a spec, a private cache."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from mixc.build.cache import Cache
from mixc.build.compile import Result, compile_spec
from mixc.lang.lower import load

WORDS = ["the", "river", "city", "north", "coast", "trade", "grain", "iron", "port", "hills", "winter", "rain",
         "market", "people", "language", "capital", "island", "border", "forest", "valley", "summer", "road", "bridge",
         "harbour", "mountain", "salt", "wool"]

TWO_SOURCES = """\
seed = 5
source news : text {{
  files = "data/news/*.jsonl"
  dedup = true
}}
source books : text {{
  files = "data/books/*.txt"
}}
tokenizer text : bpe {{
  vocab = {vocab}
}}
pack {{
  seq_len = 64
}}
mixture {{
  {news}% news
  {books}% books
}}
budget {{
  steps = 20
}}
train {{
  batch = 4
}}
"""


def sentences(rng: random.Random, n: int) -> str:
    return " ".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))).capitalize() + "."
                    for _ in range(n))


def write_corpus(root: Path, seed: int = 0) -> None:
    rng = random.Random(seed)
    news = root / "data" / "news"
    news.mkdir(parents=True, exist_ok=True)
    for f in range(3):
        docs = [{"text": sentences(rng, rng.randint(1, 8)), "id": i} for i in range(60)]
        docs.append(dict(docs[0]))  # an exact duplicate for dedup to drop
        (news / f"part{f}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    books = root / "data" / "books"
    books.mkdir(parents=True, exist_ok=True)
    for f in range(4):
        (books / f"book{f}.txt").write_text(sentences(rng, 120))


@dataclass
class Workspace:
    root: Path
    cache: Cache

    def spec(self, text: str, name: str = "spec.mix") -> Path:
        path = self.root / name
        path.write_text(text)
        return path

    def compile(self, spec: Path, out: str = "out", workers: int = 1) -> Result:
        low = load(spec)
        assert low.ok, [d.message for d in low.diagnostics]
        return compile_spec(low, spec.name, self.root / out, self.cache, workers)


def workspace(root: Path, cache: Path | None = None) -> Workspace:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text("")
    write_corpus(root)
    return Workspace(root, Cache(cache or root / ".mixc" / "cache"))
