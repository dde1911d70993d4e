"""Packing: documents + EOS cut into seq_len sequences; masks, boundaries, lineage, remainder."""


import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mixc.plan.vocab import TextVocab
from mixc.stages.pack import PackedSequences
from mixc.stages.tokenizer import VocabFile
from mixc.stages.tokens import TokenWriter
from tests.mixc.stages.helpers import run_stage, spec_of

EOS, PAD = 0, 1
SPEC = """
source s : text {{ files = "d/*.jsonl" }}
pack {{ seq_len = {seq_len}  remainder = {remainder} }}
mixture {{ 100% s }}
budget {{ steps = 1 }}
"""


def token_stream(folder, docs, masks=None):
    folder.mkdir()
    (folder.parent / "vocab").mkdir(exist_ok=True)
    VocabFile.write(folder.parent / "vocab", TextVocab("hf", 50, EOS, PAD))
    writer = TokenWriter(folder, vocab_from=folder.parent / "vocab", with_mask=masks is not None)
    for i, doc in enumerate(docs):
        writer.add(100 + i, np.asarray(doc, np.uint32), None if masks is None else np.asarray(masks[i], np.uint8))
    writer.close()


def pack(tmp_path, docs, seq_len, remainder="drop", masks=None):
    spec = spec_of(tmp_path, SPEC.format(seq_len=seq_len, remainder=remainder))
    token_stream(tmp_path / "tok", docs, masks)
    out, stats = run_stage(tmp_path, spec, "pack:s", {"tokenize:s": tmp_path / "tok"})
    packed = PackedSequences.open(out)
    assert packed.seq_len == seq_len
    rows = range(packed.count)
    return (packed.tokens(0, packed.count), packed.masks(0, packed.count),
            [packed.boundaries_of(i).tolist() for i in rows], [packed.lineage_of(i).tolist() for i in rows], stats)


def test_documents_are_joined_with_eos_and_split_across_sequences(tmp_path):
    seqs, mask, bounds, lineage, stats = pack(tmp_path, [[5, 6, 7], [8, 9], [10, 11, 12, 13]], seq_len=4)
    assert seqs.tolist() == [[5, 6, 7, EOS], [8, 9, EOS, 10], [11, 12, 13, EOS]]
    assert bounds == [[0], [0, 3], [0]]  # 0 always; then documents starting inside
    assert lineage == [[100], [101, 102], [102]]
    assert mask.all() and stats.dropped == {}
    assert (stats.items_in, stats.items_out, stats.counts["tokens"]) == (3, 3, 12)


def test_remainder_is_dropped_or_padded_with_pad_never_a_target(tmp_path):
    docs = [[5, 6, 7, 8, 9]]  # 6 tokens with EOS
    for sub in ("drop", "pad"):
        (tmp_path / sub).mkdir()
    seqs, _, _, _, stats = pack(tmp_path / "drop", docs, seq_len=4)
    assert seqs.tolist() == [[5, 6, 7, 8]] and stats.dropped == {"remainder tokens": 2}
    seqs, mask, bounds, lineage, stats = pack(tmp_path / "pad", docs, 4, "pad")
    assert seqs.tolist() == [[5, 6, 7, 8], [9, EOS, PAD, PAD]]
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert bounds[1] == [0] and lineage[1] == [100] and stats.counts["pad_tokens"] == 2


def test_token_masks_travel_with_their_tokens(tmp_path):
    seqs, mask, _, _, _ = pack(tmp_path, [[5, 6, 7], [8]], seq_len=3, masks=[[0, 1, 0], [1]])
    assert seqs.tolist() == [[5, 6, 7], [EOS, 8, EOS]]
    assert mask.tolist() == [[0, 1, 0], [1, 1, 1]]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.integers(2, 49), min_size=0, max_size=30), min_size=1, max_size=25),
       st.integers(1, 17))
def test_packing_preserves_every_token_in_order(tmp_path_factory, docs, seq_len):
    root = tmp_path_factory.mktemp("prop")
    seqs, _, bounds, lineage, stats = pack(root, docs, seq_len)
    stream = [t for d in docs for t in d + [EOS]]
    full = len(stream) // seq_len * seq_len
    assert seqs.reshape(-1).tolist() == stream[:full]
    assert stats.dropped.get("remainder tokens", 0) == len(stream) - full
    starts = np.cumsum([0] + [len(d) + 1 for d in docs])[:-1]
    for i, (b, lin) in enumerate(zip(bounds, lineage)):
        lo, hi = i * seq_len, (i + 1) * seq_len
        assert b == [0] + [int(s - lo) for s in starts if lo < s < hi]
        ends = starts + np.array([len(d) + 1 for d in docs])
        assert lin == [100 + j for j in range(len(docs)) if starts[j] < hi and ends[j] > lo]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.lists(st.integers(2, 49), min_size=1, max_size=6), min_size=1, max_size=5),
                min_size=1, max_size=8), st.integers(1, 13))
def test_lineage_units_are_every_chunk_a_sequence_holds(tmp_path_factory, docs, seq_len):
    """Speech documents are runs of chunks: lineage lists the chunks (units), not the documents."""
    root = tmp_path_factory.mktemp("units")
    flat_docs = [[t for chunk in doc for t in chunk] for doc in docs]
    spec = spec_of(root, SPEC.format(seq_len=seq_len, remainder="drop"))
    token_stream(root / "tok", flat_docs)
    unit_starts, unit_ids, spans, at, pos, uid = [], [], [], 0, 0, 1000
    for doc in docs:
        for chunk in doc:
            unit_starts.append(at)
            unit_ids.append(uid)
            spans.append((pos, pos + len(chunk), uid))  # its place once EOS follows each document
            at, pos, uid = at + len(chunk), pos + len(chunk), uid + 1
        pos += 1
    np.save(root / "tok" / "units.npy", np.asarray(unit_starts, np.int64))
    np.save(root / "tok" / "unit_ids.npy", np.asarray(unit_ids, np.int64))
    out, _ = run_stage(root, spec, "pack:s", {"tokenize:s": root / "tok"})
    flat, idx = np.load(out / "lineage.npy"), np.load(out / "lineage_idx.npy")
    for i in range(len(idx) - 1):
        lo, hi = i * seq_len, (i + 1) * seq_len
        # a chunk reaches until the next chunk starts (the EOS after a document belongs to its last chunk)
        ends = [s for s, _, _ in spans[1:]] + [10 ** 9]
        want = [u for (s, _, u), e in zip(spans, ends) if s < hi and e > lo]
        assert flat[idx[i]:idx[i + 1]].tolist() == want


HELDOUT_SPEC = SPEC + "eval {{ heldout = {share}% }}\n"


def chunked_stream(folder, docs, ids):
    """A token stream whose documents (ids `ids`) are runs of chunks, each chunk a lineage unit."""
    token_stream(folder, [[t for chunk in doc for t in chunk] for doc in docs])
    np.save(folder / "doc_ids.npy", np.asarray(ids, np.int64))
    sizes = [len(chunk) for doc in docs for chunk in doc]
    np.save(folder / "units.npy", np.cumsum([0] + sizes)[:-1].astype(np.int64))
    np.save(folder / "unit_ids.npy", np.asarray([1000 * d + k for d, doc in zip(ids, docs) for k in range(len(doc))],
                                                np.int64))


def packed_rows(folder):
    packed = PackedSequences.open(folder)
    rows = range(packed.count)
    return (packed.tokens(0, packed.count).tolist(), packed.masks(0, packed.count).tolist(),
            [packed.boundaries_of(i).tolist() for i in rows], [packed.lineage_of(i).tolist() for i in rows])


@settings(max_examples=20, deadline=None)
@given(st.lists(st.lists(st.lists(st.integers(2, 49), min_size=1, max_size=5), min_size=1, max_size=4),
                min_size=2, max_size=12), st.integers(1, 11), st.sampled_from([10, 30, 50]))
def test_held_out_documents_are_packed_apart_exactly_as_if_alone(tmp_path_factory, docs, seq_len, share):
    """Holding documents out = packing the kept ones alone for training and the held ones alone
    (padded) for evaluation: tokens, masks, boundaries and chunk lineage."""
    from mixc.stages.pack import HELDOUT, held_out

    root = tmp_path_factory.mktemp("held")
    ids = list(range(100, 100 + len(docs)))
    spec = spec_of(root, HELDOUT_SPEC.format(seq_len=seq_len, remainder="drop", share=share))
    chunked_stream(root / "tok", docs, ids)
    out, stats = run_stage(root, spec, "pack:s", {"tokenize:s": root / "tok"})
    held = held_out(np.asarray(ids), share / 100, 0, "s")
    assert held.any() and stats.counts["heldout_documents"] == held.sum()
    for name, chosen, remainder in (("kept", ~held, "drop"), ("held", held, "pad")):
        alone = tmp_path_factory.mktemp(name)
        part = [d for d, c in zip(docs, chosen) if c]
        if not part:
            continue
        chunked_stream(alone / "tok", part, [i for i, c in zip(ids, chosen) if c])
        want, _ = run_stage(alone, spec_of(alone, SPEC.format(seq_len=seq_len, remainder=remainder)), "pack:s",
                            {"tokenize:s": alone / "tok"})
        assert packed_rows(out / HELDOUT if name == "held" else out) == packed_rows(want)


def test_the_held_out_choice_is_seeded_per_stream_and_keeps_every_pass_of_a_document_together():
    from mixc.stages.pack import held_out

    ids = np.repeat(np.arange(2000), 2)  # two draws of each document
    held = held_out(ids, 0.1, 7, "web")
    assert 0.08 < held.mean() < 0.12
    assert (held[0::2] == held[1::2]).all()
    assert (held == held_out(ids, 0.1, 7, "web")).all()
    assert (held != held_out(ids, 0.1, 8, "web")).any() and (held != held_out(ids, 0.1, 7, "books")).any()
    assert held_out(np.arange(3), 0.001, 0, "tiny").sum() == 1  # at least one document
