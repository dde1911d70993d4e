"""How fast does the extract stage turn web pages into main text, against bare `trafilatura.extract`
on the same pages in the same run, and does its rate hold as the page count grows?

Pages (untimed setup): the demo's Factbook profile pages (mixc/demo/pages.py: 50 cluttered HTML
pages of ~5 KB), replicated to 1x, 2x, 4x and 32x (`--sizes`; 32x is past the stage's POOL_MIN,
where worker processes start), each copy with a small edit inside its article (an edition number)
so that the stage's text dedup keeps every copy. They are .html files of a throwaway workspace whose
spec has one html source (language and dedup checks on, as by default).

Rows, each timed as the best of `--repeat` runs:
- bare extract: `trafilatura.extract(page_bytes, ...)` in a loop over the pages already in memory,
  with the stage's settings (no comments, tables, images, links or formatting; no dedup cache);
- stage, 1 worker: the real `ExtractStage` with a fresh (empty) item store: reading the files,
  extraction, title, paragraphs, memo writes (one fsync'd file per page), language identification,
  dedup, and pages.parquet;
- stage, 2 workers: the same with `workers = 2`: spawned processes, batches of 32 pages, from
  POOL_MIN (1024) pages to do on; fewer are extracted in the stage's own process;
- stage, memo: a rerun over a warm item store (every extraction reused).

`x bare` is a row's pages/s over bare extract's at the same size: the stage's overhead per page, and
with 2 workers its scaling; `x bare cpu` is the same per CPU second (this process and its workers),
which holds better than wall time on a machine that other work shares. One untimed stage run on 3
pages first pays what a process pays once (imports, the language model). Exits 0; it is a
benchmark, not a test.

    .venv/bin/python benchmarks/extract_speed.py [--sizes 1,2,4,32] [--repeat 1] [--json]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench_corpus import emit, load_plan

SPEC = """\
source pages : html {
  files = "pages/*.html"
}
generator quest : quest { pages = pages }
mixture { 100% quest }
budget { steps = 1 }
"""
ROWS = ("bare extract", "stage, 1 worker", "stage, 2 workers", "stage, memo")


def demo_pages() -> list[str]:
    """The demo's profile pages (HTML), in a fixed order."""
    from mixc.demo.pages import page_html, profiles, related_pages
    chosen = profiles()
    return [page_html(p, related_pages(chosen, i)) for i, p in enumerate(chosen)]


def write_workspace(root: Path, pages: list[str], copies: int) -> int:
    """root/spec.mix and root/pages/*.html: every page `copies` times, each copy edited in its article."""
    (root / "pages").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    (root / "spec.mix").write_text(SPEC)
    count = 0
    for copy in range(copies):
        for page in pages:
            edited = page.replace('<p class="lead">', f'<p class="lead">Edition {copy + 1}. ', 1)
            (root / "pages" / f"{count:05d}.html").write_text(edited, encoding="utf-8")
            count += 1
    return count


def bare_extract(bodies: list[bytes]) -> int:
    import trafilatura

    from mixc.stages.pages import SETTINGS
    settings = {k: v for k, v in SETTINGS.items() if k != "output_format"}
    return sum(bool(trafilatura.extract(body, **settings)) for body in bodies)


def run_extract(root: Path, workers: int, items: Path, out: Path) -> int:
    """The extract stage as the executor runs it (declared values, fingerprint first), with an item store."""
    from mixc.build.execute import declared
    from mixc.stages import REGISTRY
    from mixc.stages.base import Context
    from mixc.stages.store import ItemStore
    spec, dag, root = load_plan(root / "spec.mix")
    node = dag["extract:pages"]
    stage = REGISTRY[node.kind]()
    ctx = Context(node, declared(spec, node), {}, out, root, workers=workers, items=ItemStore(items))
    ctx.fingerprint = stage.fingerprint(ctx, spec)
    return stage(ctx).items_out


def cpu_seconds() -> float:
    """User + system time of this process and of the worker processes it has waited for."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(repeat: int, fn: Callable[[], int], reset: Callable[[], None]) -> tuple[float, float, int]:
    """(wall and CPU seconds of the fastest of `repeat` calls, what it returned); `reset` runs untimed
    before each call."""
    best, result = (float("inf"), 0.0), 0
    for _ in range(repeat):
        reset()
        cpu, start = cpu_seconds(), time.perf_counter()
        result = fn()
        wall = time.perf_counter() - start
        if wall < best[0]:
            best = (wall, cpu_seconds() - cpu)
    return best[0], best[1], result


def measure_size(work: Path, pages: list[str], copies: int, repeat: int) -> dict:
    root = work / f"x{copies}"
    count = write_workspace(root, pages, copies)
    bodies = [p.read_bytes() for p in sorted((root / "pages").iterdir())]
    out, items = work / "out", work / "items"

    def fresh(clear_items: bool = True) -> None:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        if clear_items:
            shutil.rmtree(items, ignore_errors=True)

    seconds = {
        "bare extract": timed(repeat, lambda: bare_extract(bodies), lambda: None),
        "stage, 1 worker": timed(repeat, lambda: run_extract(root, 1, items, out), fresh),
        "stage, 2 workers": timed(repeat, lambda: run_extract(root, 2, items, out), fresh),
        "stage, memo": timed(repeat, lambda: run_extract(root, 1, items, out), lambda: fresh(False)),
    }
    bare, bare_cpu, _ = seconds["bare extract"]
    return {"pages": count, "rows": {
        name: {"seconds": wall, "cpu_seconds": cpu, "pages_out": n, "pages_per_s": count / wall,
               "pages_per_cpu_s": count / cpu, "x_bare": bare / wall, "x_bare_cpu": bare_cpu / cpu}
        for name, (wall, cpu, n) in seconds.items()}}


def warm_up(work: Path, pages: list[str]) -> None:
    """Imports, the language model, first-call caches: paid once per process, not per page."""
    root = work / "warm"
    write_workspace(root, pages[:3], 1)
    bare_extract([p.read_bytes() for p in (root / "pages").iterdir()])
    (work / "out").mkdir()
    run_extract(root, 1, work / "items", work / "out")


def measure(sizes: list[int], repeat: int) -> dict:
    pages = demo_pages()
    work = Path(tempfile.mkdtemp(prefix="mixc-extract-"))
    try:
        warm_up(work, pages)
        results = [measure_size(work, pages, copies, repeat) for copies in sizes]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    from importlib.metadata import version
    return {"base_pages": len(pages), "sizes": sizes, "repeat": repeat, "trafilatura": version("trafilatura"),
            "results": results}


def print_table(r: dict) -> None:
    print(f"{r['base_pages']} demo pages x {', '.join(map(str, r['sizes']))}; trafilatura {r['trafilatura']}; "
          f"best of {r['repeat']}")
    print(f"{'pages':>6}  {'row':<18}{'seconds':>9}{'pages/s':>9}{'x bare':>8}{'cpu s':>8}{'pages/cpu-s':>13}"
          f"{'x bare cpu':>12}{'kept':>6}")
    for size in r["results"]:
        for name in ROWS:
            x = size["rows"][name]
            print(f"{size['pages']:>6}  {name:<18}{x['seconds']:>9.2f}{x['pages_per_s']:>9.1f}{x['x_bare']:>7.2f}x"
                  f"{x['cpu_seconds']:>8.2f}{x['pages_per_cpu_s']:>13.1f}{x['x_bare_cpu']:>11.2f}x{x['pages_out']:>6}")
    ratios = ", ".join(f"{s['pages']}: {s['rows']['stage, 1 worker']['x_bare']:.2f}x wall, "
                       f"{s['rows']['stage, 1 worker']['x_bare_cpu']:.2f}x cpu" for s in r["results"])
    print(f"stage (1 worker, cold memo) / bare trafilatura.extract, by pages: {ratios}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,2,4,32", help="copies of the demo pages, comma-separated")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = measure([int(s) for s in args.sizes.split(",")], args.repeat)
    return emit(report, args.json, print_table)


if __name__ == "__main__":
    sys.exit(main())
