"""Text tokenizers: trained BPE, a Hugging Face tokenizer.json, a sentencepiece model, tiktoken cl100k."""

import json

import pytest

from mixc.stages.tokenizer import VocabFile, load_codec
from tests.mixc.stages.helpers import run_stage, spec_of

CORPUS = ["the quick brown fox jumps over the lazy dog " * 3, "pack my box with five dozen liquor jugs " * 3] * 40

BASE = """
source s : text {{ files = "d/*.jsonl" }}
tokenizer text : {tok}
mixture {{ 100% s }}
budget {{ steps = 1 }}
"""


@pytest.fixture
def corpus(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in CORPUS))
    return tmp_path


def test_trained_bpe_has_eos_and_pad_and_round_trips(corpus):
    spec = spec_of(corpus, BASE.format(tok="bpe { vocab = 300 }"))
    read, _ = run_stage(corpus, spec, "read:s", {})
    out, stats = run_stage(corpus, spec, "train_bpe:text", {"read:s": read})
    vocab = VocabFile.read(out)
    assert (vocab.kind, vocab.eos, vocab.pad) == ("hf", 0, 1) and vocab.size <= 300
    codec = load_codec(out)
    ids = codec.encode_batch(["the lazy dog"])[0]
    assert codec.tok.decode(ids) == "the lazy dog"
    assert stats.counts["vocab"] == vocab.size


def test_hf_tokenizer_file_without_eos_gets_new_ids(corpus):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
    tok.save(str(corpus / "words.json"))
    spec = spec_of(corpus, BASE.format(tok='file { path = "words.json" }'))
    out, _ = run_stage(corpus, spec, "load_text_tokenizer:text", {})
    vocab = VocabFile.read(out)
    size = tok.get_vocab_size()
    assert (vocab.eos, vocab.pad, vocab.size) == (size, size + 1, size + 2)


def test_sentencepiece_model_file(corpus):
    import sentencepiece
    (corpus / "train.txt").write_text("\n".join(CORPUS))
    sentencepiece.SentencePieceTrainer.train(input=str(corpus / "train.txt"), model_prefix=str(corpus / "sp"),
                                             vocab_size=60, model_type="bpe", minloglevel=2)
    spec = spec_of(corpus, BASE.format(tok='file { path = "sp.model" }'))
    out, _ = run_stage(corpus, spec, "load_text_tokenizer:text", {})
    vocab = VocabFile.read(out)
    assert vocab.kind == "sentencepiece" and vocab.eos == 2 and vocab.size == 61  # pad added after the pieces
    assert load_codec(out).encode_batch(["the fox"])[0]


def test_tiktoken_cl100k_offline(corpus):
    spec = spec_of(corpus, BASE.format(tok="tiktoken { encoding = cl100k }"))
    out, _ = run_stage(corpus, spec, "load_text_tokenizer:text", {})
    vocab = VocabFile.read(out)
    assert (vocab.kind, vocab.eos, vocab.size) == ("tiktoken", 100257, 100278)
    assert load_codec(out).encode_batch(["hello world"]) == [[15339, 1917]]
