"""What a prompt edit costs: a full compile of a spec with both synthetic generators, then the same
spec compiled again, against the same cache, after one line was added to the Krist prompt file.

Workspace (untimed setup, one per scale k in `--scales`): the demo's web pages
(`mixc.demo.pages.write_pages`: 40 HTML profile pages, a 404 page and a WARC archive of 10 more plus a
duplicate and a JSON response), and for k > 1, k - 1 further copies of all 50 profile pages as HTML,
each with an edition number in its article so that dedup keeps it (50k pages kept); the CIA World
Factbook as jsonl (`mixc.demo.data.write_factbook`) for a text source; the tests' tiny Llama
(`tests.llm_server.build_tiny_model`, built once, a real Hugging Face model directory); and a spec:

- `krist`: the `transformers` backend over the tiny model, the prompt in `prompts/krist_rewrite.txt`
  (mixc's own rewrite prompt), parts of 600 characters, `max_items = 12k`;
- `quest`: the `extractive` backend (the tiny model never answers "yes" to a filter prompt, nor
  with words of the page), `max_items = 16k`;
- both voiced by the default voice pool (piper, flite and espeak voices); a k-means audio tokenizer
  trained on Quest's speech only, so that it is upstream of the edit as a web-audio tokenizer is;
  tiktoken text tokens; 60% factbook, 40% speech (65% krist, 35% quest).

Timed, per scale: `full`, `mixc.build.compile.compile_spec` into a fresh cache; then the prompt
file gains a line (its path, hence the spec, unchanged) and `rebuild` compiles the same spec with
that cache. `ratio` = rebuild / full, in wall seconds and in CPU seconds (this process and its
children; CPU time holds better than wall time on a machine that other work shares). The rebuild
must build exactly the Krist stages after the prompt (rewrite, tts, encode, interleave, pack, shards
of `krist`) and ask the model again for every rewrite request (each one's rendered prompt changed);
the script checks both and prints what was rebuilt. One untimed compile at the smallest size first
pays what a process pays once (imports, the ASR and speaker-embedding models' first load). Exits 0;
it is a benchmark.

    .venv/bin/python benchmarks/prompt_edit.py [--scales 1,2,4] [--workers 1] [--json]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench_corpus import emit

KRIST_ITEMS, QUEST_ITEMS = 12, 16  # per scale unit
PROMPT = "prompts/krist_rewrite.txt"
EDIT = "Keep every sentence short enough to say in one breath.\n"
KRIST_STAGES = ("rewrite", "tts", "encode", "interleave", "pack", "shards")
SPEC = """\
seed = 11
source pages : html {{
  files = ["pages/*.html", "pages/*.warc.gz", "copies/*.html"]
}}
source factbook : text {{
  files = "factbook/*.jsonl"
}}
generator krist : krist {{
  pages  = pages
  prompt = "{prompt}"
  llm {{
    backend    = transformers
    model      = "{model}"
    max_tokens = 48
  }}
  output {{
    max_chars = 600
    max_items = {krist_items}
  }}
}}
generator quest : quest {{
  pages = pages
  output {{
    max_items = {quest_items}
  }}
}}
tokenizer text : tiktoken {{ }}
tokenizer audio : kmeans {{
  codebook = 64
  train_on = [quest]
}}
pack {{
  seq_len = 128
}}
mixture {{
  60% factbook
  40% speech {{
    65% krist
    35% quest
  }}
}}
budget {{
  steps = 20
}}
train {{
  batch = 4
}}
"""


def write_copies(folder: Path, copies: int) -> int:
    """`copies` further copies of every demo profile page, each edited inside its article; returns how many."""
    from mixc.demo.pages import page_html, profiles, related_pages
    folder.mkdir(parents=True, exist_ok=True)
    chosen = profiles()
    count = 0
    for copy in range(copies):
        for i, p in enumerate(chosen):
            page = page_html(p, related_pages(chosen, i))
            edited = page.replace('<p class="lead">', f'<p class="lead">Edition {copy + 2}. ', 1)
            (folder / f"{p.slug}-{copy + 2}.html").write_text(edited, encoding="utf-8")
            count += 1
    return count


def workspace(root: Path, scale: int, model: Path) -> Path:
    """root/ with the pages, the factbook, the prompt and spec.mix for this scale; returns the spec."""
    from mixc.demo.data import write_factbook
    from mixc.demo.pages import write_pages
    from mixc.stages.generate import prompt_text
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    write_pages(root)
    write_copies(root / "copies", scale - 1)
    write_factbook(root)
    (root / "prompts").mkdir()
    (root / PROMPT).write_text(prompt_text(root, None, "krist_rewrite.txt"), encoding="utf-8")
    spec = root / "spec.mix"
    spec.write_text(SPEC.format(prompt=PROMPT, model=model, krist_items=KRIST_ITEMS * scale,
                                quest_items=QUEST_ITEMS * scale))
    return spec


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its waited-for children (flite, worker processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def compile_once(spec: Path, workers: int):
    """One compile of the spec with the workspace's cache; returns (wall seconds, CPU seconds, result)."""
    from mixc.build.cache import Cache
    from mixc.build.compile import compile_spec
    from mixc.lang.lower import load
    low = load(spec)
    if not low.ok:
        raise SystemExit([d.message for d in low.diagnostics])
    start, cpu = time.perf_counter(), cpu_seconds()
    result = compile_spec(low, spec.name, spec.parent / "out", Cache(spec.parent / "cache"), workers)
    return time.perf_counter() - start, cpu_seconds() - cpu, result


def measure(root: Path, scale: int, model: Path, workers: int) -> dict:
    spec = workspace(root, scale, model)
    full_s, full_cpu, full = compile_once(spec, workers)
    with open(root / PROMPT, "a", encoding="utf-8") as prompt:
        prompt.write(EDIT)
    rebuild_s, rebuild_cpu, rebuilt = compile_once(spec, workers)
    built = [sid for sid, run in rebuilt.runs.items() if not run.hit]
    rewrite = rebuilt.runs["rewrite:krist"].stats.counts
    extract = full.runs["extract:pages"].stats
    return {"scale": scale, "pages": extract.items_out, "krist_items": full.runs["rewrite:krist"].stats.items_out,
            "quest_items": full.runs["answer:quest"].stats.items_out, "full_s": round(full_s, 2),
            "rebuild_s": round(rebuild_s, 2), "ratio": round(rebuild_s / full_s, 3), "full_cpu_s": round(full_cpu, 2),
            "rebuild_cpu_s": round(rebuild_cpu, 2), "ratio_cpu": round(rebuild_cpu / full_cpu, 3), "rebuilt": built,
            "only_krist_rebuilt": sorted(built) == sorted(f"{k}:krist" for k in KRIST_STAGES),
            "requests": int(rewrite.get("requests", 0)), "requests_cached": int(rewrite.get("requests_cached", 0)),
            "full_stage_s": {sid: round(r.stats.seconds, 2) for sid, r in full.runs.items()},
            "rebuild_stage_s": {sid: round(rebuilt.runs[sid].stats.seconds, 2) for sid in built}}


def warm_up(root: Path, model: Path, workers: int) -> None:
    """An untimed compile: imports and first model loads, paid once per process."""
    compile_once(workspace(root, 1, model), workers)


def print_table(report: dict) -> None:
    print(f"prompt edit (one line added to {PROMPT}), --workers {report['workers']}; one untimed compile first; "
          f"load average {report['load'][0]:.1f} at the start, {report['load'][1]:.1f} at the end")
    print(f"{'scale':>5} {'pages':>6} {'krist':>6} {'quest':>6} {'full s':>8} {'rebuild s':>10} {'ratio':>7} "
          f"{'full cpu s':>11} {'rebuild cpu s':>14} {'cpu ratio':>10}  rewrite requests re-asked")
    for r in report["rows"]:
        print(f"{r['scale']:>4}x {r['pages']:>6} {r['krist_items']:>6} {r['quest_items']:>6} {r['full_s']:>8.2f} "
              f"{r['rebuild_s']:>10.2f} {r['ratio']:>7.3f} {r['full_cpu_s']:>11.2f} {r['rebuild_cpu_s']:>14.2f} "
              f"{r['ratio_cpu']:>10.3f}  {r['requests'] - r['requests_cached']} of {r['requests']}")
    for r in report["rows"]:
        slowest = sorted(r["full_stage_s"].items(), key=lambda kv: -kv[1])[:5]
        print(f"{r['scale']}x full, slowest stages: " + ", ".join(f"{sid} {s:.1f}" for sid, s in slowest))
        print(f"{r['scale']}x rebuild ({'only the krist stages' if r['only_krist_rebuilt'] else 'UNEXPECTED'}): "
              + ", ".join(f"{sid} {s:.1f}" for sid, s in r["rebuild_stage_s"].items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,2,4", help="page and item multiples, comma-separated")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # the tiny model's prompts pass its 256 positions
    from tests.llm_server import build_tiny_model
    load = [os.getloadavg()[0]]
    tmp = Path(tempfile.mkdtemp(prefix="mixc-prompt-edit-"))
    try:
        model = build_tiny_model(tmp / "model")
        warm_up(tmp / "warm", model, args.workers)
        rows = [measure(tmp / f"x{k}", k, model, args.workers) for k in map(int, args.scales.split(","))]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load.append(os.getloadavg()[0])
    return emit({"workers": args.workers, "load": load, "rows": rows}, args.json, print_table)


if __name__ == "__main__":
    sys.exit(main())
