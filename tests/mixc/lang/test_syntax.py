import pytest

from mixc.lang.diagnostics import SpecError
from mixc.lang.syntax import Block, Call, Field, ListValue, MixEntry, Quantity, String, parse


def test_items_carry_spans_and_comments() -> None:
    spec = parse('# head\nsource web : audio {  # trailing\n  files = "a/*.wav"\n}\n', "x.mix")
    (block,) = spec.items
    assert isinstance(block, Block)
    assert (block.name.value, block.label.value, block.kind.value) == ("source", "web", "audio")
    assert (block.span.line, block.span.col, block.span.end_line) == (2, 1, 4)
    field = block.items[0]
    assert isinstance(field, Field) and isinstance(field.value, String)
    assert (field.value.span.line, field.value.span.col) == (3, 11)
    assert [c.text for c in spec.comments] == ["# head", "# trailing"]


def test_values() -> None:
    spec = parse('a = [1, 2.5s, "x"]\nb = stochastic(0.5, first=audio)\nc = 1.67T\n')
    lst, call, qty = (i.value for i in spec.items)
    assert isinstance(lst, ListValue) and len(lst.items) == 3
    assert isinstance(call, Call) and call.args[1].name.value == "first"
    assert isinstance(qty, Quantity) and qty.raw == "1.67T"


def test_string_escapes() -> None:
    (field,) = parse(r'a = "q\"uote\\ \n"').items
    assert field.value.value == 'q"uote\\ \n'


def test_mixture_entries_nest() -> None:
    (block,) = parse("mixture { 60% a  40% g { 50% b; 50% c } }").items
    outer = block.items[1]
    assert isinstance(outer, MixEntry) and outer.name.value == "g"
    assert [e.name.value for e in outer.items] == ["b", "c"]


def test_keyword_prefix_is_a_name() -> None:
    (field,) = parse("extendsx = 1").items
    assert field.name.value == "extendsx"


@pytest.mark.parametrize("text,code", [
    ('a = "x', "syntax.unterminated-string"),
    ("a {\n b = 1\n", "syntax.missing-brace"),
    ("}", "syntax.unmatched-brace"),
    ("a 1", "syntax.missing-equals"),
    ("a =", "syntax.missing-value"),
])
def test_named_syntax_errors(text: str, code: str) -> None:
    with pytest.raises(SpecError) as info:
        parse(text, "t.mix")
    assert info.value.diagnostics[0].code == code


def test_a_byte_order_mark_is_not_part_of_the_spec() -> None:
    """Windows editors start UTF-8 files with U+FEFF: it is dropped, and columns stay 1-based."""
    from mixc.lang.syntax import decode
    spec = parse(decode("bom.mix", b"\xef\xbb\xbfseed = 1\n"), "bom.mix")
    assert isinstance(spec.items[0], Field) and spec.items[0].name.span.col == 1
    assert spec.text == "seed = 1\n"
