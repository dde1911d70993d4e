"""Interleaving: one modality per chunk, alternation and sampling rules, markers, loss masks, draws."""


import numpy as np
import polars as pl
import pytest

from mixc.ir import Deterministic, Stochastic
from mixc.plan.vocab import TextVocab
from mixc.stages.audio_tokens import AudioCodes
from mixc.stages.interleave import Spans, document, draw_rng, modalities, switches
from mixc.stages.tokenizer import VocabFile
from mixc.stages.tokens import TokenStream
from tests.mixc.stages.helpers import run_stage, spec_of

SPANS = Spans(audio_offset=100, audio=(1100, 1101), text=(1102, 1103))


def test_deterministic_alternates_starting_with_audio():
    for n in range(1, 12):
        audio = modalities(n, Deterministic(), None)
        assert audio.tolist() == [i % 2 == 0 for i in range(n)]
        assert switches(audio) == n - 1


def test_stochastic_frequency_first_chunk_and_switches():
    sampling = Stochastic(p=0.3)
    draws = [modalities(40, sampling, draw_rng(7, f"{doc:032x}", 0)) for doc in range(500)]
    assert all(d[0] for d in draws)  # the first chunk is always audio
    rest = np.concatenate([d[1:] for d in draws])
    assert abs(rest.mean() - 0.3) < 0.02  # 19,500 draws: 3 sigma is ~0.01
    half = [modalities(30, Stochastic(p=0.5), draw_rng(1, f"{doc:032x}", 0)) for doc in range(400)]
    mean_switches = np.mean([switches(d) for d in half])
    assert abs(mean_switches - 29 / 2) < 0.5  # about (n-1)/2 at p = 0.5
    anyfirst = [modalities(5, Stochastic(p=0.5, first="any"), draw_rng(3, f"{d:032x}", 0))[0] for d in range(400)]
    assert 0.4 < np.mean(anyfirst) < 0.6


def test_draws_are_seeded_per_document_and_per_repeat():
    sampling = Stochastic(p=0.5)
    rec = "ab" * 16
    first = modalities(64, sampling, draw_rng(5, rec, 0))
    assert (first == modalities(64, sampling, draw_rng(5, rec, 0))).all()  # reproducible
    assert (first != modalities(64, sampling, draw_rng(5, rec, 1))).any()  # another repeat, another draw
    assert (first != modalities(64, sampling, draw_rng(5, "cd" * 16, 0))).any()  # another document
    assert (first != modalities(64, sampling, draw_rng(6, rec, 0))).any()  # another seed


def test_chunks_are_audio_or_text_never_both_with_markers_and_exact_masks():
    codes = [np.array([1, 2, 3]), np.array([4, 5]), np.array([6])]
    texts = [np.array([10, 11]), np.array([12]), np.array([13, 14, 15])]
    audio = np.array([True, False, True])
    tokens, mask, starts = document(codes, texts, audio, SPANS, "text_only")
    assert tokens.tolist() == [1100, 101, 102, 103, 1101, 1102, 12, 1103, 1100, 106, 1101]
    assert mask.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0]  # audio codes and audio markers masked
    assert starts.tolist() == [0, 5, 8]
    _, mask_all, _ = document(codes, texts, audio, SPANS, "all")
    assert mask_all.all()
    bare = Spans(100, (1100, 1101), None)  # markers = audio
    tokens, _, _ = document(codes, texts, np.array([False, True, False]), bare, "all")
    assert tokens.tolist() == [10, 11, 1100, 104, 105, 1101, 13, 14, 15]


SPEC = """
seed = 11
source web : audio {{ files = "a/*.flac" }}
source t : text {{ files = "t/*.txt" }}
tokenizer text : bpe {{ vocab = 300 }}
tokenizer audio : kmeans {{ codebook = 16 }}
interleave {{
  sampling = {sampling}
  loss = text_only
}}
pack {{ seq_len = 32 }}
mixture {{
  50% web
  50% t
}}
budget {{ tokens = {tokens} }}
"""


def encoded(folder, docs: list[int]):
    """An `encode` artifact: `docs[d]` chunks in document d, chunk c holding c % 3 + 1 codes."""
    folder.mkdir()
    rows, codes, offsets = [], [], [0]
    for doc, n in enumerate(docs):
        for index in range(n):
            chunk = len(rows)
            rows.append({"chunk": chunk, "doc": doc, "rec": f"{doc + 1:032x}", "path": f"a/{doc}.flac",
                         "index": index, "speaker": "S0", "start": float(index), "end": index + 1.0,
                         "text": f"word{chunk} and more"})
            codes += [chunk % 16] * (chunk % 3 + 1)
            offsets.append(len(codes))
    AudioCodes.write(folder, pl.DataFrame(rows), [(np.asarray(codes, np.uint32), np.asarray(offsets, np.int64))],
                     {"codebook_size": 16, "frame_rate": 12.5})


def tokenizer(folder):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    folder.mkdir()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(["word and more " * 50], trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|eos|>", "<|pad|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(folder / "tokenizer.json"))
    VocabFile.write(folder, TextVocab("hf", tok.get_vocab_size(), 0, 1))
    return tok.get_vocab_size()


@pytest.mark.parametrize("sampling,tokens,draws", [("deterministic", 10_000, 1), ("stochastic(0.5)", 10_000, None)])
def test_stage_writes_a_masked_token_stream_with_chunk_lineage(tmp_path, sampling, tokens, draws):
    spec = spec_of(tmp_path, SPEC.format(sampling=sampling, tokens=tokens))
    encoded(tmp_path / "enc", [4, 1, 7])
    text_size = tokenizer(tmp_path / "tok")
    out, stats = run_stage(tmp_path, spec, "interleave:web", {"encode:web": tmp_path / "enc",
                                                              "train_bpe:text": tmp_path / "tok"})
    stream = TokenStream.open(out)
    n_draws = stats.counts["draws"]
    if draws:
        assert n_draws == draws
    else:  # 5,000 tokens wanted; one draw is ~60: the stream gets one draw per pass
        assert n_draws > 50
    assert len(stream.doc_ids) == 3 * n_draws and stream.doc_ids[:3].tolist() == [0, 1, 2]
    assert stream.unit_ids.tolist() == list(range(12)) * n_draws  # lineage: chunk ids
    tokens = np.asarray(stream.tokens)
    for d in range(3):  # every document opens with an audio span, its mask 0 under text_only
        lo = stream.offsets[d]
        assert tokens[lo] == text_size + 16 and stream.mask[lo] == 0  # <audio>: after text ids and 16 codes
    audio_ids = (tokens >= text_size) & (tokens < text_size + 16 + 2)  # codes, <audio>, </audio>
    assert (stream.mask[audio_ids] == 0).all() and (stream.mask[~audio_ids] == 1).all()
    if sampling == "deterministic":
        assert stats.counts["switches_per_document"] == pytest.approx((3 + 0 + 6) / 3)


def test_decontaminate_drops_the_recordings_whose_transcript_overlaps_an_eval_item(tmp_path):
    """Overlaps at or above `decontaminate` words drop the whole recording; shorter ones, and
    another leaf's, do not."""
    from mixc.stages.contamination import DROP_REASON

    text = SPEC.format(sampling="deterministic", tokens=10_000) + \
        'eval {\n  decontaminate = 8\n  set qa : mc { files = "q.jsonl" }\n}\n'
    spec = spec_of(tmp_path, text)
    encoded(tmp_path / "enc", [4, 1, 7])
    tokenizer(tmp_path / "tok")
    found = tmp_path / "contamination"
    found.mkdir()
    (found / "contamination.json").write_text("{}")
    pl.DataFrame({"item": ["q1", "q2", "q3"], "question": ["", "", ""], "stage": ["chunk:web", "chunk:web", "dedup:t"],
                  "unit": [f"{2:032x}", f"{3:032x}", "0"], "longest": [9, 7, 13], "ngram": ["", "", ""]}
                 ).write_parquet(found / "overlaps.parquet")
    out, stats = run_stage(tmp_path, spec, "interleave:web", {"encode:web": tmp_path / "enc",
                                                              "train_bpe:text": tmp_path / "tok",
                                                              "contamination:qa": found})
    assert TokenStream.open(out).doc_ids.tolist() == [0, 2]  # recording 2 (document 1) overlaps at 9 words
    assert stats.dropped == {DROP_REASON: 1}
