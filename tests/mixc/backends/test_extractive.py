"""The `extractive` backend on a realistic page (prose with a table row, citations, addresses,
numbers, units and dates, a few questions): sentence spans, every speech rule, Krist's rewrite,
Quest's mining, filtering and answers, the output checks (grounding, refusals), determinism across
processes, and property tests (spans tile the text; speakable never raises, leaves no digit, and is
idempotent on text built from real tokens)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixc.backends.extractive import (
    EXTRACTIVE_VERSION,
    grounded,
    mine_questions,
    refusal,
    respond,
    sentence_spans,
    speakable,
    supporting,
)
from mixc.errors import MixcError
from mixc.ir import QuestGenerator

PATTERN = QuestGenerator.model_fields["question_pattern"].default

PAGE = """Veloria

Veloria is a landlocked republic in the Carpathian highlands.[1] Its capital is Tarnow, a city of 1,234,567 \
people (2020 est.). The country covers 48,500 sq km, and its highest peak, Mt. Kresna, rises to 2,962 m.\
[citation needed]
The climate is continental, e.g. the average July temperature is 21.5 °C and winter nights fall to -12 °C.
History
Veloria declared independence on 12 March 1999 after the Treaty of Orsk (Halden 2003). During the 1990s the \
economy shrank; between 1990-1995 about 35% of the population emigrated.
Dr. Ana Petrova became the first president of Veloria in 2001. She governed until 2010 \u2014 a term of nine years.
The economy grew by 3.5% in 2021, and GDP reached $5.2 billion. Exports include timber, cheese, wine, etc. \
Tourism employs approx. 20,000 people.
Region | Area (sq km) | Population
North | 12,345 | 456,789
- The national anthem was adopted on 1999-03-12.
- St. Lucas Street is the longest street in Tarnow, and the 21st district lies on Main St.
Why did Veloria declare independence? The declaration followed the Treaty of Orsk, which ended the war with Sarnia.
What is the capital of this country? How long is the border of Veloria?
Why did Veloria declare independence? Nobody doubts it was the right choice.
Visit https://www.veloria.example.org/travel or write to info@veloria.example.org for more information.
Click here to subscribe to our newsletter.
The U.S. recognised Veloria in 2002. Trains run at 120 km/h & buses at 50 mph.
"""


# ---------------------------------------------------------------------------------- sentences


def sentences(text: str) -> list[str]:
    return [text[s:e] for s, e in sentence_spans(text)]


def test_sentence_spans_keep_abbreviations_decimals_and_initials_inside_sentences():
    text = ("Dr. Smith moved to the U.S. in May. The U.S. economy grew 3.5 percent, e.g. in No. 5 district. "
            "George W. Bush spoke at 5 p.m. on Friday. It rained! Did it stop? Yes, i.e. mostly. Prices "
            "rose etc. Trade fell.")
    assert sentences(text) == [
        "Dr. Smith moved to the U.S. in May.",
        "The U.S. economy grew 3.5 percent, e.g. in No. 5 district.",
        "George W. Bush spoke at 5 p.m. on Friday.",
        "It rained!",
        "Did it stop?",
        "Yes, i.e. mostly.",
        "Prices rose etc.",
        "Trade fell.",
    ]


def test_sentence_spans_end_at_paragraph_and_line_breaks_but_follow_a_lowercase_continuation():
    text = "Geography\nThe river is long and\nwinds through hills.\n\nit starts here. \u201cQuoted.\u201d Next one"
    assert sentences(text) == ["Geography", "The river is long and\nwinds through hills.", "it starts here.",
                               "\u201cQuoted.\u201d", "Next one"]


def test_sentence_spans_after_a_citation_and_an_initial_before_a_sentence_start():
    assert sentences("It is small.[1] Its capital is Tarnow. He took vitamin C. The cure worked.") == [
        "It is small.[1]", "Its capital is Tarnow.", "He took vitamin C.", "The cure worked."]


def assert_tiles(text: str, spans: list[tuple[int, int]]) -> None:
    done = 0
    for start, end in spans:
        assert done <= start < end <= len(text)
        assert not text[done:start].strip(), "a gap holds more than whitespace"
        assert not text[start].isspace() and not text[end - 1].isspace()
        done = end
    assert not text[done:].strip()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from([*"aZ .!?\n\t\"')[]3,", "Dr.", "e.g.", "U.S.", "\n\n", "No. 5"]), max_size=60)
       .map("".join))
def test_sentence_spans_cover_the_text_in_order_without_overlap(text):
    assert_tiles(text, sentence_spans(text))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_sentence_spans_cover_any_text(text):
    assert_tiles(text, sentence_spans(text))


# ---------------------------------------------------------------------------------- speech


def spoken(sentence: str) -> str:
    return speakable(f"Here we read {sentence} aloud.")


@pytest.mark.parametrize("written, said", [
    # citations, addresses, parentheticals, markup
    ("the town[1] [citation needed]", "the town"),
    ("the town (Halden 2003)", "the town"),
    ("the town (see the map below)", "the town"),
    ("the town https://www.example.org/a?b=1", "the town"),
    ("the town www.example.com", "the town"),
    ("the town veloria.gov/travel", "the town"),
    ("the town info@veloria.example.org", "the town"),
    ("the <b>bold</b> town &amp; river", "the bold town and river"),
    ("the [old town](https://example.org/town) {{cite web}}", "the old town"),
    ("the *bold* and `coded` town", "the bold and coded town"),
    # numbers
    ("42 towns", "forty-two towns"),
    ("1,234,567 people", "one million two hundred and thirty-four thousand five hundred and sixty-seven people"),
    ("3.5 points", "three point five points"),
    ("0.05 points", "zero point zero five points"),
    ("the 21st and 2nd towns", "the twenty-first and second towns"),
    ("the year 1999", "the year nineteen ninety-nine"),
    ("the year 2021", "the year twenty twenty-one"),
    ("the 1990s", "the nineteen nineties"),
    ("35% of towns", "thirty-five percent of towns"),
    ("$5.2 billion", "five point two billion dollars"),
    ("$3.50 each", "three dollars and fifty cents each"),
    ("\u20ac1 each", "one euro each"),
    ("US$2.5bn", "two point five billion dollars"),
    ("1990-1995", "nineteen ninety to nineteen ninety-five"),
    ("between 1990-95", "between nineteen ninety and nineteen ninety-five"),
    ("-12 degrees", "minus twelve degrees"),
    ("10:30 and 9:05", "ten thirty and nine oh five"),
    ("007 agents", "zero zero seven agents"),
    ("A4 paper", "A four paper"),
    # units
    ("5 km and 1 km", "five kilometers and one kilometer"),
    ("48,500 sq km", "forty-eight thousand five hundred square kilometers"),
    ("2.5 million sq km", "two point five million square kilometers"),
    ("5 kg", "five kilograms"),
    ("2,962 m", "two thousand nine hundred and sixty-two meters"),
    ("21.5 \u00b0C", "twenty-one point five degrees Celsius"),
    ("50 mph and 120 km/h", "fifty miles per hour and one hundred and twenty kilometers per hour"),
    ("5-10 km", "five to ten kilometers"),
    ("19 births/1,000 people", "nineteen births per one thousand people"),
    # dates
    ("12 March 1999", "the twelfth of March nineteen ninety-nine"),
    ("March 12, 1999", "March twelfth, nineteen ninety-nine"),
    ("1999-03-12", "the twelfth of March nineteen ninety-nine"),
    ("the 3rd of May", "the third of May"),
    ("Jan. 5, 2020", "January fifth, twenty twenty"),
    ("Sept 1999", "September nineteen ninety-nine"),
    # abbreviations and symbols
    ("towns, e.g. Tarnow", "towns, for example Tarnow"),
    ("towns, i.e. Tarnow", "towns, that is Tarnow"),
    ("approx. 5 towns", "approximately five towns"),
    ("Dr. Petrova and Mr. Lee", "Doctor Petrova and Mister Lee"),
    ("Mt. Kresna", "Mount Kresna"),
    ("St. Lucas on Main St. today", "Saint Lucas on Main Street today"),
    ("No. 5", "number five"),
    ("north vs. south", "north versus south"),
    ("salt & pepper + oil", "salt and pepper plus oil"),
    ("north \u2014 and south", "north, and south"),
    ("\u201cquoted\u201d words", "quoted words"),
])
def test_speakable_rule(written, said):
    assert spoken(written) == f"Here we read {said} aloud."


def test_speakable_ends_on_etc_as_a_sentence():
    assert speakable("Exports include timber, wine, etc. Tourism grows.") == (
        "Exports include timber, wine, and so on. Tourism grows.")


def test_speakable_drops_table_rows_and_bullets_and_keeps_paragraphs():
    text = ("Intro line here.\nRegion | Area | People\nNorth\t12\t34\n1999 2000 2001\n- first item here\n"
            "* second item\n\n## Heading\nmore text.")
    assert speakable(text) == "Intro line here.\n\nfirst item here.\n\nsecond item.\n\nHeading more text."


def test_speakable_on_a_page():
    said = speakable(PAGE)
    assert not re.search(r"\d|\[|\(|https?|www|@|\|", said)
    paragraphs = said.split("\n\n")
    assert paragraphs[0] == "Veloria."
    assert paragraphs[1] == (
        "Veloria is a landlocked republic in the Carpathian highlands. Its capital is Tarnow, a city of one "
        "million two hundred and thirty-four thousand five hundred and sixty-seven people. The country covers "
        "forty-eight thousand five hundred square kilometers, and its highest peak, Mount Kresna, rises to two "
        "thousand nine hundred and sixty-two meters.")
    assert "the average July temperature is twenty-one point five degrees Celsius and winter nights fall to " \
           "minus twelve degrees Celsius." in said
    assert "Region" not in said and "North" not in said
    assert "\n\n\n" not in said and "  " not in said


TOKENS = st.sampled_from([
    "the", "river", "Tarnow", "A", "\u00e9t\u00e9", "km", "e.g.", "Dr.", "U.S.", "etc.", "St.", "No.", "approx.", "vs.",
    "March", "$", "&", "+", "(Halden 2003)", "[1]", "https://a.example.com/x", "a@b.org", "\u2014", "-", "|", "\u00b0C",
    "1999", "1990s", "21st", "1,234,567", "12 March 1999", "1999-03-12", "5%", "$5.2 billion", "1990-1995", "10:30",
    "5 km", "3.5 sq km", "20 \u00b0C", "\n", "\n\n"])
NUMBERS = st.one_of(st.integers(-5000, 3_000_000).map(str), st.floats(0, 1000).map(lambda f: f"{f:.2f}"))
WORDS = st.tuples(st.sampled_from(["the", "river", "Tarnow", "people", "lived"]),
                  st.sampled_from(["", "", ",", ".", "?", "!", ";", ":"])).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(TOKENS, NUMBERS, WORDS), max_size=30).map(" ".join))
def test_speakable_is_idempotent_on_text_built_from_real_tokens(text):
    once = speakable(text)
    assert not re.search(r"\d", once)
    assert speakable(once) == once


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_speakable_never_raises_and_leaves_no_digit(text):
    assert not re.search(r"\d", speakable(text))


def test_speakable_throughput():
    """Measured with this test's text on one core: ~1.5 MB/s (number-dense); the bound is loose for busy machines."""
    text = PAGE * 200
    started = time.process_time()
    speakable(text)
    seconds = time.process_time() - started
    assert len(text.encode()) / 1e6 / seconds > 0.25


# ---------------------------------------------------------------------------------- Krist


def test_rewrite_keeps_the_prose_a_listener_can_use():
    text = respond("rewrite", {"page": PAGE})
    assert not re.search(r"\d|https?|@|\|", text)
    for dropped in ("Click here", "subscribe", "Visit", "Region", "History\n", "Veloria.\n"):
        assert dropped not in text
    assert text.startswith("Veloria is a landlocked republic in the Carpathian highlands. Its capital is Tarnow")
    assert "Doctor Ana Petrova became the first president of Veloria in two thousand and one." in text
    assert "The national anthem was adopted on the twelfth of March nineteen ninety-nine." in text
    assert "Saint Lucas Street is the longest street in Tarnow" in text
    assert "Trains run at one hundred and twenty kilometers per hour and buses at fifty miles per hour." in text
    assert text.count("Why did Veloria declare independence?") == 1  # the repeat is dropped
    assert "\n\n" in text and "\n\n\n" not in text


def test_rewrite_drops_fragments_and_symbol_lines():
    page = "Menu Home About\nShort one.\n= = = 1 2 3 = = =\nA sentence that a listener can follow easily."
    assert respond("rewrite", {"page": page}) == "A sentence that a listener can follow easily."


# ---------------------------------------------------------------------------------- Quest: mining


def test_mine_questions_with_the_default_pattern():
    mined = mine_questions(PAGE, PATTERN, 8)
    assert [q for q, _, _ in mined] == ["Why did Veloria declare independence?", "What is the capital of this country?",
                                        "How long is the border of Veloria?"]
    for question, start, end in mined:
        assert PAGE[start:end] == question
    assert mine_questions(PAGE, PATTERN, 2) == mined[:2]
    assert mine_questions(PAGE, PATTERN, 0) == []


def test_mine_questions_normalises_whitespace_and_takes_the_whole_match_without_a_group():
    text = "Where does the long river \t  end up? Nobody knows.\n\nWhat grows in the north?"
    second = text.index("What")
    assert mine_questions(text, PATTERN, 8) == [("Where does the long river end up?", 0, text.index("?") + 1),
                                                 ("What grows in the north?", second, len(text))]
    assert [q for q, _, _ in mine_questions(text, r"What [a-z ]+\?", 8)] == ["What grows in the north?"]


def test_mine_questions_rejects_a_broken_pattern_with_a_hint():
    with pytest.raises(MixcError) as error:
        mine_questions(PAGE, "([A-Z", 8)
    assert "question_pattern" in error.value.message and error.value.hint


# ---------------------------------------------------------------------------------- Quest: filter, answer


def ask(task: str, question: str) -> str:
    return respond(task, {"question": question, "page": PAGE})


@pytest.mark.parametrize("question, verdict", [
    ("What is the capital of Veloria?", "yes"),
    ("When did Veloria declare independence?", "yes"),
    ("Who became the first president of Veloria?", "yes"),
    ("How many people does tourism employ?", "yes"),
    ("Why did Veloria declare independence?", "yes"),
    ("What is the capital of this country?", "no"),  # deixis
    ("What do you think of Veloria?", "no"),
    ("What did she do after the treaty?", "no"),
    ("What does the article say about the capital of Veloria?", "no"),
    ("How long is the border of Veloria?", "no"),  # only the question itself mentions it
    ("What is the airspeed of a swallow?", "no"),
    ("Why?", "no"),
])
def test_filter(question, verdict):
    assert ask("filter", question) == verdict


def test_supporting_finds_the_sentence_and_never_a_question():
    (start, end), = supporting("What is the capital of Veloria?", PAGE, k=1)
    assert PAGE[start:end] == "Its capital is Tarnow, a city of 1,234,567 people (2020 est.)."
    spans = supporting("Why did Veloria declare independence?", PAGE)
    assert spans == sorted(spans) and 1 <= len(spans) <= 2
    assert all(not PAGE[s:e].endswith("?") for s, e in spans)
    assert supporting("How long is the border of Veloria?", PAGE) == []
    assert supporting("What?", PAGE) == []
    assert (0, len("Veloria")) not in supporting("Where is Veloria?", PAGE)  # a heading is no answer


@pytest.mark.parametrize("question, expected", [
    ("What is the capital of Veloria?",
     "The page says that its capital is Tarnow, a city of one million two hundred and thirty-four thousand five "
     "hundred and sixty-seven people; so that is the answer."),
    ("When did Veloria declare independence?",
     "The page says that Veloria declared independence on the twelfth of March nineteen ninety-nine after the "
     "Treaty of Orsk; so that tells us when."),
    ("Who became the first president of Veloria?",
     "The page says that Doctor Ana Petrova became the first president of Veloria in two thousand and one; "
     "so that tells us who."),
    ("Is Veloria a landlocked republic?",
     "The page says that Veloria is a landlocked republic in the Carpathian highlands; so that answers the "
     "question."),
])
def test_answer_reads_the_supporting_sentence_and_a_reasoning_step(question, expected):
    said = ask("answer", question)
    assert said == expected
    assert grounded(said, PAGE) == 1.0


def test_answer_joins_two_sentences_and_lowercases_only_common_first_words():
    page = PAGE + "Most exports leave by rail.\n"
    said = respond("answer", {"question": "What does Veloria export?", "page": page})
    assert said == ("The page says that exports include timber, cheese, wine, and so on, and that most exports leave "
                    "by rail; so that is the answer.")
    said = respond("answer", {"question": "Where is Veloria?", "page": page})
    assert said.startswith("The page says that Veloria is a landlocked republic")  # a name keeps its capital


def test_answer_is_empty_without_support():
    assert ask("answer", "What is the airspeed of a swallow?") == ""


# ---------------------------------------------------------------------------------- output checks


def test_grounded():
    assert grounded("Tarnow is the capital; Veloria declared independence in nineteen ninety-nine.", PAGE) == 1.0
    # tarnow, capital found; home, penguin, volcano, spaceport not
    assert grounded("Tarnow is the capital, home to penguins, volcanoes and spaceports.", PAGE) == pytest.approx(
        2 / 6)
    assert grounded("According to the page, the answer is yes.", PAGE) == 0.0
    assert grounded("", PAGE) == 0.0


@pytest.mark.parametrize("text", [
    "I'm sorry, but I can't help with that.",
    "I\u2019m sorry, I cannot rewrite this page.",
    "As an AI language model, I do not have opinions.",
    "I cannot answer questions about this page.",
    "I apologize, but this request is unclear.",
    "Unfortunately, I am unable to read the page.",
    "Here is the text. As a language model I may be wrong.",
])
def test_refusal_detected(text):
    assert refusal(text)


@pytest.mark.parametrize("text", [
    "Veloria is a landlocked republic.",
    "The poet wrote that I cannot forget the hills of home.",
    "Sorrytown is a village in the north.",
    "The page says that its capital is Tarnow; so that is the answer.",
])
def test_refusal_not_detected(text):
    assert not refusal(text)


# ---------------------------------------------------------------------------------- the backend


def test_respond_is_deterministic_across_processes():
    """Replies must not depend on hash randomisation (set and dict order) or on earlier calls."""
    requests = [("rewrite", {"page": PAGE})] + [
        (task, {"question": q, "page": PAGE}) for task in ("filter", "answer")
        for q in ("What is the capital of Veloria?", "Why did Veloria declare independence?")]
    here = [respond(task, fields) for task, fields in requests]
    assert here == [respond(task, fields) for task, fields in requests]
    script = ("import json, sys\nfrom mixc.backends.extractive import respond\n"
              "print(json.dumps([respond(t, f) for t, f in json.load(sys.stdin)]))")
    for seed in ("1", "2"):
        run = subprocess.run([sys.executable, "-c", script], input=json.dumps(requests), capture_output=True,
                             text=True, check=True, env={**os.environ, "PYTHONHASHSEED": seed})
        assert json.loads(run.stdout) == here


def test_respond_rejects_unknown_tasks_and_missing_fields():
    with pytest.raises(ValueError, match="no task 'summarise'"):
        respond("summarise", {"page": PAGE})
    with pytest.raises(ValueError, match="needs the field 'question'"):
        respond("answer", {"page": PAGE})


def test_version_is_an_int():
    assert isinstance(EXTRACTIVE_VERSION, int) and EXTRACTIVE_VERSION >= 1
