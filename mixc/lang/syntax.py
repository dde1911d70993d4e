"""Text -> AST. Every node carries its span; syntax errors get a named cause, a caret and a hint."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Union, cast

from lark import Lark, ParseTree, Token, Transformer, UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from mixc.lang.diagnostics import Diagnostic, Span, SpecError, error
from mixc.lang.units import unit_word

# ----------------------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Quantity:
    """A number with an optional unit, kept as written (`250ms`, `1.67T`, `60%`)."""

    raw: str
    span: Span


@dataclass(frozen=True)
class String:
    value: str
    span: Span


@dataclass(frozen=True)
class Name:
    value: str
    span: Span


@dataclass(frozen=True)
class ListValue:
    items: tuple["Value", ...]
    span: Span


@dataclass(frozen=True)
class Arg:
    name: Name | None
    value: "Value"
    span: Span


@dataclass(frozen=True)
class Call:
    name: Name
    args: tuple[Arg, ...]
    span: Span


Value = Union[Quantity, String, Name, ListValue, Call]


@dataclass(frozen=True)
class Field:
    name: Name
    value: Value
    span: Span


@dataclass(frozen=True)
class Block:
    name: Name
    label: Name | None
    kind: Name | None
    items: tuple["BodyItem", ...]
    span: Span  # from the name to the closing brace

    @property
    def header(self) -> Span:
        last = self.kind or self.label or self.name
        return Span(self.span.file, self.name.span.line, self.name.span.col,
                    last.span.end_line, last.span.end_col)


@dataclass(frozen=True)
class MixEntry:
    share: Quantity
    name: Name
    items: tuple["BodyItem", ...] | None  # None: a leaf; a tuple: a nested group
    span: Span


@dataclass(frozen=True)
class Extends:
    path: String
    span: Span


BodyItem = Union[Field, Block, MixEntry]  # what a block holds, and a spec once its `extends` is resolved
Item = Union[BodyItem, Extends]  # `extends` comes only at the top of a file


@dataclass(frozen=True)
class Comment:
    text: str
    line: int
    col: int


@dataclass(frozen=True)
class SpecFile:
    """One parsed .mix file: its items (the AST, every node with its span), its text and comments."""
    path: str
    text: str
    items: tuple[Item, ...]
    comments: tuple[Comment, ...]


def head_span(item: Item) -> Span:
    if isinstance(item, Field):
        return item.name.span
    if isinstance(item, Block):
        return item.header
    if isinstance(item, MixEntry):
        return item.name.span
    return item.span


# -------------------------------------------------------------------------------------- parser

GRAMMAR = Path(__file__).with_name("grammar.lark")


@lru_cache(maxsize=1)
def parser() -> Lark:
    """The LALR parser; comments are handed to `_CommentSink` as the lexer meets them."""
    return Lark(GRAMMAR.read_text(), parser="lalr", lexer="contextual", maybe_placeholders=False,
                lexer_callbacks={"COMMENT": _CommentSink.push})


def _span(path: str, first: Token | object, last: Token | object) -> Span:
    a = first if isinstance(first, Token) else first.span  # type: ignore[attr-defined]
    b = last if isinstance(last, Token) else last.span  # type: ignore[attr-defined]
    if isinstance(a, Token):
        line, col = _start(a)
    else:
        line, col = a.line, a.col
    if isinstance(b, Token):
        end_line, end_col = _end(b)
    else:
        end_line, end_col = b.end_line, b.end_col
    return Span(path, line, col, end_line, end_col)


def _start(tok: Token) -> tuple[int, int]:
    """Where a token starts: line and column. lark types them optional, as a token made by hand has
    none; every token mixc reads comes from the lexer, which sets them."""
    assert tok.line is not None and tok.column is not None, f"token {tok!r} has no position"
    return tok.line, tok.column


def _end(tok: Token) -> tuple[int, int]:
    """Where a lexed token ends: line, and the column just after it."""
    assert tok.end_line is not None and tok.end_column is not None, f"token {tok!r} has no end position"
    return tok.end_line, tok.end_column


_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "r": "\r"}


def unescape(raw: str) -> str:
    out, i, body = [], 0, raw[1:-1]
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            out.append(_ESCAPES.get(body[i + 1], body[i + 1]))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


class _ToAst(Transformer):
    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def _s(self, first, last) -> Span:
        return _span(self.path, first, last)

    def start(self, children):
        return tuple(children)

    def quantity(self, c):
        return Quantity(str(c[0]), self._s(c[0], c[0]))

    def string(self, c):
        return String(unescape(str(c[0])), self._s(c[0], c[0]))

    def name(self, c):
        return Name(str(c[0]), self._s(c[0], c[0]))

    def list(self, c):
        return ListValue(tuple(x for x in c[1:-1]), self._s(c[0], c[-1]))

    def call(self, c):
        name = Name(str(c[0]), self._s(c[0], c[0]))
        return Call(name, tuple(c[2:-1]), self._s(c[0], c[-1]))

    def arg(self, c):
        if len(c) == 3:
            name = Name(str(c[0]), self._s(c[0], c[0]))
            return Arg(name, c[2], self._s(c[0], c[2]))
        return Arg(None, c[0], c[0].span)

    def field(self, c):
        name = Name(str(c[0]), self._s(c[0], c[0]))
        return Field(name, c[2], self._s(c[0], c[2]))

    def label(self, c):
        return Name(str(c[0]), self._s(c[0], c[0]))

    def kind(self, c):
        return ("kind", Name(str(c[1]), self._s(c[1], c[1])))

    def block(self, c):
        name = Name(str(c[0]), self._s(c[0], c[0]))
        brace = next(i for i, x in enumerate(c) if isinstance(x, Token) and x.type == "LBRACE")
        label = next((x for x in c[1:brace] if isinstance(x, Name)), None)
        kind = next((x[1] for x in c[1:brace] if isinstance(x, tuple)), None)
        return Block(name, label, kind, tuple(c[brace + 1:-1]), self._s(c[0], c[-1]))

    def mix_entry(self, c):
        share = Quantity(str(c[0]), self._s(c[0], c[0]))
        name = Name(str(c[1]), self._s(c[1], c[1]))
        if len(c) > 2:
            return MixEntry(share, name, tuple(c[3:-1]), self._s(c[0], c[-1]))
        return MixEntry(share, name, None, self._s(c[0], c[1]))

    def extends(self, c):
        path = String(unescape(str(c[1])), self._s(c[1], c[1]))
        return Extends(path, self._s(c[0], c[1]))


# ------------------------------------------------------------------------------ syntax errors

_TERMINAL_NAMES = {
    "NAME": "a name", "QUANTITY": "a number", "STRING": "a string", "EQUAL": "'='",
    "COLON": "':'", "LBRACE": "'{'", "RBRACE": "'}'", "LBRACKET": "'['", "RBRACKET": "']'",
    "LPAR": "'('", "RPAR": "')'", "COMMA": "','", "SEMICOLON": "';'", "EXTENDS": "'extends'",
    "$END": "the end of the file",
}


def _describe(terminal: str) -> str:
    return _TERMINAL_NAMES.get(terminal, terminal.lower())


def _token_text(tok: Token) -> str:
    if tok.type == "$END":
        return "the end of the file"
    return f"'{tok}'" if len(tok) <= 30 else f"'{str(tok)[:27]}...'"


def _point(path: str, line: int, col: int, width: int = 1) -> Span:
    return Span(path, line, col, line, col + width)


def _tok_span(path: str, tok: Token) -> Span:
    line, col = _start(tok)
    return Span(path, line, col, tok.end_line or line, tok.end_column or col + max(1, len(tok)))


def _end_span(path: str, text: str) -> Span:
    lines = text.split("\n")
    while len(lines) > 1 and not lines[-1].strip():
        lines.pop()
    return _point(path, len(lines), len(lines[-1]) + 1)


def _braces(text: str) -> list[Token]:
    """The brace tokens of a text that lexes (used to find the block a missing '}' belongs to)."""
    try:
        return [t for t in parser().lex(text) if t.type in ("LBRACE", "RBRACE")]
    except UnexpectedInput:
        return []


def _indent(text_lines: list[str], line: int) -> int:
    src = text_lines[line - 1]
    return len(src) - len(src.lstrip())


def _unclosed_brace(text: str) -> Token | None:
    lines = text.split("\n")
    stack: list[Token] = []
    suspects: list[Token] = []
    for tok in _braces(text):
        if tok.type == "LBRACE":
            stack.append(tok)
        elif stack:
            opening = stack.pop()
            (line, col), (opening_line, _) = _start(tok), _start(opening)
            first_on_line = lines[line - 1][: col - 1].strip() == ""
            if first_on_line and opening_line != line and _indent(lines, line) != _indent(lines, opening_line):
                suspects.append(opening)
    if suspects:
        return suspects[0]
    return stack[-1] if stack else None


def _bad_escape(rest: str) -> int | None:
    """The offset of the first unknown escape in a string's text (from its opening quote)."""
    i = 1
    while i < len(rest) and rest[i] != '"':
        if rest[i] == "\\":
            if i + 1 < len(rest) and rest[i + 1] not in 'nrt"\\':
                return i
            i += 1
        i += 1
    return None


def _is_control(ch: str) -> bool:
    return ch == "\0" or not (ch.isprintable() or ch.isspace())


def _syntax_from_characters(path: str, text: str, exc: UnexpectedCharacters) -> Diagnostic:
    pos = cast(int, exc.pos_in_stream)  # set by the lexer; lark declares it `= None` on the base class
    ch = text[pos] if pos < len(text) else ""
    line, col = exc.line, exc.column
    if ch == '"':
        rest = text[pos:].split("\n", 1)[0]
        escape = _bad_escape(rest)
        if escape is not None:
            return error("syntax.bad-escape", f"unknown escape '{rest[escape:escape + 2]}' in a string",
                         _point(path, line, col + escape, 2),
                         "strings know \\n \\t \\r \\\" and \\\\; write \\\\ for a backslash "
                         "(a regex \\s is \"\\\\s\")")
        bad = next((i for i, c in enumerate(rest) if _is_control(c)), None)
        if bad is not None:
            return error("syntax.binary", f"unexpected control character {rest[bad]!r}",
                         _point(path, line, col + bad), "is this a binary file? a .mix spec is UTF-8 text")
        return error("syntax.unterminated-string", "unterminated string", Span(path, line, col, line, col + len(rest)),
                     'close the string with `"` on the same line; strings cannot span lines')
    if ch == "." and pos + 1 < len(text) and text[pos + 1].isdigit():
        return error("syntax.bad-number", "a number needs a digit before its decimal point",
                     _point(path, line, col), "write 0.5, not .5")
    if ch in "/" and text[pos:pos + 2] == "//":
        return error("syntax.bad-comment", "comments start with '#'", _point(path, line, col, 2),
                     "replace '//' with '#'")
    if _is_control(ch):
        return error("syntax.binary", f"unexpected control character {ch!r}", _point(path, line, col),
                     "is this a binary file? a .mix spec is UTF-8 text")
    return error("syntax.unexpected-character", f"unexpected character {ch!r}", _point(path, line, col),
                 _char_hint(ch))


def _char_hint(ch: str) -> str:
    hints = {"'": 'strings use double quotes: "like this"',
             "-": "names use letters, digits and '_' (write en_us, not en-us)",
             ".": "names use letters, digits and '_'; paths go in double quotes"}
    return hints.get(ch, "remove it, or put it inside a double-quoted string")


def _syntax_from_token(path: str, text: str, exc: UnexpectedToken) -> Diagnostic:
    tok = exc.token
    expected = set(exc.expected)
    previous = _previous_token(exc)
    if tok.type == "$END" and "RBRACE" in expected:
        opening = _unclosed_brace(text)
        if opening is not None:
            return error("syntax.missing-brace", "missing '}': this block is never closed",
                         _tok_span(path, opening), "add '}' where the block should end",
                         (("the file ends here", _end_span(path, text)),))
    if tok.type == "RBRACE" and "RBRACE" not in expected and "RBRACKET" not in expected and \
            "RPAR" not in expected and not _value_expected(expected):
        return error("syntax.unmatched-brace", "unmatched '}': no block is open here",
                     _tok_span(path, tok), "remove it, or add the '{' that it closes")
    if "RBRACKET" in expected and tok.type not in ("COMMA",) and not _value_expected(expected) or \
            (tok.type == "$END" and "RBRACKET" in expected):
        return error("syntax.missing-bracket", f"missing ']' before {_token_text(tok)}",
                     _tok_span(path, tok) if tok.type != "$END" else _end_span(path, text),
                     "close the list with ']'; separate its items with ','")
    if "RPAR" in expected and not _value_expected(expected):
        return error("syntax.missing-paren", f"missing ')' before {_token_text(tok)}",
                     _tok_span(path, tok) if tok.type != "$END" else _end_span(path, text),
                     "close the argument list with ')'; separate arguments with ','")
    if _value_expected(expected):
        where = _tok_span(path, tok) if tok.type != "$END" else _end_span(path, text)
        after = f" after '{previous}'" if previous is not None else ""
        return error("syntax.missing-value", f"expected a value{after}, found {_token_text(tok)}", where,
                     'a value is a number (250ms, 1.5B, 60%), a "string", a name, a [list] or a call(...)')
    if previous is not None and str(previous) == "extends" and tok.type == "STRING":
        return error("syntax.misplaced-extends", "'extends' is only allowed at the top of a spec",
                     _tok_span(path, previous), "move `extends \"...\"` to the first line of the file")
    if "EQUAL" in expected and previous is not None and previous.type == "NAME":
        return error("syntax.missing-equals", f"expected '=' after '{previous}', found {_token_text(tok)}",
                     _tok_span(path, tok) if tok.type != "$END" else _end_span(path, text),
                     f"write `{previous} = <value>` for a field, or `{previous} {{ ... }}` for a block")
    if tok.type == "QUANTITY" and previous is not None and previous.type in ("NAME",):
        return error("syntax.missing-equals", f"expected '=' between '{previous}' and its value {_token_text(tok)}",
                     _tok_span(path, tok), f"write `{previous} = {tok}`")
    if tok.type == "EXTENDS":
        return error("syntax.misplaced-extends", "'extends' is only allowed at the top of a spec",
                     _tok_span(path, tok), "move `extends \"...\"` to the first line of the file")
    names = ", ".join(sorted(_describe(t) for t in expected if not t.startswith("__")))
    where = _tok_span(path, tok) if tok.type != "$END" else _end_span(path, text)
    return error("syntax.unexpected-token", f"unexpected {_token_text(tok)}", where,
                 f"expected {names}" if names else None)


def _value_expected(expected: set[str]) -> bool:
    return {"QUANTITY", "STRING", "LBRACKET"} <= expected


def _previous_token(exc: UnexpectedToken) -> Token | None:
    state = getattr(exc, "interactive_parser", None)
    if state is None:
        return None
    stack = state.parser_state.value_stack
    for item in reversed(stack):
        if isinstance(item, Token):
            return item
        return None
    return None


VALUE_STARTS = ("EQUAL", "COMMA", "LBRACKET", "LPAR")


def _detached_unit(path: str, text: str, exc: UnexpectedToken) -> Diagnostic | None:
    """`seq_len = 20 seconds`: a unit written apart from its number, just before the parse failed."""
    try:
        tokens = [t for t in parser().lex(text) if t.start_pos is not None and t.start_pos < exc.token.start_pos] \
            if exc.token.start_pos is not None else []
    except UnexpectedInput:
        return None
    for back in (1, 2):
        if len(tokens) < back + 2:
            continue
        before, number, word = tokens[-back - 2], tokens[-back - 1], tokens[-back]
        suffix = unit_word(str(word)) if word.type == "NAME" else None
        if number.type == "QUANTITY" and before.type in VALUE_STARTS and suffix and number.line == word.line:
            return error("syntax.detached-unit", f"unit '{word}' is written apart from its number {number}",
                         _tok_span(path, word), f"a unit follows its number without a space: write `{number}{suffix}`")
    return None


def syntax_error(path: str, text: str, exc: UnexpectedInput) -> Diagnostic:
    if isinstance(exc, UnexpectedToken) and (detached := _detached_unit(path, text, exc)):
        return detached
    if isinstance(exc, UnexpectedCharacters):
        return _syntax_from_characters(path, text, exc)
    if isinstance(exc, UnexpectedToken):
        return _syntax_from_token(path, text, exc)
    return error("syntax.error", str(exc).split("\n")[0], _point(path, getattr(exc, "line", 1) or 1,
                                                                 getattr(exc, "column", 1) or 1))


# ---------------------------------------------------------------------------------- entry point


BOM = "\ufeff"  # some Windows editors start UTF-8 files with one


def decode(path: str, data: bytes) -> str:
    """A spec file's bytes as text: UTF-8, a leading byte-order mark dropped."""
    try:
        return data.decode("utf-8").removeprefix(BOM)
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        col = len(before) - (before.rfind(b"\n") + 1) + 1
        raise SpecError([error("syntax.not-utf8", f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x})",
                               _point(path, line, col), "is this a binary file? a .mix spec is UTF-8 text")]) from None


def parse(text: str, path: str = "<spec>") -> SpecFile:
    """Parse spec text into an AST; raises SpecError with one located diagnostic on bad syntax."""
    comments: list[Comment] = []

    def keep(tok: Token) -> None:
        comments.append(Comment(str(tok), *_start(tok)))

    try:
        tree = _parse_tree(text, keep)
    except UnexpectedInput as exc:
        raise SpecError([syntax_error(path, text, exc)]) from None
    items = _ToAst(path).transform(tree)
    return SpecFile(path, text, tuple(items), tuple(comments))


class _CommentSink:
    current: Callable[[Token], None] | None = None

    @classmethod
    def push(cls, tok: Token) -> Token:
        if cls.current is not None:
            cls.current(tok)
        return tok


def _parse_tree(text: str, keep: Callable[[Token], None]) -> ParseTree:
    _CommentSink.current = keep
    try:
        return parser().parse(text)
    finally:
        _CommentSink.current = None


def parse_file(path: str | Path) -> SpecFile:
    p = Path(path)
    return parse(decode(str(path), p.read_bytes()), str(path))
