"""How mixc's process pools compare: mixc's pool today (`mixc.stages.base.process_pool`, a spawn
`ProcessPoolExecutor`), the `multiprocessing.Pool` pattern it replaced, and a `torchdata.nodes`
pipeline (torchdata 0.11, no longer a mixc dependency), on two workloads shaped like mixc's:

- tokenize: as `mixc.stages.tokens.TokenizeStage`: documents read from a parquet file in batches of
  256, encoded by a Hugging Face byte-level BPE (trained here, 8K ids) in `--workers` spawned processes
  that each load the tokenizer once, and written IN ORDER to a token stream (tokens.u32, offsets, doc
  ids). The pools map over windows of 4 * workers batches (bounded read-ahead):
    tok-executor      `process_pool(workers, init, args)` + `pool.map(_encode, window)` (mixc today);
    tok-pool          `Pool(spawn, initializer).map(_encode, window)` (the previous pattern);
    tok-nodes         `ParallelMapper(IterableWrapper(batches), method="process", spawn, in_order=True)`,
                      the tokenizer loaded on a worker's first batch (ParallelMapper has no initializer);
    tok-nodes-thread  the same with method="thread" (one tokenizer shared by threads, no processes).
  Run at 1x and 2x the corpus (`--mb`): cost should grow linearly. The outputs must be byte-identical.
- items: as `mixc.stages.items.ItemStage.build_all`: `--items` recordings (30 s of 16 kHz noise, .npy);
  each worker loads a "model" once, on its first task (imports torch, builds a small conv net), then
  per recording runs it and writes a result file:
    items-executor    `process_pool(...)` + `pool.map(_task, tasks)` (mixc's `_runner` today);
    items-pool        `Pool(spawn, initializer).imap` (the previous pattern);
    items-nodes       `ParallelMapper(..., in_order=False)`.
- failures, each in a fresh process with a watchdog (`--hang-limit`), for all three: one item raises
  an exception shaped like mixc's StageError (message, hint, field; pickled by `__reduce__`), and one
  item's worker dies (`os._exit`, as a segfault or the OOM killer would): is the error surfaced, as
  what (mixc's pool should end with `mixc.errors.WorkerError`), how fast, are hint and field kept, do
  workers linger, does it hang?

Every measurement runs in a fresh subprocess (so peak RSS is its own), interleaved, best of
`--repeat`. Each of them imports mixc's pool module before its clock starts, whatever its row, as
mixc's own process has it loaded (~0.4 s, ~95 MB); the worker functions are this script's, the same
in every row, so only the pool differs (mixc's real workers also import mixc). Wall times include
importing torchdata (nodes rows), starting and initialising the workers, and shutting them down.
`main RSS` is the measuring process's peak (ru_maxrss); `all RSS` is the peak of main + workers and
`cpu s` their user + system seconds, sampled every 20 ms with psutil when it is installed (a sum of
RSS counts shared library pages once per process, so it overstates memory when workers import torch:
one such worker is ~580 MB RSS, ~270 MB USS). Ratios are X / executor (the baseline, mixc's pool
today; above 1: X is slower / bigger).

torchdata is not in mixc's environment; uv adds it for the run, in an ephemeral layer:

    cd /work/main && uv run --with torchdata==0.11.0 python benchmarks/pool_vs_torchdata.py \
        [--mb 24] [--items 24] [--workers 2] [--repeat 3] [--hang-limit 20] [--keep DIR] [--json]

It always exits 0; it is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib.util
import itertools
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from importlib.metadata import version
from multiprocessing import active_children, get_context
from pathlib import Path

import numpy as np

BATCH_DOCS = 256  # Tokenize.batch_docs
READ_BATCH = 4096  # mixc.stages.text.BATCH
SR, SECONDS = 16_000, 30


# ------------------------------------------------------------------------------ measuring


class Peak:
    """Samples RSS and CPU seconds of this process's descendants (psutil, when installed)."""

    def __init__(self):
        try:
            import psutil
        except ImportError:
            self.proc = None
            return
        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self.cpu: dict[int, float] = {}  # worker pid -> user + system seconds, last seen
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            total = 0
            try:
                total = self.proc.memory_info().rss
                for child in self.proc.children(recursive=True):
                    try:
                        total += child.memory_info().rss
                        t = child.cpu_times()
                        self.cpu[child.pid] = t.user + t.system
                    except Exception:
                        pass
            except Exception:
                pass
            self.peak = max(self.peak, total)
            self._stop.wait(0.02)

    def stop(self) -> tuple[float | None, float | None]:
        """(peak RSS MB of main + workers, CPU seconds of main + workers)."""
        own = resource.getrusage(resource.RUSAGE_SELF)
        if self.proc is None:
            return None, None
        self._stop.set()
        self._thread.join()
        return self.peak / 2**20, own.ru_utime + own.ru_stime + sum(self.cpu.values())


def _main_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------ corpus / data set-up


def _words(rng: np.random.Generator, n: int) -> np.ndarray:
    onsets = ["", "b", "c", "d", "f", "g", "h", "l", "m", "n", "p", "r", "s", "t", "w", "th", "st", "pr", "ch"]
    vowels = ["a", "e", "i", "o", "u", "ea", "ou", "ai"]
    codas = ["", "", "n", "r", "s", "t", "ng", "ll", "d", "ck"]
    common = ["the", "of", "and", "to", "a", "in", "is", "that", "it", "for", "was", "on", "with", "as", "by",
              "at", "be", "this", "from", "or", "have", "an", "are", "not"]
    out = set()
    while len(out) < n:
        k = rng.integers(1, 4)
        out.add("".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas) for _ in range(k)))
    return np.array(common + sorted(out), dtype=object)


def make_corpus(path: Path, mb: float, seed: int, first_id: int) -> int:
    """~`mb` MB of English-ish documents (Zipfian words, sentences, paragraphs) as docs.parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    rng = np.random.default_rng(seed)
    vocab = _words(np.random.default_rng(0), 6000)
    p = 1.0 / (np.arange(len(vocab)) + 2.7)
    p /= p.sum()
    target, size, texts = int(mb * 2**20), 0, []
    while size < target:
        n_words = 200_000
        idx = rng.choice(len(vocab), size=n_words, p=p)
        words = vocab[idx]
        pos = 0
        while pos < n_words - 2000:
            sentences = []
            for _ in range(int(rng.integers(3, 60))):
                k = int(rng.integers(4, 28))
                s = " ".join(words[pos:pos + k])
                pos += k
                sentences.append(s[:1].upper() + s[1:] + rng.choice([".", ".", ".", "?", "!", ","]))
            text = " ".join(sentences)
            if rng.random() < 0.3:
                text += f" ({int(rng.integers(1, 10**6))}, {rng.random():.3f})"
            texts.append(text)
            size += len(text)
            if size >= target:
                break
    ids = np.arange(first_id, first_id + len(texts), dtype=np.int64)
    pq.write_table(pa.table({"doc_id": ids, "text": texts}), path, row_group_size=16384)
    return len(texts)


def concat_parquet(parts: list[Path], out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.concat_tables([pq.read_table(p) for p in parts]), out, row_group_size=16384)


def train_tokenizer(corpus: Path, out: Path, vocab: int, sample_mb: float) -> None:
    """Byte-level BPE, as mixc's TrainBpe stage builds it."""
    import pyarrow.parquet as pq
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    texts, budget = [], int(sample_mb * 2**20)
    for batch in pq.ParquetFile(corpus).iter_batches(columns=["text"], batch_size=READ_BATCH):
        for t in batch.column(0).to_pylist():
            if budget <= 0:
                break
            texts.append(t)
            budget -= len(t)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|eos|>", "<|pad|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    tok.save(str(out))


def make_recordings(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        np.save(folder / f"rec{i:03d}.npy", (0.1 * rng.standard_normal(SR * SECONDS)).astype(np.float32))


# ------------------------------------------------------------------------------ tokenize workload
# Faithful to mixc.stages.tokens: _init_worker / _encode / _batches / _windows / TokenWriter.

_codec = None


def _tok_init(path: str) -> None:
    global _codec
    from tokenizers import Tokenizer
    _codec = Tokenizer.from_file(path)


def _encode(item: tuple[list[int], list[str]]) -> tuple[list[int], list[np.ndarray]]:
    ids, texts = item
    return ids, [np.asarray(e.ids, dtype=np.uint32) for e in _codec.encode_batch(texts, add_special_tokens=False)]


def _encode_lazy(path: str, item: tuple[list[int], list[str]]) -> tuple[list[int], list[np.ndarray]]:
    """ParallelMapper has no initializer: the tokenizer loads on a worker's first batch."""
    if _codec is None:
        _tok_init(path)
    return _encode(item)


def _batches(path: Path, size: int):
    import pyarrow.parquet as pq
    reader = pq.ParquetFile(path, pre_buffer=False)
    for batch in reader.iter_batches(columns=["doc_id", "text"], batch_size=READ_BATCH):
        ids, texts = batch.column(0).to_pylist(), batch.column(1).to_pylist()
        for i in range(0, len(ids), size):
            yield ids[i:i + size], texts[i:i + size]


def _windows(items, size: int):
    while window := list(itertools.islice(items, size)):
        yield window


class TokenWriter:
    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.offsets, self.doc_ids = folder, [0], []
        self.tokens = open(folder / "tokens.u32", "wb")  # noqa: SIM115 (closed by close(), as mixc's TokenWriter)

    def add(self, doc_id: int, ids: np.ndarray) -> None:
        self.tokens.write(np.asarray(ids, dtype=np.uint32).tobytes())
        self.offsets.append(self.offsets[-1] + len(ids))
        self.doc_ids.append(doc_id)

    def close(self) -> str:
        self.tokens.close()
        np.save(self.folder / "offsets.npy", np.asarray(self.offsets, dtype=np.int64))
        np.save(self.folder / "doc_ids.npy", np.asarray(self.doc_ids, dtype=np.int64))
        return _digest(*(self.folder / n for n in ("tokens.u32", "offsets.npy", "doc_ids.npy")))


def _tokenize_in(pool_of, corpus: Path, tok: Path, out: Path, workers: int, mark) -> str:
    """TokenizeStage.run's loop: `pool.map` over bounded windows of batches, in a pool `pool_of` makes."""
    writer = TokenWriter(out)
    with pool_of(workers, _tok_init, (str(tok),)) as pool:
        for window in _windows(_batches(corpus, BATCH_DOCS), 4 * workers):
            for ids, arrays in pool.map(_encode, window):
                for doc_id, array in zip(ids, arrays, strict=True):
                    writer.add(doc_id, array)
                mark()
    return writer.close()


def tokenize_executor(corpus: Path, tok: Path, out: Path, workers: int, mark) -> str:
    """mixc's TokenizeStage.run today: process_pool (spawn ProcessPoolExecutor) + pool.map over windows."""
    from mixc.stages.base import process_pool
    return _tokenize_in(process_pool, corpus, tok, out, workers, mark)


def tokenize_pool(corpus: Path, tok: Path, out: Path, workers: int, mark) -> str:
    """The previous pattern: spawn multiprocessing.Pool + pool.map over the same windows."""
    return _tokenize_in(get_context("spawn").Pool, corpus, tok, out, workers, mark)


def tokenize_nodes(corpus: Path, tok: Path, out: Path, workers: int, mark, method: str = "process") -> str:
    """The torchdata.nodes replacement: ParallelMapper keeps order and bounds what is in flight."""
    from torchdata.nodes import IterableWrapper, Loader, ParallelMapper
    if method == "thread":
        _tok_init(str(tok))  # one tokenizer, shared by the threads (encode_batch releases the GIL)
        fn = _encode
    else:
        fn = functools.partial(_encode_lazy, str(tok))
    node = ParallelMapper(IterableWrapper(_batches(corpus, BATCH_DOCS)), fn, num_workers=workers, method=method,
                          multiprocessing_context="spawn" if method == "process" else None, in_order=True)
    writer = TokenWriter(out)
    loader = Loader(node)
    for ids, arrays in loader:
        for doc_id, array in zip(ids, arrays, strict=True):
            writer.add(doc_id, array)
        mark()
    del loader, node  # no public close(): workers are stopped and joined from __del__
    return writer.close()


# ------------------------------------------------------------------------------ per-item workload
# Faithful to mixc.stages.items: _init / _task (model loaded lazily on the first task) / build.


class ItemError(Exception):
    """Shaped like mixc.stages.base.StageError: message, hint, field, kept across processes by __reduce__."""

    def __init__(self, message: str, hint: str | None = None, field: tuple[str, ...] = ()):
        super().__init__(message)
        self.hint, self.field = hint, field

    def __reduce__(self):
        return type(self), (str(self), self.hint, self.field)


_worker: dict = {}


def _load_model(threads: int):
    """~1-1.5 s in a fresh process: importing torch dominates, as for mixc's VAD/diarization backends."""
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = torch.nn.Sequential(  # ~0.3 s per 30 s recording on one thread
        torch.nn.Conv1d(1, 64, 400, stride=20), torch.nn.ReLU(),
        torch.nn.Conv1d(64, 256, 5, padding=2), torch.nn.ReLU(),
        torch.nn.Conv1d(256, 256, 5, padding=2), torch.nn.ReLU(),
        torch.nn.Conv1d(256, 256, 5, padding=2), torch.nn.ReLU(),
        torch.nn.Conv1d(256, 2, 1)).eval()
    return net


def _item_init(threads: int, out: str) -> None:
    _worker.clear()
    _worker.update(load=(threads,), out=Path(out))


def _build(model, out: Path, path: str, key: str, fail: str) -> None:
    import torch
    if fail == "raise":
        raise ItemError(f"{Path(path).name}: cannot decode the audio", hint="re-encode it", field=("vad", "model"))
    if fail == "crash":
        os._exit(3)  # as a segfault or the OOM killer would end the worker
    wav = torch.from_numpy(np.load(path))
    with torch.inference_mode():
        logits = model(wav[None, None])[0]
    speech = (logits[1] > logits[0]).float()
    result = {"frames": int(speech.numel()), "speech": round(float(speech.mean()), 6),
              "energy": round(float(logits.square().mean()), 6)}
    tmp = out / f"{key}.json.tmp"
    tmp.write_text(json.dumps(result) + "\n")
    os.replace(tmp, out / f"{key}.json")


def _item_task(task: tuple) -> None:
    if "model" not in _worker:
        _worker["model"] = _load_model(*_worker["load"])
    _build(_worker["model"], _worker["out"], *task)


def _item_nodes_task(init_args: tuple, task: tuple) -> None:
    """ParallelMapper has no initializer: the worker's state is set up on its first task."""
    if not _worker:
        _item_init(*init_args)
    _item_task(task)


def items_executor(tasks: list[tuple], out: Path, workers: int, mark) -> None:
    """mixc's _runner + build_all today: process_pool (spawn ProcessPoolExecutor) + pool.map."""
    from mixc.stages.base import process_pool
    with process_pool(workers, _item_init, (1, str(out))) as pool:
        for _ in pool.map(_item_task, tasks):
            mark()


def items_pool(tasks: list[tuple], out: Path, workers: int, mark) -> None:
    """The previous pattern: spawn multiprocessing.Pool + imap."""
    with get_context("spawn").Pool(workers, _item_init, (1, str(out))) as pool:
        for _ in pool.imap(_item_task, tasks):
            mark()


def items_nodes(tasks: list[tuple], out: Path, workers: int, mark) -> None:
    from torchdata.nodes import IterableWrapper, Loader, ParallelMapper
    node = ParallelMapper(IterableWrapper(tasks), functools.partial(_item_nodes_task, (1, str(out))),
                          num_workers=workers, method="process", multiprocessing_context="spawn", in_order=False)
    loader = Loader(node)
    for _ in loader:
        mark()
    del loader, node


# ------------------------------------------------------------------------------ one measurement (child)


TOKENIZE = {"tok-executor": tokenize_executor, "tok-pool": tokenize_pool, "tok-nodes": tokenize_nodes,
            "tok-nodes-thread": functools.partial(tokenize_nodes, method="thread")}
ITEMS = {"items-executor": items_executor, "items-pool": items_pool, "items-nodes": items_nodes}


def child(args) -> dict:
    import mixc.stages.base  # noqa: F401 (in every row, before the clock: mixc's own process has it loaded)
    peak = Peak()
    d = Path(args.dir)
    t0 = time.perf_counter()
    marks: list[float] = []
    mark = lambda: marks.append(time.perf_counter() - t0)  # noqa: E731
    res: dict = {}
    if args.child.startswith("tok-"):
        out = d / f"out-{args.child}-{args.tag}"
        shutil.rmtree(out, ignore_errors=True)
        corpus = d / f"docs-{args.tag}.parquet"
        res["digest"] = TOKENIZE[args.child](corpus, d / "tokenizer.json", out, args.workers, mark)
        shutil.rmtree(out, ignore_errors=True)
        import pyarrow.parquet as pq
        res["units"] = pq.ParquetFile(corpus).metadata.num_rows
    else:
        kind, _, mode = args.child.partition(":")  # items-executor[:raise|:crash]
        out = d / f"items-{kind}-{mode or 'ok'}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        recs = sorted((d / "recordings").glob("*.npy"))
        tasks = [(str(p), p.stem, mode if (mode and i == 5) else "") for i, p in enumerate(recs)]
        run = ITEMS[kind]
        res["units"] = len(tasks)
        if not mode:
            run(tasks, out, args.workers, mark)
            res["digest"] = _digest(*sorted(out.glob("*.json")))
        else:
            try:
                run(tasks, out, args.workers, mark)
                res["error"] = None
            except BaseException as exc:  # noqa: BLE001
                res["error_at_s"] = round(time.perf_counter() - t0, 2)
                res["error"] = type(exc).__name__
                res["hint"] = getattr(exc, "hint", None)
                res["hint_kept"] = getattr(exc, "hint", None) == "re-encode it"
                res["field_kept"] = getattr(exc, "field", None) == ("vad", "model")
                res["message_first_line"] = str(exc).splitlines()[0] if str(exc) else ""
                res["message_chars"] = len(str(exc))
                res["workers_alive_in_except"] = len(active_children())
                res["files_at_error"] = len(list(out.glob("*.json")))
            import gc
            gc.collect()
            time.sleep(2)
            res["workers_alive_2s_later"] = len(active_children())
            res["files_2s_later"] = len(list(out.glob("*.json")))
        shutil.rmtree(out, ignore_errors=True)
    res["wall_s"] = time.perf_counter() - t0
    res["first_s"] = marks[0] if marks else None
    res["main_rss_mb"] = _main_rss_mb()
    res["all_rss_mb"], res["cpu_s"] = peak.stop()
    return res


def spawn_child(script: Path, kind: str, d: Path, workers: int, tag: str = "", limit: float = 300) -> dict:
    cmd = [sys.executable, str(script), "--child", kind, "--dir", str(d), "--workers", str(workers), "--tag", tag]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    start = time.perf_counter()
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the child and its workers
        proc.communicate()
        return {"hung": True, "killed_after_s": round(time.perf_counter() - start, 1)}
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        return {"failed": proc.returncode, "stderr": err[-2000:]}
    res = json.loads(lines[-1])
    res["process_s"] = time.perf_counter() - start
    return res


# ------------------------------------------------------------------------------ driver


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=24, help="corpus size at 1x (2x is also run)")
    ap.add_argument("--items", type=int, default=24, help="recordings for the per-item workload")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="best of N for the timed rows")
    ap.add_argument("--hang-limit", type=float, default=20, help="seconds before a failure case counts as hung")
    ap.add_argument("--keep", help="work folder to keep (default: a temporary one)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--tag", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    if importlib.util.find_spec("torchdata") is None:
        print("torchdata is not installed (it is no dependency of mixc); run with uv adding it:\n"
              "    cd /work/main && uv run --with torchdata==0.11.0 python benchmarks/pool_vs_torchdata.py")
        return
    from mixc.stages.base import process_pool
    print(f"python {sys.version.split()[0]}, torchdata {version('torchdata')}, torch {version('torch')}, "
          f"{os.cpu_count()} CPUs, {args.workers} workers, mixc's pool: {process_pool.__module__}.process_pool, "
          f"load average at the start {_load()}", flush=True)
    d = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="pool_vs_torchdata-"))
    d.mkdir(parents=True, exist_ok=True)
    script = Path(__file__).resolve()
    t = time.perf_counter()
    n1 = make_corpus(d / "docs-a.parquet", args.mb, seed=1, first_id=0)
    make_corpus(d / "docs-b.parquet", args.mb, seed=2, first_id=n1)
    shutil.copyfile(d / "docs-a.parquet", d / "docs-1x.parquet")
    concat_parquet([d / "docs-a.parquet", d / "docs-b.parquet"], d / "docs-2x.parquet")
    train_tokenizer(d / "docs-1x.parquet", d / "tokenizer.json", 8192, sample_mb=min(args.mb, 8))
    make_recordings(d / "recordings", args.items)
    print(f"set-up {time.perf_counter() - t:.1f}s in {d}: corpus 1x {n1} docs (~{args.mb:g} MB), 2x, "
          f"tokenizer 8K, {args.items} recordings of {SECONDS}s", flush=True)

    report: dict = {"tokenize": {}, "items": {}, "failures": {}}

    # interleave methods and sizes so that drift in the machine's load hits all alike; keep the fastest
    runs: dict[tuple, list] = {}
    for _ in range(args.repeat):
        for tag in ("1x", "2x"):
            for kind in TOKENIZE:
                runs.setdefault(("tokenize", f"{kind}/{tag}"), []).append(spawn_child(script, kind, d, args.workers,
                                                                                      tag))
        for kind in ITEMS:
            runs.setdefault(("items", kind), []).append(spawn_child(script, kind, d, args.workers))
    for (section, key), rs in runs.items():
        ok = [r for r in rs if "wall_s" in r]
        b = min(ok, key=lambda r: r["wall_s"]) if ok else rs[-1]
        b["walls"] = [round(r["wall_s"], 2) for r in ok]
        report[section][key] = b
    for mode in ("raise", "crash"):
        for kind in ITEMS:
            report["failures"][f"{kind}:{mode}"] = spawn_child(script, f"{kind}:{mode}", d, args.workers,
                                                               limit=args.hang_limit)

    if args.json:
        print(json.dumps(report, indent=2))
    print_report(report, args)
    print(f"\nload average at the end {_load()}")
    if not args.keep:
        shutil.rmtree(d, ignore_errors=True)


def _load() -> str:
    return "{:.2f} / {:.2f} / {:.2f} (1 / 5 / 15 min)".format(*os.getloadavg())


def _fmt(x, spec=".2f") -> str:
    return "-" if x is None else format(x, spec)


def _ratio(a: dict, b: dict, key: str) -> str:
    return f"{a[key] / b[key]:.2f}" if a.get(key) and b.get(key) else "-"


def print_ratios(rows: dict, base: str, others: list[str], suffix: str = "") -> None:
    """X / base for wall time, CPU seconds, main and all RSS; previous pattern and nodes against today's pool."""
    b = rows.get(base + suffix, {})
    for kind in others:
        a = rows.get(kind + suffix, {})
        if "wall_s" in a and "wall_s" in b:
            print(f"ratio {kind} / {base}{suffix.replace('/', ', ')}: time {_ratio(a, b, 'wall_s')}, "
                  f"cpu {_ratio(a, b, 'cpu_s')}, main RSS {_ratio(a, b, 'main_rss_mb')}, "
                  f"all RSS {_ratio(a, b, 'all_rss_mb')}")


def print_report(report: dict, args) -> None:
    print("\ntokenize (ordered output; docs/s over the whole run incl. start-up and shutdown)")
    print(f"{'method':<22}{'data':>5}{'docs':>9}{'wall s':>8}{'docs/s':>9}{'cpu s':>7}{'1st batch s':>12}"
          f"{'main RSS MB':>12}{'all RSS MB':>11}  digest            walls of all runs")
    tk, digests = report["tokenize"], {}
    for tag in ("1x", "2x"):
        for kind in TOKENIZE:
            r = tk.get(f"{kind}/{tag}", {})
            if "wall_s" not in r:
                print(f"{kind:<22}{tag:>5}  FAILED {r}")
                continue
            digests.setdefault(tag, set()).add(r["digest"])
            print(f"{kind:<22}{tag:>5}{r['units']:>9}{r['wall_s']:>8.2f}{r['units'] / r['wall_s']:>9.0f}"
                  f"{_fmt(r['cpu_s'], '.1f'):>7}{_fmt(r['first_s']):>12}{r['main_rss_mb']:>12.0f}"
                  f"{_fmt(r['all_rss_mb'], '.0f'):>11}  {r['digest']}  {r['walls']}")
    for tag, ds in digests.items():
        print(f"outputs {tag}: {'byte-identical across methods' if len(ds) == 1 else 'DIFFER: ' + str(ds)}")
    for tag in ("1x", "2x"):
        print_ratios(tk, "tok-executor", list(TOKENIZE)[1:], f"/{tag}")
    for kind in TOKENIZE:
        a, b = tk.get(f"{kind}/2x", {}), tk.get(f"{kind}/1x", {})
        if "wall_s" in a and "wall_s" in b:
            extra = a["wall_s"] - b["wall_s"]
            marginal = f"{(a['units'] - b['units']) / extra:.0f}" if extra > 0 else "-"
            print(f"scaling {kind}: 2x / 1x wall = {a['wall_s'] / b['wall_s']:.2f} (linear, no fixed cost: 2.00), "
                  f"cpu = {_ratio(a, b, 'cpu_s')}, marginal {marginal} docs/s (the second 1x), "
                  f"main RSS 2x / 1x = {a['main_rss_mb'] / b['main_rss_mb']:.2f} (flat: 1.00)")

    print("\nper-item (completion order free; wall incl. spawning workers and loading the model in each)")
    print(f"{'method':<16}{'items':>6}{'wall s':>8}{'items/s':>9}{'cpu s':>7}{'1st item s':>11}{'main RSS MB':>12}"
          f"{'all RSS MB':>11}  digest            walls of all runs")
    it = report["items"]
    for kind in ITEMS:
        r = it.get(kind, {})
        if "wall_s" not in r:
            print(f"{kind:<16}  FAILED {r}")
            continue
        print(f"{kind:<16}{r['units']:>6}{r['wall_s']:>8.2f}{r['units'] / r['wall_s']:>9.2f}"
              f"{_fmt(r['cpu_s'], '.1f'):>7}{_fmt(r['first_s']):>11}"
              f"{r['main_rss_mb']:>12.0f}{_fmt(r['all_rss_mb'], '.0f'):>11}  {r['digest']}  {r['walls']}")
    ds = {r["digest"] for r in it.values() if "digest" in r}
    print(f"results {'byte-identical across methods' if len(ds) == 1 else 'DIFFER: ' + str(ds)}")
    print_ratios(it, "items-executor", list(ITEMS)[1:])

    print(f"\nfailures (item 5 of {args.items} raises ItemError(message, hint, field) / its worker calls os._exit; "
          f"a run still going after {args.hang_limit:g}s counts as hung)")
    for key, r in report["failures"].items():
        if r.get("hung"):
            print(f"{key:<22} HUNG: no error, no exit; killed after {r['killed_after_s']}s")
        elif "failed" in r:
            print(f"{key:<22} child failed rc={r['failed']}: {r['stderr'][-300:]}")
        elif r.get("error") is None:
            print(f"{key:<22} no error surfaced; run finished in {r['wall_s']:.1f}s")
        else:
            kept = (f"hint kept {r['hint_kept']}, field kept {r['field_kept']}" if key.endswith(":raise")
                    else f"hint {r['hint']!r}")
            print(f"{key:<22} {r['error']} after {r['error_at_s']}s; {kept}; message ({r['message_chars']} chars) "
                  f"starts {r['message_first_line'][:80]!r}; workers alive in except: "
                  f"{r['workers_alive_in_except']}, 2 s after: {r['workers_alive_2s_later']}; results written at "
                  f"error {r['files_at_error']}, 2 s later {r['files_2s_later']}")


if __name__ == "__main__":
    main()
