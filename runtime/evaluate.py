"""Evaluation: the plan's eval sets scored on a model, during training (a Composer callback every
`eval.every` batches) and afterwards (`evaluate_run`, behind `mixc eval`).

An eval set is the framed jsonl `mixc compile` wrote (`eval/<set>.jsonl`, pinned in mix.lock): each
item holds its question as spoken context ids and as written context ids, its choices' ids and
lengths, and the gold index. Per kind:

- `sqa`: cloze multiple choice after the spoken question (`acc`, `acc_norm`), the same items after
  the written question as a control (`text_acc`, `text_acc_norm`), and the modality gap;
- `mc`: cloze multiple choice after the written question (`acc`, `acc_norm`);
- `modality_gap`: the gap only (`gap_*`: means over items of `runtime.scoring.gap`);
- `lm`: held-out text in windows, or a stream's held-out sequences (`heldout/STREAM`), its
  perplexity (`nll` per token, `ppl`; `text_nll`, `text_ppl` over its text tokens).

Items are split over the processes by index and gathered back in index order, and every item is
scored alone, so 1 or N processes give the same numbers. docs/evaluation.md defines each figure.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from composer import Callback, Logger, State
from composer.utils import dist

from mixc.errors import DataError
from mixc.planfile import EvalSetPlan, TrainingPlan
from runtime.scoring import Logits, continuation_logprobs, gap, multiple_choice, token_logprobs

CHANCE_DIGITS = 4


def read_items(plan_dir: Path, evalset: EvalSetPlan) -> list[dict]:
    path = plan_dir / evalset.path
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"eval set '{evalset.name}': {path} cannot be read ({err})",
                        "recompile with `mixc compile SPEC --out DIR`") from None


@dataclass(frozen=True)
class ItemScore:
    id: str
    topic: str | None
    answer: int
    logliks: list[float] | None = None
    acc: float | None = None
    acc_norm: float | None = None
    text_logliks: list[float] | None = None
    text_acc: float | None = None
    text_acc_norm: float | None = None
    gap: dict[str, float] | None = None
    nll: float | None = None
    tokens: int | None = None
    text_nll: float | None = None
    text_tokens: int | None = None


def score_item(model: Logits, kind: str, item: dict, text_size: int, device: str) -> ItemScore:
    if kind == "lm":
        return _window(model, item, text_size, device)
    chars, tokens, answer = item["choice_chars"], item["choice_tokens"], item["answer"]
    fields: dict[str, Any] = {}
    if kind == "sqa":
        spoken = multiple_choice(continuation_logprobs(model, item["spoken"], tokens, device), chars, answer)
        fields.update(logliks=list(spoken.logliks), acc=spoken.acc, acc_norm=spoken.acc_norm)
    if kind in ("sqa", "mc"):
        written = multiple_choice(continuation_logprobs(model, item["written"], tokens, device), chars, answer)
        target = "text_" if kind == "sqa" else ""
        fields.update({f"{target}logliks": list(written.logliks), f"{target}acc": written.acc,
                       f"{target}acc_norm": written.acc_norm})
    if kind in ("sqa", "modality_gap"):
        fields["gap"] = asdict(gap(model, item["spoken"], item["written"], tokens[answer], text_size, device))
    return ItemScore(item["id"], item.get("topic"), answer, **fields)


def _window(model: Logits, item: dict, text_size: int, device: str) -> ItemScore:
    """A held-out window: every token after the first is scored where its mask is 1 (held-out
    sequences carry their training loss mask; held-out text has none: all), and separately where it
    is also a text token (id below `text_size`)."""
    tokens = item["tokens"]
    logp = token_logprobs(model, tokens, device)
    targets = torch.tensor(tokens[1:])
    mask = item.get("mask")
    scored = torch.tensor(mask[1:], dtype=torch.bool) if mask else torch.ones(len(targets), dtype=torch.bool)
    text = scored & (targets < text_size)
    return ItemScore(item["id"], None, -1, nll=-float(logp[scored].sum()), tokens=int(scored.sum()),
                     text_nll=-float(logp[text].sum()), text_tokens=int(text.sum()))


def summarise(kind: str, scores: list[ItemScore]) -> dict[str, float]:
    """Means over items of every figure the kind has (accuracies as fractions); for `lm`, the mean
    negative log-likelihood per scored token (`nll`, nats) and its exponential (`ppl`), and the same
    over the scored text tokens (`text_nll`, `text_ppl`)."""
    out: dict[str, float] = {"items": float(len(scores))}
    if kind == "lm":
        tokens = sum(s.tokens or 0 for s in scores)
        out["tokens"] = float(tokens)
        out["nll"] = math.fsum(s.nll or 0.0 for s in scores) / max(tokens, 1)
        out["ppl"] = math.exp(min(out["nll"], 50.0))
        text = sum(s.text_tokens or 0 for s in scores)
        if text:
            out["text_tokens"] = float(text)
            out["text_nll"] = math.fsum(s.text_nll or 0.0 for s in scores) / text
            out["text_ppl"] = math.exp(min(out["text_nll"], 50.0))
        return out
    for name in ("acc", "acc_norm", "text_acc", "text_acc_norm"):
        values = [getattr(s, name) for s in scores if getattr(s, name) is not None]
        if values:
            out[name] = math.fsum(values) / len(values)
    gaps = [s.gap for s in scores if s.gap]
    for name in (gaps[0] if gaps else {}):
        out[f"gap_{name}"] = math.fsum(g[name] for g in gaps) / len(gaps)
    if kind in ("sqa", "mc") and scores:
        out["chance"] = round(math.fsum(1 / len(s.logliks or s.text_logliks or [0, 0]) for s in scores) / len(scores),
                              CHANCE_DIGITS)
    return out


def _gathered(mine: list[tuple[int, ItemScore]]) -> list[ItemScore]:
    parts = dist.all_gather_object(mine) if dist.get_world_size() > 1 else [mine]
    return [score for _, score in sorted((pair for part in parts for pair in part), key=lambda p: p[0])]


@torch.no_grad()
def evaluate(model: Logits, plan: TrainingPlan, plan_dir: Path, device: str = "cpu",
             split: bool = True) -> dict[str, dict]:
    """Every eval set of the plan: {set: {"kind", "summary", "items"}} (items in file order). With
    `split`, each process scores its share of the items (index modulo the world size); without (a
    sharded model, whose every forward pass involves all processes), each scores them all."""
    rank, world = dist.get_global_rank(), dist.get_world_size()
    results = {}
    for evalset in plan.eval.sets:
        items = read_items(plan_dir, evalset)
        mine = [(i, score_item(model, evalset.kind, item, plan.eval.text_size, device))
                for i, item in enumerate(items) if not split or i % world == rank]
        scores = _gathered(mine) if split else [score for _, score in mine]
        results[evalset.name] = {"kind": evalset.kind, "sha256": evalset.sha256, "voice": evalset.voice,
                                 "summary": summarise(evalset.kind, scores), "items": [asdict(s) for s in scores]}
    return results


def flat_summary(results: dict[str, dict]) -> dict[str, float]:
    """{"eval/<set>/<figure>": value}: how the figures are logged."""
    return {f"eval/{name}/{k}": v for name, r in results.items() for k, v in r["summary"].items() if k != "items"}


def _sharded(net: torch.nn.Module) -> bool:
    """Whether FSDP shards the model's parameters (then every process must run every forward pass)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in net.parameters())


class EvalCallback(Callback):
    """Scores the plan's eval sets every `plan.eval.every` batches and at the end of training; rows
    `{"step", "eval/<set>/<figure>": ...}` go to metrics.jsonl beside the loss rows (rank 0 writes)."""

    def __init__(self, plan: TrainingPlan, plan_dir: Path, metrics: Path) -> None:
        self.plan, self.plan_dir, self.metrics = plan, plan_dir, metrics
        self._done = -1
        self.last: dict[str, dict] = {}  # the latest results, for the run's report

    def batch_end(self, state: State, logger: Logger) -> None:
        if self.plan.eval.every and int(state.timestamp.batch) % self.plan.eval.every == 0:
            self._run(state, logger)

    def fit_end(self, state: State, logger: Logger) -> None:
        if int(state.timestamp.batch) != self._done:
            self._run(state, logger)

    def _run(self, state: State, logger: Logger) -> None:
        step = int(state.timestamp.batch)
        composer_model: Any = getattr(state.model, "module", state.model)  # under DDP, the wrapped model
        net: torch.nn.Module = composer_model.model  # SpeechLMComposer's tokens -> logits module
        device = next(net.parameters()).device
        was_training = net.training
        net.eval()
        try:
            results = evaluate(lambda ids: net(ids), self.plan, self.plan_dir, str(device),
                               split=not _sharded(net))
        finally:
            net.train(was_training)
        self.last = results
        figures = flat_summary(results)
        logger.log_metrics(figures)
        if dist.get_global_rank() == 0:
            with self.metrics.open("a") as f:
                f.write(json.dumps({"step": step, **figures}) + "\n")
            shown = ", ".join(f"{k.removeprefix('eval/')} {v:.3f}" for k, v in figures.items()
                              if k.endswith(("/acc", "/text_acc", "/gap_spoken_written")))
            print(f"[mixc train] step {step} | eval {shown}", flush=True)
        self._done = step


# ----------------------------------------------------------------------------- after training


@dataclass(frozen=True)
class RunFiles:
    """Where `mixc eval` finds what it scores: the run folder, its checkpoint, the compiled plan."""
    run_dir: Path
    checkpoint: Path
    plan_path: Path


def locate_run(target: Path, plan_path: Path | None = None) -> RunFiles:
    """A run folder (its latest checkpoint) or a checkpoint file (its run folder two levels up), and
    the compiled plan.json that trained it (recorded in the run's run.json, or given)."""
    target = target.resolve()
    if target.is_file():
        checkpoint, run_dir = target, target.parent.parent
    else:
        run_dir, link = target, target / "checkpoints" / "latest-rank0.pt"
        if not link.exists():
            raise DataError(f"{target} holds no checkpoint (looked for {link})",
                            "pass a run folder of `mixc train` (--run-dir) or a checkpoint .pt file")
        checkpoint = link.resolve()
    if plan_path is None:
        recorded = run_dir / "run.json"
        if not recorded.is_file():
            raise DataError(f"{run_dir} does not say which plan trained it (no run.json)",
                            "pass the compiled plan: `mixc eval RUN --plan build/DIR/plan.json`")
        plan_path = Path(json.loads(recorded.read_text())["plan"])
    return RunFiles(run_dir, checkpoint, plan_path.resolve())


def load_weights(net: torch.nn.Module, checkpoint: Path) -> int:
    """The checkpoint's model weights into `net`; returns the step it was saved at."""
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state"]
    except (OSError, RuntimeError, KeyError, EOFError) as err:
        raise DataError(f"{checkpoint} is not a readable Composer checkpoint ({err})",
                        "pass another checkpoint, or a run folder (its latest checkpoint)") from None
    weights = {k.removeprefix("model."): v for k, v in state["model"].items()}
    net.load_state_dict(weights)
    return int(state["timestamp"]["Timestamp"]["batch"])


def _rows(metrics: Path) -> list[dict]:
    return [json.loads(line) for line in metrics.read_text().splitlines() if line] if metrics.is_file() else []


def _curves(rows: list[dict], figures: tuple[str, ...]) -> dict[str, list[tuple[int, float]]]:
    """{"<set>/<figure>": [(step, value)]} for the eval figures named."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        for key, value in r.items():
            if key.startswith("eval/") and key.endswith(tuple(f"/{f}" for f in figures)):
                curves.setdefault(key.removeprefix("eval/"), []).append((r["step"], value))
    return curves


def _chart(path: Path, curves: dict[str, list[tuple[int, float]]], ylabel: str, title: str,
           levels: frozenset[float] | set[float] = frozenset(), **axes: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, points in sorted(curves.items()):
        ax.plot(*zip(*points), marker="o" if len(points) < 50 else None, label=name)
    for level in sorted(levels):
        ax.axhline(level, color="grey", linestyle=":", label=f"chance ({level:.0%})")
    ax.set(xlabel="step", ylabel=ylabel, title=title, **axes)
    if len(curves) + len(levels) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_curves(metrics: Path, out: Path) -> list[str]:
    """loss.png (the training loss), eval.png (each set's accuracies by step) and ppl.png (each
    held-out set's perplexity by step), from metrics.jsonl; the names of the files written."""
    rows, written = _rows(metrics), []
    losses = [(r["step"], r["loss"]) for r in rows if r.get("loss") is not None]
    if losses:
        _chart(out / "loss.png", {"loss": losses}, "training loss", "loss")
        written.append("loss.png")
    chance = {value for r in rows for key, value in r.items() if key.startswith("eval/") and key.endswith("/chance")}
    if curves := _curves(rows, ("acc", "text_acc")):
        _chart(out / "eval.png", curves, "accuracy", "evaluation", chance, ylim=(0, 1))
        written.append("eval.png")
    if curves := _curves(rows, ("ppl",)):
        _chart(out / "ppl.png", curves, "perplexity", "held-out perplexity", yscale="log")
        written.append("ppl.png")
    return written


def _cell(summary: dict[str, float], key: str, pct: bool = True) -> str:
    if key not in summary:
        return "-"
    return f"{100 * summary[key]:.1f}%" if pct else f"{summary[key]:.3f}"


def report(results: dict[str, dict], step: int, checkpoint: Path | None, plots: list[str]) -> str:
    """report.md: one table row per eval set, then the plots."""
    lines = [f"# Evaluation at step {step}", "", f"checkpoint `{checkpoint}`", "",
             "| set | kind | items | acc | acc_norm | text acc | text acc_norm | chance | gap KL(s‖w) | gap KL(w‖s) "
             "| gap JS | text-only KL(s‖w) | ppl | text ppl |", "|---" * 14 + "|"]
    for name, r in results.items():
        s = r["summary"]
        cell = partial(_cell, s)
        lines.append(f"| {name} | {r['kind']} | {int(s['items'])} | {cell('acc')} | {cell('acc_norm')} | "
                     f"{cell('text_acc')} | {cell('text_acc_norm')} | {cell('chance')} | "
                     f"{cell('gap_spoken_written', False)} | {cell('gap_written_spoken', False)} | "
                     f"{cell('gap_js', False)} | {cell('gap_text_spoken_written', False)} | {cell('ppl', False)} | "
                     f"{cell('text_ppl', False)} |")
    lines += [""] + [f"![{p.removesuffix('.png')}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def evaluate_run(target: Path, plan_path: Path | None = None, device: str = "cpu") -> tuple[Path, dict]:
    """`mixc eval`: the run's checkpoint scored on its plan's eval sets; writes eval.json, report.md
    and the plots into the run folder. Returns the folder and the results."""
    from runtime.model import build_model
    from runtime.train import read_checked_plan

    found = locate_run(target, plan_path)
    plan = read_checked_plan(found.plan_path)
    if not plan.eval.sets:
        raise DataError(f"{found.plan_path} has no eval sets", "declare them in the spec's eval block and recompile")
    net = build_model(plan)
    step = load_weights(net, found.checkpoint)
    net.to(device).eval()
    results = evaluate(lambda ids: net(ids), plan, found.plan_path.parent, device)
    if dist.get_global_rank() == 0:
        write_run_report(found.run_dir, results, step, found.checkpoint, found.plan_path, plan.ir_hash)
    return found.run_dir, results


def write_run_report(run_dir: Path, results: dict[str, dict], step: int, checkpoint: Path | None, plan_path: Path,
                     ir_hash: str) -> str:
    """eval.json, the plots and report.md in the run folder; returns report.md's text."""
    document = {"step": step, "checkpoint": str(checkpoint), "plan": str(plan_path), "ir_hash": ir_hash,
                "sets": results}
    (run_dir / "eval.json").write_text(json.dumps(document, indent=1) + "\n")
    text = report(results, step, checkpoint, plot_curves(run_dir / "metrics.jsonl", run_dir))
    (run_dir / "report.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> None:
    """`python -m runtime.evaluate RUN`: `mixc eval` in every process Composer's launcher starts
    (`composer -n 2 -m runtime.evaluate RUN`): each scores its share of the items."""
    import argparse

    from runtime.train import leave_dist, resolve_device

    parser = argparse.ArgumentParser(prog="python -m runtime.evaluate", description="Score a run on its eval sets.")
    parser.add_argument("target", help="a run folder of `mixc train`, or a checkpoint .pt")
    parser.add_argument("--plan", help="the compiled plan.json (default: the run's, from its run.json)")
    parser.add_argument("--device", choices=("cpu", "gpu"), help="default: gpu when available")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if dist.get_world_size() > 1:
        dist.initialize_dist(device)
    torch_device = f"cuda:{dist.get_local_rank()}" if device == "gpu" else "cpu"
    evaluate_run(Path(args.target), Path(args.plan) if args.plan else None, torch_device)
    leave_dist()  # not on failure: a rank that raised exits, and the launcher stops the others


if __name__ == "__main__":
    main()
