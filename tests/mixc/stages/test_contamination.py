"""Contamination: lm-eval's normalisation, and the longest shared n-gram between 6 and 13 words."""

from __future__ import annotations

from mixc.stages.contamination import MAX_N, MIN_N, EvalNgrams, words


def test_words_are_lower_case_without_punctuation():
    assert words("What is the capital of Côte d'Ivoire?  It's Yamoussoukro.") == \
        ["what", "is", "the", "capital", "of", "côte", "divoire", "its", "yamoussoukro"]


def test_the_longest_shared_ngram_from_6_to_13_words():
    eval_items = [words("What is the capital of Algeria? Algiers"),
                  words("Which river flows through the city of Paris and into the English Channel? The Seine"),
                  words("How many legs does a spider have? eight")]
    grams = EvalNgrams(eval_items)
    training = words("FAQ. What is the capital of Algeria? The capital of Algeria is Algiers. Which river flows "
                     "through the city of Paris and into the English Channel? The Seine, of course.")
    found = grams.matches(training)
    assert set(found) == {0, 1}  # the spider question is nowhere
    assert found[0] == (MIN_N, "what is the capital of algeria")  # 6 words; "algiers" does not follow
    assert found[1][0] == MAX_N  # capped at 13 words
    assert found[1][1].split() == eval_items[1][:MAX_N]
    assert grams.matches(words("what is the capital of")) == {}  # 5 words: below the range
