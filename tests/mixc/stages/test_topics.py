"""Topic coverage: the 24 WebOrganizer topics, the lexical labeller, the stable sample, the distance,
and the embedding labeller's loading code on a small randomly initialised encoder folder."""

from __future__ import annotations

import pytest

from mixc.stages.base import StageError
from mixc.stages.topics import (
    TOPICS,
    UNASSIGNED,
    Classifier,
    Embedding,
    Lexical,
    histogram,
    js_distance,
    unit_sample,
)


def test_the_taxonomy_has_webOrganizers_24_topics_with_mixcs_descriptions():
    assert len(TOPICS) == 24 and "Science & Tech." in TOPICS and "Software Development" in TOPICS
    assert all(desc and len(keys.split()) >= 7 for desc, keys in TOPICS.values())


def test_lexical_labels_by_keywords_and_leaves_the_rest_unassigned():
    labels = Lexical().label(["The football team won the league match.", "Bake the bread in a hot kitchen.",
                              "Zzz qqq."])
    assert labels == ["Sports & Fitness", "Food & Dining", UNASSIGNED]


def test_the_sample_is_stable_and_bounded():
    units = [(str(i), f"text {i}") for i in range(100)]
    first = unit_sample(units, "read:a", 10)
    assert len(first) == 10 and first == unit_sample(list(reversed(units)), "read:a", 10)
    assert first != unit_sample(units, "read:b", 10)
    assert sorted(unit_sample(units[:5], "read:a", 10)) == units[:5]


def test_js_distance_is_0_for_the_same_histogram_and_1_for_disjoint_ones():
    a, b = histogram(["Health", "Health", "Travel"]), histogram(["Games"])
    assert js_distance(a, a) == 0.0
    assert js_distance(a, b) == pytest.approx(1.0)
    assert 0 < js_distance(a, histogram(["Health"])) < 1


def small_bert(folder, head: int | None = None) -> None:
    """A randomly initialised BERT with a word-level tokenizer over the topics' words; with `head`
    labels, a sequence classifier."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification, BertModel, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *sorted(
        {w.lower() for _, (desc, keys) in TOPICS.items() for w in (desc + " " + keys).split()})])}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]").save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, num_labels=head or 2)
    (BertForSequenceClassification(config) if head else BertModel(config)).save_pretrained(folder)


def test_classifier_maps_its_labels_to_the_topics_and_refuses_other_label_sets(tmp_path):
    small_bert(tmp_path / "classifier", head=24)  # labels LABEL_0..LABEL_23: WebOrganizer's order
    labeller = Classifier(tmp_path / "classifier")
    assert labeller.names == list(TOPICS)
    labels = labeller.label(["football team league", "bread kitchen recipe"] * 10)
    assert len(labels) == 20 and set(labels) <= set(TOPICS)
    small_bert(tmp_path / "three", head=3)
    with pytest.raises(StageError, match="has 3 labels, not the 24 topics"):
        Classifier(tmp_path / "three")
    with pytest.raises(StageError, match="cannot load a topic classifier"):
        Classifier(tmp_path / "absent")


def test_embedding_labels_with_a_local_encoder_and_names_a_bad_folder(tmp_path):
    small_bert(tmp_path / "encoder")
    labeller = Embedding(tmp_path / "encoder")
    labels = labeller.label(["football team league", "bread kitchen recipe"] * 20)
    assert len(labels) == 40 and set(labels) <= set(TOPICS)
    assert labels == Embedding(tmp_path / "encoder").label(["football team league", "bread kitchen recipe"] * 20)
    with pytest.raises(StageError, match="cannot load a sentence-embedding model"):
        Embedding(tmp_path / "absent")
