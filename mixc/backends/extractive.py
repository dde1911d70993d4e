"""The `extractive` LLM backend: Krist rewrites and Quest filters/answers without a model, plus the
text checks every backend's output goes through (`grounded`, `refusal`).

It is NOT a language model. It never paraphrases, summarises or invents: every word it returns is
a word of the page (selected, cleaned and read out) or one of a few fixed template words. It is
deterministic (no randomness; nothing depends on hash order) and regex-based.

Tasks of `respond(task, fields)` (the interface `mixc.backends.llm` calls):

    rewrite  {page}            -> the page's usable sentences, made speakable (Krist). Kept: sentences
                                  mostly of letters (>= 60% of their non-space characters), without
                                  boilerplate ("click here", "subscribe", "cookies", "sign up", ...)
                                  or an address, of at least 4 spoken words (8 when the line has no
                                  end punctuation: a heading, a menu); exact repeats are dropped.
                                  Paragraphs are separated by a blank line.
    filter   {question, page} -> "yes" when the question is self-contained (no deixis: "this",
                                  "these", "above", "you", "he", "the article", ...) and `supporting`
                                  finds a sentence of the page for it, else "no".
    answer   {question, page} -> "The page says that <sentence>[, and that <sentence>]; so <step>."
                                  with the supporting sentences made speakable (the first word
                                  lowercased when the page writes it so) and <step> a fixed phrase
                                  chosen by the question word ("that tells us when", "that is the
                                  answer", "that answers the question"). "" without support.

Support (`supporting`) is lexical: the question's content words (no stop words, lightly stemmed) are
weighted by their idf over the page's sentences (a word the page never uses weighs most), and a
sentence supports the question when it holds at least SUPPORT_THRESHOLD of that weight. Questions,
fragments and boilerplate never support. So this backend does not understand the question, resolve
pronouns, say "yes" or "no" to a yes/no question, merge or shorten sentences, or translate. Output
changes bump `EXTRACTIVE_VERSION`.

Speech normalisation (`speakable`), in this order: characters (NFKC, HTML entities, curly quotes);
lines (drop table-like lines: two or more "|" or tabs, more digits than letters, no letters at all;
strip bullets, "#"/"==" heading marks; a line starting lowercase continues the previous one, any other
line starts a paragraph); then per paragraph: markup (tags, wiki templates, markdown links), URLs
and e-mails, square-bracket citations ("[1]", "[citation needed]"), parentheticals (which include
"(Smith 2003)"), abbreviations ("e.g.", "i.e.", "etc.", "approx.", "vs.", "No. 5", titles such as
"Dr."/"Mt.", "St." as Saint before a name and Street elsewhere), dates ("12 March 1999", "March 12,
1999", "Jan. 5", "1999-03-12"), currency ("$5.2 billion", "$3.50"), percentages, units after a
number ("km", "sq km", "kg", "m", "°C", "mph", ...), ranges ("1990-1995", "5-10 km"), decades,
ordinals, clock times, then every remaining number with num2words (a bare 1100-2099 is read as a
year, "1,234,567" as a cardinal, "3.5" as "three point five"; no digit survives), dashes and symbols
("&" and, "+" plus, "=" equals, "°" degrees), and finally punctuation and whitespace (each paragraph
ends with ".", "!" or "?"). Paragraphs are joined by "\\n\\n". Number rules run only in windows of
NUMBER_CONTEXT characters around digits, and most rules only on text holding their trigger
substring: plain prose goes through at ~8 MB/s, number-dense text (the CIA World Factbook) at
~1.3-1.5 MB/s on one core (rewrite: ~1 MB/s).
"""

from __future__ import annotations

import html
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from num2words import num2words

from mixc.errors import MixcError

EXTRACTIVE_VERSION = 1

# ---------------------------------------------------------------------------------- words


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


STOPWORDS = frozenset(_words("""
a about above after again against all also am an and any are as at be because been before being below between
both but by can could did do does doing done down during each either else ever every few for from further had
has have having he her here hers herself him himself his how i if in into is it its itself just let like many
may me might more most much must my myself neither no nor not now of off on once one only or other our ours
ourselves out over own per same shall she should so some such than that the their theirs them themselves then
there these they this those through thus to too under until up upon us very was we were what whatever when
whenever where whereas whether which while who whom whose why will with within without would yet you your yours
yourself yourselves
"""))
# Words that talk about the page or the answer rather than the subject: an answer may use them
# ("according to the page, ...") without being less grounded for it.
META_WORDS = frozenset(_words("according answer answers article mention mentions page passage question say says "
                              "said state states tell tells text"))
WORD = re.compile(r"[^\W_]+")
# Words a sentence often starts with and that are lowercased mid-sentence; also the words that, after
# an initial ("George W."), show that a new sentence has begun.
STARTERS = frozenset(_words("""
a after although an and as at before both but by during each for from however if in it its many most
on one our since some that the their there these they this those today when while with
"""))


def _stem(word: str) -> str:
    """A light suffix stripper: cities/city, borders/bordered/bordering/border, located/locate."""
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if len(word) > 5 and word.endswith("ing"):
        word = word[:-3]
    elif len(word) > 4 and word.endswith("ed"):
        word = word[:-2]
    if len(word) > 4 and word.endswith("e"):
        word = word[:-1]
    return word


def content_stems(text: str) -> list[str]:
    """The stems of `text`'s content words (no stop or meta words), in order."""
    return [_stem(w) for w in WORD.findall(text.lower())
            if w not in STOPWORDS and w not in META_WORDS and (len(w) > 1 or w.isdigit())]


# ---------------------------------------------------------------------------------- sentences

END_CANDIDATE = re.compile(r"([.!?]+)[\"')\]\u201d\u2019]*(?:\[[^\[\]\n]{1,40}\])*(?=\s|\Z)|\n")  # "end.[1] Next"
SPACE_RUN = re.compile(r"\s*")
NEXT_WORD = re.compile(r"\s*[\"'(\[\u201c\u2018]*([^\s\"'.,;:!?)\]]*)")
TOKEN_TAIL = re.compile(r"[^\s(\[\"'\u201c\u2018]*\Z")
INITIALS = re.compile(r"(?:[A-Za-z]\.)*[A-Za-z]")
# "Dr. Smith", "e.g. the": never a sentence end. Before a digit ("No. 5", "Jan. 3"): not one either.
NEVER_END = frozenset(_words("approx capt cf col dr e.g gen gov hon i.e lt mr mrs ms mt pres prof rep rev sen sgt "
                             "st viz vs"))
BEFORE_NUMBER = frozenset(_words("apr art aug c ca ch dec feb fig jan jul jun mar no nos nov oct p pp sec sep "
                                 "sept vol"))


def _skip_space(text: str, pos: int) -> int:
    match = SPACE_RUN.match(text, pos)
    return match.end() if match else pos


def _next_word(text: str, pos: int) -> str:
    match = NEXT_WORD.match(text, pos)
    return match.group(1) if match else ""


def _punctuation_ends(text: str, punctuation: str, start: int, end: int) -> bool:
    """Whether `punctuation` at text[start:] (closed by text[start:end], before a space or the end)
    ends a sentence."""
    after = _skip_space(text, end)
    if after == len(text):
        return True
    if text[after].islower():
        return False
    if punctuation != ".":
        return True
    tail = TOKEN_TAIL.search(text, max(0, start - 40), start)
    token = tail.group().lower() if tail else ""
    if token in NEVER_END:
        return False
    if token in BEFORE_NUMBER and text[after].isdigit():
        return False
    if INITIALS.fullmatch(token):  # "U.S.", "a.m.", "George W.": only before a typical sentence start
        return _next_word(text, end).lower() in STARTERS
    return True


def _line_break_ends(text: str, pos: int) -> bool:
    """A newline ends a sentence at a blank line, or when the next line does not start lowercase."""
    after = _skip_space(text, pos)
    return after == len(text) or "\n" in text[pos + 1:after] or not text[after].islower()


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of `text`, in order, disjoint, without surrounding whitespace;
    every non-space character lies in one. A sentence ends at ".", "!" or "?" (with closing quotes or
    brackets) before a space and a word that does not start lowercase, except after an abbreviation
    ("e.g.", "Dr.", "No. 5") or an initial ("U.S.", "W.") unless the next word typically starts a
    sentence; decimals never end one; paragraph breaks and line breaks before a non-lowercase line do."""
    spans = []
    start = _skip_space(text, 0)
    for match in END_CANDIDATE.finditer(text):
        if match.start() < start:
            continue
        if match.group() == "\n":
            if not _line_break_ends(text, match.start()):
                continue
            end = start + len(text[start:match.start()].rstrip())
        elif _punctuation_ends(text, match.group(1), match.start(), match.end()):
            end = match.end()
        else:
            continue
        if end > start:
            spans.append((start, end))
        start = _skip_space(text, end)
    end = len(text.rstrip())
    if end > start:
        spans.append((start, end))
    return spans


# ---------------------------------------------------------------------------------- speech: lines

CHARACTERS = {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2212": "-", "\u00ad": "",
              "\u200b": "", "\ufeff": "", "\r": ""}
BULLET = re.compile(r"^\s*(?:[-*+\u2022\u00b7\u25aa\u25e6\u2023\u25ba\u2013\u2014>]+|\d{1,3}[.)]|\(?[a-z]\))\s+")
HEADING_MARKS = re.compile(r"^\s*(?:#{1,6}|=+)\s*|\s*=+\s*$")
LETTER = re.compile(r"[^\W\d_]")
DIGIT = re.compile(r"\d")


def _normalise_characters(text: str) -> str:
    text = html.unescape(text) if "&" in text else text
    return _replace_characters(unicodedata.normalize("NFKC", text))


def _replace_characters(text: str) -> str:
    """Curly quotes straight, the minus sign a hyphen; soft hyphens, zero-width spaces and CRs gone."""
    for character, replacement in CHARACTERS.items():
        if character in text:
            text = text.replace(character, replacement)
    return text


def _table_like(line: str) -> bool:
    """A table row, a row of numbers, or a line without a single letter."""
    if line.count("|") >= 2 or line.count("\t") >= 2 or not LETTER.search(line):
        return True
    return bool(DIGIT.search(line)) and sum(map(str.isdigit, line)) > sum(map(str.isalpha, line))


def _blocks(text: str) -> list[str]:
    """The paragraphs of `text` as single lines: table-like lines dropped, bullets and heading marks
    stripped, a line that starts lowercase joined to the previous one."""
    blocks: list[str] = []
    current: list[str] = []
    for raw in _normalise_characters(text).split("\n"):
        line = BULLET.sub("", raw)
        line = (HEADING_MARKS.sub("", line) if "#" in line or "=" in line else line).strip()
        if not line or _table_like(line):
            if current:
                blocks.append(" ".join(current))
            current = []
        elif current and line[0].islower() and not BULLET.match(raw):
            current.append(line)
        else:
            if current:
                blocks.append(" ".join(current))
            current = [line]
    if current:
        blocks.append(" ".join(current))
    return blocks


# ---------------------------------------------------------------------------------- speech: numbers

DIGIT_NAMES = _words("zero one two three four five six seven eight nine")
MONTHS = _words("January February March April May June July August September October November December")
NUMBER = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?"


@lru_cache(maxsize=4096)
def _cardinal(n: int) -> str:
    return str(num2words(n)).replace(",", "")


@lru_cache(maxsize=4096)
def _ordinal(n: int) -> str:
    return str(num2words(n, to="ordinal")).replace(",", "")


@lru_cache(maxsize=4096)
def _year(n: int) -> str:
    return str(num2words(n, to="year")) if 1100 <= n <= 2099 else _cardinal(n)


def _digits(digits: str) -> str:
    return " ".join(DIGIT_NAMES[int(d)] for d in digits)


def _looks_like_year(number: str) -> bool:
    return len(number) == 4 and number.isdigit() and 1100 <= int(number) <= 2099


def say_number(number: str, year: bool = False) -> str:
    """Digits as words: "1,234" one thousand two hundred and thirty-four, "3.05" three point zero
    five, "007" digit by digit, a bare 1100-2099 as a year when `year`."""
    whole, _, fraction = number.partition(".")
    digits = whole.replace(",", "")
    if year and "," not in whole and not fraction and _looks_like_year(digits):
        words = _year(int(digits))
    elif len(digits) > 15 or (len(digits) > 1 and digits.startswith("0")):
        words = _digits(digits)
    else:
        words = _cardinal(int(digits))
    return f"{words} point {_digits(fraction)}" if fraction else words


def _plural(words: str) -> str:
    return words[:-1] + "ies" if words.endswith("y") else words + "s"


@dataclass(frozen=True)
class SpokenUnit:
    pattern: str  # regex of its written forms
    singular: str
    plural: str


UNITS = (
    SpokenUnit(r"sq\.? ?km|km2|square km", "square kilometer", "square kilometers"),
    SpokenUnit(r"sq\.? ?mi|mi2|square mi", "square mile", "square miles"),
    SpokenUnit(r"sq\.? ?m|m2", "square meter", "square meters"),
    SpokenUnit(r"cu\.? ?m|m3", "cubic meter", "cubic meters"),
    SpokenUnit(r"km/h|kmh|kph", "kilometer per hour", "kilometers per hour"),
    SpokenUnit(r"mph", "mile per hour", "miles per hour"),
    SpokenUnit(r"bbl/day", "barrel per day", "barrels per day"),
    SpokenUnit(r"km", "kilometer", "kilometers"),
    SpokenUnit(r"cm", "centimeter", "centimeters"),
    SpokenUnit(r"mm", "millimeter", "millimeters"),
    SpokenUnit(r"m", "meter", "meters"),
    SpokenUnit(r"mi", "mile", "miles"),
    SpokenUnit(r"nm", "nautical mile", "nautical miles"),
    SpokenUnit(r"ft", "foot", "feet"),
    SpokenUnit(r"kg", "kilogram", "kilograms"),
    SpokenUnit(r"g", "gram", "grams"),
    SpokenUnit(r"lbs?", "pound", "pounds"),
    SpokenUnit(r"oz", "ounce", "ounces"),
    SpokenUnit(r"ha", "hectare", "hectares"),
    SpokenUnit(r"[mM]L|ml", "milliliter", "milliliters"),
    SpokenUnit(r"L", "liter", "liters"),
    SpokenUnit(r"bbl", "barrel", "barrels"),
    SpokenUnit(r"kWh", "kilowatt hour", "kilowatt hours"),
    SpokenUnit(r"GWh", "gigawatt hour", "gigawatt hours"),
    SpokenUnit(r"kW", "kilowatt", "kilowatts"),
    SpokenUnit(r"MW", "megawatt", "megawatts"),
    SpokenUnit(r"GW", "gigawatt", "gigawatts"),
    SpokenUnit(r"kHz", "kilohertz", "kilohertz"),
    SpokenUnit(r"MHz", "megahertz", "megahertz"),
    SpokenUnit(r"GHz", "gigahertz", "gigahertz"),
    SpokenUnit(r"Hz", "hertz", "hertz"),
    SpokenUnit(r"° ?C", "degree Celsius", "degrees Celsius"),
    SpokenUnit(r"° ?F", "degree Fahrenheit", "degrees Fahrenheit"),
    SpokenUnit(r"°", "degree", "degrees"),
)
MAGNITUDE = r"(?:\s(thousand|million|billion|trillion))?"
UNIT = re.compile(rf"(?<![\w.,-])(?:({NUMBER})\s?[-\u2013]\s?)?({NUMBER}){MAGNITUDE}\s?("
                  + "|".join(f"(?:{u.pattern})" for u in UNITS) + r")(?![\w°])")
UNIT_FORMS = tuple((re.compile(u.pattern), u) for u in UNITS)

CURRENCIES = {"$": "dollar", "€": "euro", "£": "pound", "¥": "yen"}
CURRENCY = re.compile(r"(?:\bUS|\bA|\bC)?([$€£¥])\s?(" + NUMBER
                      + r")(?:\s?(thousand|million|billion|trillion|bn|mn|m|k)(?!\w))?")
SCALES = {"bn": "billion", "mn": "million", "m": "million", "k": "thousand"}
PERCENT = re.compile(rf"({NUMBER})\s?(?:%|per ?cent\b)")
RANGE = re.compile(rf"(?<![\w.,-])({NUMBER})\s?[-\u2013]\s?({NUMBER})(?![\w.,-]*\d)")
BETWEEN = re.compile(r"\bbetween\s\Z", re.IGNORECASE)
DECADE = re.compile(r"\b(\d{1,3}0)'?s\b")
ORDINAL = re.compile(r"\b(\d+)(?:st|nd|rd|th)\b")
CLOCK = re.compile(r"\b([01]?\d|2[0-3]):([0-5]\d)\b")
MINUS = re.compile(r"(?<![\w.,)-])-(?=\d)")
LEFT_NUMBER = re.compile(NUMBER)

def _say_unit(match: re.Match[str]) -> str:
    """"5 km" five kilometers, "1 kg" one kilogram, "5-10 m" five to ten meters, "2 million sq km"."""
    low, number, magnitude, written = match.groups()
    unit = next(u for form, u in UNIT_FORMS if form.fullmatch(written))
    name = unit.singular if number == "1" and not (low or magnitude) else unit.plural
    amount = f"{say_number(low)} to {say_number(number)}" if low else say_number(number)
    return " ".join(filter(None, (amount, magnitude, name)))


def _say_currency(match: re.Match[str]) -> str:
    symbol, number, scale = match.group(1), match.group(2), match.group(3)
    name = CURRENCIES[symbol]
    whole, _, cents = number.partition(".")
    if scale:
        return f"{say_number(number)} {SCALES.get(scale, scale)} {_plural(name) if name != 'yen' else name}"
    plural = name if name == "yen" or whole == "1" else _plural(name)
    if len(cents) == 2 and symbol in "$€£":
        cent = "cent" if cents == "01" else "cents"
        return f"{say_number(whole)} {plural} and {_cardinal(int(cents))} {cent}"
    return f"{say_number(number)} {plural}"


def _say_range(match: re.Match[str]) -> str:
    first, second = match.group(1), match.group(2)
    if _looks_like_year(first) and second.isdigit() and len(second) == 2:
        second = first[:2] + second  # "1990-95"
    years = _looks_like_year(first) and _looks_like_year(second)
    joint = "and" if BETWEEN.search(match.string, 0, match.start()) else "to"
    return f"{say_number(first, years)} {joint} {say_number(second, years)}"


def _say_decade(match: re.Match[str]) -> str:
    number = match.group(1)
    return _plural(_year(int(number)) if len(number) == 4 else _cardinal(int(number)))


def _say_clock(match: re.Match[str]) -> str:
    hour, minute = _cardinal(int(match.group(1))), int(match.group(2))
    if minute == 0:
        return f"{hour} o'clock"
    return f"{hour} oh {_cardinal(minute)}" if minute < 10 else f"{hour} {_cardinal(minute)}"


def _say_left_number(match: re.Match[str]) -> str:
    """A number on its own; one glued to letters ("A4", "4G") is set apart from them."""
    text, start, end = match.string, match.start(), match.end()
    before = " " if start > 0 and text[start - 1].isalpha() else ""
    after = " " if end < len(text) and text[end].isalpha() else ""
    return before + say_number(match.group(), year=True) + after


# ---------------------------------------------------------------------------------- speech: dates

MONTH_NAMES = {m[:3]: m for m in MONTHS} | {"Sept": "September"}
MONTH = "((?:" + "|".join(MONTHS) + ")|(?:Sept|" + "|".join(m[:3] for m in MONTHS if m != "May") + r")\.?)(?!\w)"
DAY_MONTH_YEAR = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s(?:of\s)?{MONTH},?\s(\d{{4}})\b")
MONTH_DAY_YEAR = re.compile(rf"\b{MONTH}\s(\d{{1,2}})(?:st|nd|rd|th)?,?\s(\d{{4}})\b")
DAY_MONTH = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s(?:of\s)?{MONTH}")
MONTH_DAY = re.compile(rf"\b{MONTH}\s(\d{{1,2}})(?:st|nd|rd|th)?\b(?![,.]?\d)")
MONTH_YEAR = re.compile(rf"\b{MONTH}\s(\d{{4}})\b")
THE_THE = re.compile(r"\b([Tt]he) the\b")  # "the 3rd of May" -> "the the third of May" -> "the third of May"
ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")


def _month(written: str) -> str:
    return MONTH_NAMES[written[:4] if written.startswith("Sept") else written[:3]]


def _day(day: str) -> str | None:
    return _ordinal(int(day)) if 1 <= int(day) <= 31 else None


def _say_day_month_year(match: re.Match[str]) -> str:
    day = _day(match.group(1))
    return f"the {day} of {_month(match.group(2))} {_year(int(match.group(3)))}" if day else match.group()


def _say_month_day_year(match: re.Match[str]) -> str:
    day = _day(match.group(2))
    return f"{_month(match.group(1))} {day}, {_year(int(match.group(3)))}" if day else match.group()


def _say_day_month(match: re.Match[str]) -> str:
    day = _day(match.group(1))
    return f"the {day} of {_month(match.group(2))}" if day else match.group()


def _say_month_day(match: re.Match[str]) -> str:
    day = _day(match.group(2))
    return f"{_month(match.group(1))} {day}" if day else match.group()


def _say_month_year(match: re.Match[str]) -> str:
    return f"{_month(match.group(1))} {_year(int(match.group(2)))}"


def _say_iso_date(match: re.Match[str]) -> str:
    month, day = int(match.group(2)), _day(match.group(3))
    if not day or not 1 <= month <= 12:
        return match.group()
    return f"the {day} of {MONTHS[month - 1]} {_year(int(match.group(1)))}"


# ---------------------------------------------------------------------------------- speech: words


@dataclass(frozen=True)
class Rule:
    """A substitution, run only on text that holds one of its needles (a substring test costs far
    less than a regex scan); no needles: always run."""

    needles: tuple[str, ...]
    pattern: re.Pattern[str]
    replacement: str | Callable[[re.Match[str]], str]

    def apply(self, text: str) -> str:
        if self.needles and not any(needle in text for needle in self.needles):
            return text
        return self.pattern.sub(self.replacement, text)


def _apply(rules: tuple[Rule, ...], text: str) -> str:
    for rule in rules:
        text = rule.apply(text)
    return text


TITLES = {"Dr": "Doctor", "Mr": "Mister", "Mrs": "Missus", "Prof": "Professor", "Gen": "General", "Gov": "Governor",
          "Sen": "Senator", "Rep": "Representative", "Capt": "Captain", "Lt": "Lieutenant", "Col": "Colonel",
          "Sgt": "Sergeant", "Rev": "Reverend", "Pres": "President", "Mt": "Mount", "Ft": "Fort"}
TLDS = ("com", "org", "net", "edu", "gov", "io", "info", "biz")
URL_TAIL = r"[^\s<>\"]*[^\s<>\".,;:!?)\]]"  # an address ends before the sentence's punctuation
URL_OR_EMAIL = re.compile(rf"(?:https?://|ftp://|www\.){URL_TAIL}|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
                          rf"|\b(?:[a-z0-9-]+\.)+(?:{'|'.join(TLDS)})\b(?:/{URL_TAIL})?", re.IGNORECASE)
PARENTHETICAL = re.compile(r"\([^()]*\)")


def _word_start(match: re.Match[str]) -> bool:
    return match.start() == 0 or not match.string[match.start() - 1].isalnum()


def _say_title(match: re.Match[str]) -> str:
    return TITLES[match.group()[:-1]] if _word_start(match) else match.group()


def _saint_or_street(match: re.Match[str]) -> str:
    if not _word_start(match):
        return match.group()
    following = _next_word(match.string, match.end())
    if following[:1].isupper() and following.lower() not in STARTERS:
        return "Saint"
    return "Street." if following[:1].isupper() or match.end() == len(match.string) else "Street"


def _keep_inner(match: re.Match[str]) -> str:
    """An apostrophe or hyphen inside a word stays ("don't", "well-known"); elsewhere it goes."""
    text, start, end = match.string, match.start(), match.end()
    inner = start > 0 and end < len(text) and text[start - 1].isalnum() and text[end].isalnum()
    return match.group() if inner else " "


CLEANUP = (
    Rule(("{{",), re.compile(r"\{\{[^{}]{0,300}\}\}"), " "),
    Rule(("<",), re.compile(r"<[^<>\n]{1,300}>"), " "),
    Rule(("](",), re.compile(r"\[([^\[\]\n]{1,200})\]\([^()\s]+\)"), r"\1"),
    Rule(("://", "www.", "WWW.", "@", *(f".{t}" for t in TLDS), *(f".{t.upper()}" for t in TLDS)), URL_OR_EMAIL, " "),
    Rule(("[",), re.compile(r"\[[^\[\]\n]{0,40}\]"), " "),
)
ABBREVIATIONS = (
    Rule(tuple(f"{t}." for t in TITLES), re.compile("(?:" + "|".join(TITLES) + r")\.(?=\s+[A-Z])"), _say_title),
    Rule(("St.",), re.compile(r"St\."), _saint_or_street),
    Rule(("e.g", "e. g"), re.compile(r"\be\.\s?g\.(?!\w)"), "for example"),
    Rule(("i.e", "i. e"), re.compile(r"\bi\.\s?e\.(?!\w)"), "that is"),
    Rule(("etc",), re.compile(r"\betc\.(?=\s*\Z|\s+[A-Z])"), "and so on."),
    Rule(("etc",), re.compile(r"\betc\b\.?"), "and so on"),
    Rule(("approx",), re.compile(r"\bapprox\b\.?"), "approximately"),
    Rule(("v.", "vs."), re.compile(r"\bvs?\.(?!\w)"), "versus"),
    Rule(("c.", "ca."), re.compile(r"\bca?\.\s?(?=\d)"), "around "),
    Rule(("No.",), re.compile(r"\bNo\.\s?(?=\d)"), "number "),
    Rule(("Nos.",), re.compile(r"\bNos\.\s?(?=\d)"), "numbers "),
    Rule(("cf.",), re.compile(r"\bcf\.(?!\w)"), "compare"),
)
# Everything `_say_numbers` rewrites lies within NUMBER_CONTEXT characters of a digit.
NUMBERS = (
    Rule(("~",), re.compile(r"~\s?(?=\d)"), "about "),
    Rule((">",), re.compile(r">\s?(?=\d)"), "more than "),
    Rule(("<",), re.compile(r"<\s?(?=\d)"), "less than "),
    Rule(("#",), re.compile(r"#(?=\d)"), "number "),
    Rule(("±",), re.compile(r"±\s?"), "plus or minus "),
    Rule(("-",), MINUS, "minus "),
    Rule(("-",), ISO_DATE, _say_iso_date),
    Rule(tuple(MONTH_NAMES), DAY_MONTH_YEAR, _say_day_month_year),
    Rule(tuple(MONTH_NAMES), MONTH_DAY_YEAR, _say_month_day_year),
    Rule(tuple(MONTH_NAMES), DAY_MONTH, _say_day_month),
    Rule(tuple(MONTH_NAMES), MONTH_DAY, _say_month_day),
    Rule(tuple(MONTH_NAMES), MONTH_YEAR, _say_month_year),
    Rule(("the the", "The the"), THE_THE, r"\1"),
    Rule(tuple(CURRENCIES), CURRENCY, _say_currency),
    Rule(("%", "per"), PERCENT, lambda m: f"{say_number(m.group(1))} percent"),
    Rule((), UNIT, _say_unit),
    Rule(("-", "\u2013"), RANGE, _say_range),
    Rule((), DECADE, _say_decade),
    Rule((), ORDINAL, lambda m: _ordinal(int(m.group(1)))),
    Rule((":",), CLOCK, _say_clock),
    Rule(("/",), re.compile(r"(?<=[^\W\d_])\s?/\s?(?=\d)"), " per "),
    Rule(("/",), re.compile(r"(?<=\d)/(?=\d)"), " slash "),
    Rule((), LEFT_NUMBER, _say_left_number),
)
NUMBER_CONTEXT = 30
DIGITS = re.compile(r"\d+")
SYMBOLS = (
    Rule(("\u2014", "\u2013", "--", " - "), re.compile(r"\u2014|\u2013|--| - "), " , "),
    Rule(("&",), re.compile("&"), " and "),
    Rule(("+",), re.compile(r"\+"), " plus "),
    Rule(("=",), re.compile("="), " equals "),
    Rule(("@",), re.compile("@"), " at "),
    Rule(("×",), re.compile("×"), " times "),
    Rule(("%",), re.compile("%"), " percent "),
    Rule(("°",), re.compile("°"), " degrees "),
    Rule(("\u2044",), re.compile("\u2044"), " over "),
    Rule(("/",), re.compile(r"(?<=[^\W\d_])/(?=[^\W\d_])"), " or "),
    Rule((), re.compile(r"[^\w\s.,;:!?'-]|_"), " "),
    Rule(("'", "-"), re.compile(r"['-]"), _keep_inner),
)
TIDY = (
    Rule((), re.compile(r"\s\s+|[^\S ]"), " "),
    Rule((), re.compile(r" ([.,;:!?])"), r"\1"),
    Rule((), re.compile(r"([,;:])(?: ?[,;:])+"), r"\1"),
    Rule((), re.compile(r"[,;:] ?([.!?])"), r"\1"),
    Rule((), re.compile(r"([.!?])[.!?]+"), r"\1"),
    Rule((), re.compile(r"^[\s.,;:!?'-]+"), ""),
)
ENDS_SENTENCE = re.compile(r"[.!?]\Z")


def _drop_parentheticals(text: str) -> str:
    """Innermost first, so nested parentheses go too."""
    for _ in range(text.count("(")):
        stripped = PARENTHETICAL.sub(" ", text)
        if stripped == text:
            break
        text = stripped
    return text


def _say_numbers(text: str) -> str:
    """The NUMBERS rules, run only over the stretches of `text` around its digits."""
    pieces, done = [], 0
    for start, end in _number_windows(text):
        pieces += [text[done:start], _apply(NUMBERS, text[start:end])]
        done = end
    return "".join([*pieces, text[done:]])


def _number_windows(text: str) -> list[tuple[int, int]]:
    """Disjoint stretches, cut at spaces, holding every digit with NUMBER_CONTEXT characters around it."""
    windows: list[tuple[int, int]] = []
    for match in DIGITS.finditer(text):
        start = text.rfind(" ", 0, max(0, match.start() - NUMBER_CONTEXT)) + 1
        end = text.find(" ", min(len(text), match.end() + NUMBER_CONTEXT))
        end = len(text) if end < 0 else end
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(end, windows[-1][1]))
        else:
            windows.append((start, end))
    return windows


def _tidy(text: str) -> str:
    text = _apply(TIDY, text).strip()
    if not any(c.isalnum() for c in text):
        return ""
    text = text.rstrip(",;:-' ")
    return text if ENDS_SENTENCE.search(text) else text + "."


def _speak_block(block: str) -> str:
    """One paragraph (a single line) made speakable."""
    text = _drop_parentheticals(_apply(CLEANUP, block))
    text = _say_numbers(_apply(ABBREVIATIONS, text))
    return _tidy(_apply(SYMBOLS, text))


def speakable(text: str) -> str:
    """`text` normalised for a TTS voice and for the transcript it is trained with: see the module
    docstring for every rule. No digits survive; paragraphs are separated by a blank line."""
    spoken = (_speak_block(block) for block in _blocks(text))
    return "\n\n".join(block for block in spoken if block)


# ---------------------------------------------------------------------------------- rewrite (Krist)

BOILERPLATE = re.compile(
    r"\b(?:click (?:here|below)|subscribe|cookies?|sign (?:up|in)|log ?in|newsletter|privacy policy|"
    r"terms (?:of|and) (?:use|service|conditions)|all rights reserved|copyright|share this|follow us|read more|"
    r"advertisement|javascript|skip to (?:main )?content|back to top|related (?:articles|posts)|"
    r"leave a (?:comment|reply)|posted (?:on|by)|log out|for more information)\b", re.IGNORECASE)
MIN_WORDS = 4
MIN_WORDS_UNPUNCTUATED = 8
MIN_LETTER_SHARE = 0.6


def _mostly_letters(sentence: str) -> bool:
    visible = len(sentence) - sum(map(str.isspace, sentence))
    return sum(map(str.isalpha, sentence)) >= MIN_LETTER_SHARE * visible


def usable_sentence(sentence: str) -> bool:
    """A sentence worth reading aloud, before normalisation: mostly letters, not boilerplate, no
    address to visit or write to."""
    return _mostly_letters(sentence) and not BOILERPLATE.search(sentence) and not URL_OR_EMAIL.search(sentence)


def _long_enough(raw: str, words: int) -> bool:
    """MIN_WORDS, or MIN_WORDS_UNPUNCTUATED for a line without end punctuation (a heading, a menu)."""
    return words >= (MIN_WORDS if ENDS_SENTENCE.search(raw.rstrip("\"')]")) else MIN_WORDS_UNPUNCTUATED)


def _spoken_sentences(block: str) -> Iterator[str]:
    for start, end in sentence_spans(block):
        raw = block[start:end]
        if not usable_sentence(raw):
            continue
        spoken = _speak_block(raw)
        if _long_enough(raw, len(spoken.split())):
            yield spoken


def rewrite(page: str) -> str:
    """Krist without a model: the page's usable sentences, speakable, paragraphs kept."""
    seen: set[str] = set()
    paragraphs = []
    for block in _blocks(page):
        kept = []
        for sentence in _spoken_sentences(block):
            if sentence not in seen:
                seen.add(sentence)
                kept.append(sentence)
        if kept:
            paragraphs.append(" ".join(kept))
    return "\n\n".join(paragraphs)


# ---------------------------------------------------------------------------------- questions (Quest)


@lru_cache(maxsize=16)
def _compile_question_pattern(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.MULTILINE)
    except re.error as e:
        raise MixcError(f"question_pattern {pattern!r} is not a valid regular expression: {e}",
                        "fix quest { question_pattern } in the spec (Python `re` syntax; group 1, if any, is the "
                        "question)") from None


def mine_questions(text: str, pattern: str, limit: int) -> list[tuple[str, int, int]]:
    """(question, start, end) for the first `limit` distinct matches of `pattern` in `text`, in page
    order: group 1 when the pattern has a group, else the whole match, with whitespace collapsed.
    The pattern is compiled with re.MULTILINE, so "^" also matches at the start of every line."""
    regex = _compile_question_pattern(pattern)
    group = 1 if regex.groups else 0
    seen: set[str] = set()
    questions: list[tuple[str, int, int]] = []
    for match in regex.finditer(text):
        if len(questions) >= limit:
            break
        start, end = match.span(group)
        question = " ".join(text[start:end].split()) if start >= 0 else ""
        if question and question not in seen:
            seen.add(question)
            questions.append((question, start, end))
    return questions


@dataclass(frozen=True)
class PageIndex:
    """A page's sentences with their content stems, and each stem's idf over those sentences."""

    spans: tuple[tuple[int, int], ...]
    texts: tuple[str, ...]
    stems: tuple[frozenset[str], ...]
    idf: dict[str, float]
    unseen_idf: float  # a stem the page never uses weighs most


@lru_cache(maxsize=8)
def _index(page: str) -> PageIndex:
    spans = tuple(sentence_spans(page))
    texts = tuple(" ".join(page[s:e].split()) for s, e in spans)
    stems = tuple(frozenset(content_stems(t)) for t in texts)
    df = Counter(stem for sentence in stems for stem in sentence)
    n = len(spans)
    idf = {stem: math.log((n + 1) / (count + 0.5)) for stem, count in df.items()}
    return PageIndex(spans, texts, stems, idf, math.log((n + 1) / 0.5))


SUPPORT_THRESHOLD = 0.6  # the idf-weighted share of the question's content stems a sentence must hold


def _support_score(question_stems: list[str], sentence: frozenset[str], index: PageIndex) -> float:
    weights = [index.idf.get(stem, index.unseen_idf) for stem in question_stems]
    found = sum(w for stem, w in zip(question_stems, weights) if stem in sentence)
    return found / sum(weights)


def _is_question(sentence: str) -> bool:
    return sentence.rstrip("\"')]\u201d\u2019").endswith("?")


def _listenable(sentence: str) -> bool:
    return usable_sentence(sentence) and _long_enough(sentence, len(sentence.split()))


def supporting(question: str, page: str, k: int = 2) -> list[tuple[int, int]]:
    """Spans (in page order) of the at most `k` sentences of `page` that best support `question`:
    the idf-weighted share of the question's content stems each holds, at least SUPPORT_THRESHOLD.
    Questions (the question's own sentence among them) and unusable sentences never count."""
    stems = sorted(set(content_stems(question)))
    if not stems:
        return []
    index = _index(page)
    asked = " ".join(question.split())
    scored = []
    for position, (text, sentence) in enumerate(zip(index.texts, index.stems)):
        if _is_question(text) or asked in text or not _listenable(text):
            continue
        score = _support_score(stems, sentence, index)
        if score >= SUPPORT_THRESHOLD:
            scored.append((-score, position))
    best = sorted(position for _, position in sorted(scored)[:k])
    return [index.spans[p] for p in best]


def _either_case(words: str) -> str:
    return "|".join(f"[{w[0].upper()}{w[0]}]{w[1:]}" for w in words.split())


# Words that point outside the question: to the page ("this", "the above"), the reader ("you"), a
# person named elsewhere ("he", "they").
DEIXIS = re.compile(r"\b(?:" + _either_case("this these those above below following here herein you your yours "
                                            "yourself we our ours us me my he she him her his hers they them their")
                    + r"|I|[Tt]he (?:article|page|text|passage|author|story|post|video|image|picture|figure|table|"
                      r"chart|writer))\b")


def self_contained(question: str) -> bool:
    """No deixis: the question makes sense without the page around it."""
    return not DEIXIS.search(question)


def answerable(question: str, page: str) -> bool:
    return self_contained(question) and bool(supporting(question, page))


QUESTION_WORD = re.compile(r"\b(when|where|who|whom|whose|why|how(?: many| much| long| far| old| big| large| tall| "
                           r"high| deep| often)?|what|which)\b", re.IGNORECASE)
YES_NO = re.compile(r"^(?:is|are|was|were|do|does|did|can|could|has|have|had|will|would|should|may|might)\b",
                    re.IGNORECASE)
TRAILING_STOP = re.compile(r"[.!?]+\Z")
LOWERCASE_WORD = re.compile(r"(?<![\w.@/-])[a-z]+\b(?!\.\w|@)")  # a word in lowercase, not part of an address


def _reasoning(question: str) -> str:
    """The step from the page's words to the question: named by its question word."""
    asked = QUESTION_WORD.search(question)
    if asked:
        word = " ".join(asked.group().lower().split())
        if word not in ("what", "which", "whom", "whose"):
            return f"that tells us {word}"
    return "that answers the question" if YES_NO.match(question.strip()) else "that is the answer"


def _as_clause(sentence: str, page_words: frozenset[str]) -> str:
    """A sentence to follow "that": no final stop, its first word lowercased when it is a function
    word or the page writes it in lowercase elsewhere ("The" -> "the", "Exports" -> "exports"), so
    names keep their capital."""
    first, _, rest = TRAILING_STOP.sub("", sentence).partition(" ")
    lower = first.lower()
    common = lower in STARTERS or lower in STOPWORDS or lower in page_words
    return f"{lower if common and first != 'I' else first} {rest}".strip()


def answer(question: str, page: str) -> str:
    """Quest's answer: the supporting sentences, speakable, and a one-line reasoning step."""
    sentences = [s for s in (" ".join(speakable(page[a:b]).split()) for a, b in supporting(question, page)) if s]
    if not sentences:
        return ""
    page_words = frozenset(LOWERCASE_WORD.findall(page))
    said = ", and that ".join(_as_clause(s, page_words) for s in sentences)
    return f"The page says that {said}; so {_reasoning(question)}."


# ---------------------------------------------------------------------------------- output checks


@lru_cache(maxsize=8)
def _page_vocabulary(page: str) -> frozenset[str]:
    return frozenset(content_stems(page)) | frozenset(content_stems(speakable(page)))


def grounded(answer: str, page: str) -> float:
    """The share of the answer's distinct content stems that the page uses, written or spoken (so
    "nineteen ninety-nine" is grounded by "1999"); 0.0 for an answer without content words."""
    stems = set(content_stems(answer))
    if not stems:
        return 0.0
    vocabulary = _page_vocabulary(page)
    return sum(stem in vocabulary for stem in stems) / len(stems)


# Phrases only a refusing assistant writes, anywhere in the text; and openings that refuse when the
# text starts with them (a page may well say "I cannot ..." further in).
REFUSAL_ANYWHERE = re.compile(r"\bas an ai\b|\bas a (?:large )?language model\b|\bI(?:'m| am) (?:just )?an ai\b|"
                              r"\bI (?:cannot|can't|can not|won't) (?:help|assist|comply|provide) with\b",
                              re.IGNORECASE)
REFUSAL_OPENING = re.compile(r"\s*(?:sorry\b|I(?:'m| am) (?:sorry|afraid|unable|not able)\b|I apologi[sz]e\b|"
                             r"I (?:cannot|can't|can not|won't|will not)\b|I (?:do not|don't) have access\b|"
                             r"unfortunately,? I (?:cannot|can't|am unable)\b)", re.IGNORECASE)


def refusal(text: str) -> bool:
    """Whether a model's output refuses the task instead of doing it ("I'm sorry, ...", "As an AI ...")."""
    text = _replace_characters(text)
    return bool(REFUSAL_OPENING.match(text) or REFUSAL_ANYWHERE.search(text))


# ---------------------------------------------------------------------------------- the backend


def _field(fields: dict[str, str], task: str, name: str) -> str:
    if name not in fields:
        raise ValueError(f"extractive task {task!r} needs the field {name!r}; got {sorted(fields)}")
    return fields[name]


def respond(task: str, fields: dict[str, str]) -> str:
    """The backend's reply to one request: see the module docstring."""
    if task == "rewrite":
        return rewrite(_field(fields, task, "page"))
    if task == "filter":
        return "yes" if answerable(_field(fields, task, "question"), _field(fields, task, "page")) else "no"
    if task == "answer":
        return answer(_field(fields, task, "question"), _field(fields, task, "page"))
    raise ValueError(f"the extractive backend has no task {task!r} (rewrite, filter, answer)")
