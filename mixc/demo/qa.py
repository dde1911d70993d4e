"""`mixc demo-data`'s spoken QA eval set: questions about Factbook facts, answer-only, in mixc's
eval jsonl schema (docs/evaluation.md). The compile draws each question's three distractors from the
other answers and voices the question with the eval set's held-out voice.

eval/factbook_qa.jsonl: "What is the capital of <country>?" for QUESTIONS countries spread evenly
over the Factbook's (sorted) countries with a single, plainly named capital.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from mixc.demo.data import _country, clean, factbook_files

QUESTIONS = 60
FIRST_NAME = re.compile(r"^[^(;,]+")


def capitals() -> list[tuple[str, str]]:
    """(country, capital) for every Factbook country whose capital entry names one place."""
    found = {}
    for path in factbook_files():
        data = json.loads(path.read_text(encoding="utf-8"))
        raw = clean(data.get("Government", {}).get("Capital", {}).get("name", {}).get("text") or "")
        name = FIRST_NAME.match(raw)
        country = _country(data, path.stem)
        if not name or "capital" in raw.lower() or raw.lower().startswith("no ") or country == path.stem.upper():
            continue
        found[country] = name.group(0).strip()
    return sorted(found.items())


def write_qa(out: Path) -> int:
    """Writes out/eval/factbook_qa.jsonl; returns the number of questions."""
    pairs = capitals()
    step = len(pairs) / QUESTIONS
    chosen = [pairs[int(i * step)] for i in range(min(QUESTIONS, len(pairs)))]
    folder = out / "eval"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"id": f"capital/{country}", "topic": "geography",
                         "question": f"What is the capital of {country}?", "answer": capital}, ensure_ascii=False)
             for country, capital in chosen]
    (folder / "factbook_qa.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)
