"""Topic coverage: every training stream's text, and the eval sets' questions, over the 24 topics of
the WebOrganizer taxonomy (Wettig et al., 2025), so that a mixture's topics can be compared with what
it is evaluated on.

The topic names are WebOrganizer's; the one-line descriptions and keyword lists are mixc's own. Two
zero-shot backends label a text unit (a document, a recording's transcript, a generated item, an
eval question with its answer):

- `lexical` (the default, no model): each topic's keywords counted in the unit's words (lower case,
  punctuation removed), divided by the square root of the topic's keyword count; the best topic
  wins, ties to the first; a unit with no keyword is `unassigned`. Crude, deterministic, offline.
- `embedding`: a local sentence-embedding model folder (a BERT-style encoder with its tokenizer, such
  as sentence-transformers/all-MiniLM-L6-v2 downloaded with `hf download`): mean-pooled, normalised
  embeddings of the unit's first 256 tokens and of each topic's "name: description"; the most cosine-
  similar topic wins.
- `classifier`: WebOrganizer's trained topic classifier (or any 24-label sequence classifier) from a
  local folder: the most probable label of the unit's first 512 tokens.

At most `sample` units per stream are labelled: those with the smallest hash of (stage, unit id), the
same units on every compile. Artifact (`TopicCoverage`): `topics.parquet` (stream, topic, units,
share), `topics.json` (per stream: units labelled, and the Jensen-Shannon distance of its histogram
to the eval sets' pooled histogram), `topics.png` (a bar chart).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from mixc.stages.base import Context, Stage, StageError, Stats
from mixc.stages.contamination import TRAINING_KINDS, training_units, words

UNASSIGNED = "unassigned"
EMBED_TOKENS = 256
# WebOrganizer's 24 topics: name -> (mixc's description, mixc's keywords)
TOPICS: dict[str, tuple[str, str]] = {
    "Adult": ("sexual content and material for adults only", "sex sexual porn nude erotic adult xxx dating"),
    "Art & Design": ("visual arts, design, architecture, photography and crafts",
                     "art artist painting design architecture photography sculpture gallery museum drawing"),
    "Software Development": ("programming, code, software engineering and developer tools",
                             "code programming developer python javascript api function compiler debug github"),
    "Crime & Law": ("crime, police, courts, law and legal matters",
                    "crime police court law legal judge lawyer prison trial criminal"),
    "Education & Jobs": ("schools, universities, learning, careers and employment",
                         "school university student education teacher learning job career employment degree"),
    "Hardware": ("computer and electronic hardware, devices and components",
                 "hardware processor chip device cpu gpu memory laptop electronics circuit"),
    "Entertainment": ("film, television, music, celebrities and popular culture",
                      "movie film music song television show actor singer celebrity album concert"),
    "Social Life": ("relationships, family, friends, parenting and everyday life",
                    "family friend relationship wedding parent children love party marriage kids"),
    "Fashion & Beauty": ("clothing, style, cosmetics and personal appearance",
                         "fashion clothing dress style beauty makeup hair cosmetics wear jewelry"),
    "Finance & Business": ("money, economics, companies, markets and trade",
                           "economy gdp business company market trade finance bank investment industry export"),
    "Food & Dining": ("cooking, recipes, restaurants and food", "food recipe cooking restaurant meal dish eat "
                      "kitchen wine bread"),
    "Games": ("video games, board games and gaming", "game gaming player video console chess puzzle level"),
    "Health": ("medicine, disease, fitness of the body and public health",
               "health disease medical doctor hospital patient treatment vaccine mortality hiv"),
    "History": ("past events, historical periods and heritage", "history war century independence empire "
                "colonial ancient historical kingdom revolution"),
    "Home & Hobbies": ("home, garden, pets, do-it-yourself and hobbies",
                       "home garden house pet dog cat hobby diy furniture gardening"),
    "Industrial": ("manufacturing, energy, mining, agriculture and infrastructure",
                   "oil gas mining energy manufacturing agriculture electricity production industrial crops"),
    "Literature": ("books, writing, poetry and literary works", "book novel author poem poetry writer story "
                   "literature fiction published"),
    "Politics": ("government, elections, political parties and international relations",
                 "government president election political party parliament minister constitution capital vote"),
    "Religion": ("faith, religious practice and spirituality",
                 "religion church god muslim christian catholic islam faith temple prayer"),
    "Science & Tech.": ("science, research, the natural world and technology",
                        "science research climate species scientific technology energy environment study data"),
    "Software": ("software products, apps and how to use them",
                 "software app application windows download install user update version online"),
    "Sports & Fitness": ("sports, athletes, competitions and exercise",
                         "sport football team game player match league olympic athlete fitness"),
    "Transportation": ("roads, railways, airports, shipping and vehicles",
                       "road railway airport port car vehicle transport ship highway airline"),
    "Travel": ("tourism, destinations, geography and travel", "travel tourism tourist visit island coast "
               "country border region located"),
}


def unit_sample(units: Iterable[tuple[str, str]], stage: str, limit: int) -> list[tuple[str, str]]:
    """The `limit` units with the smallest hash of (stage, unit id), in that order: a stable sample,
    taken in one pass that holds `limit` units (a stream's text is never all in memory)."""
    def rank(unit: tuple[str, str]) -> bytes:
        return hashlib.sha256(f"{stage}\x00{unit[0]}".encode()).digest()
    return heapq.nsmallest(limit, units, key=rank)


class Lexical:
    """Keyword counts per topic (see the module docstring)."""

    def __init__(self) -> None:
        self.keywords = {name: set(keys.split()) for name, (_, keys) in TOPICS.items()}

    def label(self, texts: list[str]) -> list[str]:
        out = []
        for text in texts:
            counts = Counter(words(text))
            scores = {n: sum(counts[k] for k in keys) / math.sqrt(len(keys)) for n, keys in self.keywords.items()}
            best = max(scores, key=lambda n: scores[n])
            out.append(best if scores[best] > 0 else UNASSIGNED)
        return out


class Embedding:
    """Cosine similarity of mean-pooled embeddings from a local encoder folder (see the module docstring)."""

    def __init__(self, folder: Path):
        import torch
        from transformers import AutoModel, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            self.model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
        except (OSError, ValueError) as err:
            raise StageError(f"cannot load a sentence-embedding model from {folder} ({err})",
                             "point `model` at a local encoder folder (config.json, tokenizer, weights), e.g. "
                             "`hf download sentence-transformers/all-MiniLM-L6-v2 --local-dir DIR`", ".model") from None
        self.torch = torch
        self.topics = self._embed([f"{name}: {desc}" for name, (desc, _) in TOPICS.items()])

    def _embed(self, texts: list[str]):
        torch = self.torch
        with torch.no_grad():
            batch = self.tokenizer(texts, padding=True, truncation=True, max_length=EMBED_TOKENS, return_tensors="pt")
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1)
            return torch.nn.functional.normalize(pooled, dim=-1)

    def label(self, texts: list[str]) -> list[str]:
        names = list(TOPICS)
        out = []
        for start in range(0, len(texts), 32):
            best = (self._embed(texts[start:start + 32]) @ self.topics.T).argmax(-1).tolist()
            out += [names[i] for i in best]
        return out


class Classifier:
    """A local sequence-classification model whose labels are the 24 topics (WebOrganizer's topic
    classifier, downloaded with `hf download WebOrganizer/TopicClassifier`): the most probable label
    of the unit's first 512 tokens. Labels are matched to the topic names by their text, else by
    their index in WebOrganizer's order (its config names them LABEL_0 ... LABEL_23)."""

    def __init__(self, folder: Path):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                folder, local_files_only=True, trust_remote_code=True).eval()
        except (OSError, ValueError) as err:
            raise StageError(f"cannot load a topic classifier from {folder} ({err})",
                             "point `model` at a local sequence-classification folder, e.g. "
                             "`hf download WebOrganizer/TopicClassifier --local-dir DIR`", ".model") from None
        labels = [str(self.model.config.id2label[i]) for i in range(self.model.config.num_labels)]
        names = list(TOPICS)
        if len(labels) != len(names):
            raise StageError(f"the topic classifier in {folder} has {len(labels)} labels, not the 24 topics",
                             "use WebOrganizer's topic classifier, or the lexical or embedding backend", ".model")
        by_name = {n.lower(): n for n in names}
        self.names = [by_name.get(label.lower(), names[i]) for i, label in enumerate(labels)]
        self.torch = torch

    def label(self, texts: list[str]) -> list[str]:
        out = []
        with self.torch.no_grad():
            for start in range(0, len(texts), 16):
                batch = self.tokenizer(texts[start:start + 16], padding=True, truncation=True, max_length=512,
                                       return_tensors="pt")
                out += [self.names[i] for i in self.model(**batch).logits.argmax(-1).tolist()]
        return out


def histogram(labels: list[str]) -> dict[str, float]:
    counts = Counter(labels)
    return {t: counts[t] / len(labels) for t in [*TOPICS, UNASSIGNED]} if labels else {}


def js_distance(p: dict[str, float], q: dict[str, float]) -> float:
    """The Jensen-Shannon distance (base 2: 0 same, 1 disjoint) between two topic histograms."""
    def kl(a: dict[str, float], m: dict[str, float]) -> float:
        return sum(a[t] * math.log2(a[t] / m[t]) for t in a if a[t] > 0)
    m = {t: (p.get(t, 0.0) + q.get(t, 0.0)) / 2 for t in set(p) | set(q)}
    return math.sqrt(max(0.0, (kl(p, m) + kl(q, m)) / 2))


class TopicsStage(Stage):
    kind, version, doc = "topics", 1, "topic coverage of the streams and the eval sets"
    reads = (".backend", ".model", ".sample")

    def fingerprint(self, ctx: Context, spec) -> dict:
        from mixc.hashing import tree_digest

        model = ctx.read(".model")
        return {"embedder": tree_digest(ctx.root / model)} if ctx.read(".backend") != "lexical" and model else {}

    def run(self, ctx: Context, stats: Stats) -> None:
        from mixc.stages.evalsets import EvalItems

        labeller = self._labeller(ctx)
        sample, hists, units = ctx.read(".sample"), {}, {}
        eval_labels: list[str] = []
        for sid in ctx.node.inputs:
            kind, subject = sid.split(":", 1)
            if kind == "eval_items":
                table = EvalItems.read(ctx.inputs[sid])
                eval_labels += labeller.label([f"{q} {c[a]}" for q, c, a in zip(
                    table["question"].to_list(), table["choices"].to_list(), table["answer"].to_list())])
            elif kind in TRAINING_KINDS:
                chosen = unit_sample(training_units(kind, ctx.inputs[sid]), sid, sample)
                hists[subject], units[subject] = histogram(labeller.label([t for _, t in chosen])), len(chosen)
        evals = histogram(eval_labels)
        rows = [{"stream": s, "topic": t, "share": share} for s, h in hists.items() for t, share in h.items()]
        rows += [{"stream": "(eval sets)", "topic": t, "share": share} for t, share in evals.items()]
        pl.DataFrame(rows, schema={"stream": pl.String, "topic": pl.String, "share": pl.Float64}).write_parquet(
            ctx.out / "topics.parquet", statistics=False)
        summary = {"backend": ctx.read(".backend"), "eval_units": len(eval_labels),
                   "streams": {s: {"units": units[s], "distance_to_eval": js_distance(h, evals) if evals else None}
                               for s, h in hists.items()}}
        (ctx.out / "topics.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
        plot(hists, evals, ctx.out / "topics.png")
        stats.items_in = stats.items_out = sum(units.values()) + len(eval_labels)

    @staticmethod
    def _labeller(ctx: Context) -> Lexical | Embedding | Classifier:
        backend = ctx.read(".backend")
        if backend == "lexical":
            return Lexical()
        model = ctx.read(".model")
        if not model:
            raise StageError(f"the {backend} topic backend needs a model folder", 'set `model = "DIR"`', ".backend")
        return Embedding(ctx.root / model) if backend == "embedding" else Classifier(ctx.root / model)


def plot(hists: dict[str, dict[str, float]], evals: dict[str, float], path: Path) -> None:
    """A grouped horizontal bar chart: each stream's share of every topic, and the eval sets'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {**hists, **({"(eval sets)": evals} if evals else {})}
    topics = [*TOPICS, UNASSIGNED]
    fig, ax = plt.subplots(figsize=(7, 9))
    height = 0.8 / max(len(series), 1)
    for k, (name, hist) in enumerate(sorted(series.items())):
        ax.barh([i + k * height for i in range(len(topics))], [hist.get(t, 0.0) for t in topics], height, label=name)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(topics))], topics, fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel="share of units", title="topic coverage")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


class TopicCoverage:
    """The topics stage's artifact, read back."""

    @staticmethod
    def read(folder: Path) -> tuple[dict, pl.DataFrame]:
        return json.loads((folder / "topics.json").read_text()), pl.read_parquet(folder / "topics.parquet")
