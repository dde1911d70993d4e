"""Diagnostics: what every stage of the compiler reports, and how it is rendered.

A diagnostic points at a span of a source file. Rendering follows the convention users know from
compilers: `path:line:col: error: message`, the source line, a caret under the span, then a hint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum

from mixc.errors import SPEC, MixcError


@dataclass(frozen=True)
class Span:
    """A region of a source file; lines and columns are 1-based, `end_col` is exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def to_json(self) -> dict:
        return {"file": self.file, "line": self.line, "col": self.col,
                "end_line": self.end_line, "end_col": self.end_col}


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Diagnostic:
    severity: Severity
    code: str
    message: str
    span: Span | None = None
    hint: str | None = None
    notes: tuple[tuple[str, Span | None], ...] = field(default=())

    def to_json(self) -> dict:
        return {
            "severity": self.severity.value,
            "code": self.code,
            "message": self.message,
            "span": self.span.to_json() if self.span else None,
            "hint": self.hint,
            "notes": [{"message": m, "span": s.to_json() if s else None} for m, s in self.notes],
        }


def error(code: str, message: str, span: Span | None, hint: str | None = None,
          notes: tuple[tuple[str, Span | None], ...] = ()) -> Diagnostic:
    return Diagnostic(Severity.ERROR, code, message, span, hint, notes)


def warning(code: str, message: str, span: Span | None, hint: str | None = None,
            notes: tuple[tuple[str, Span | None], ...] = ()) -> Diagnostic:
    return Diagnostic(Severity.WARNING, code, message, span, hint, notes)


class SpecError(MixcError):
    """The spec cannot be used as written: carries every located diagnostic found. The CLI renders
    them (with their snippets and hints) and exits with 1, whatever the cause underneath (a field
    naming weights absent from this machine is still reported, and fixed, at that field)."""

    exit_code = SPEC

    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__("; ".join(d.message for d in diagnostics))
        self.diagnostics = diagnostics

    def __reduce__(self):
        return type(self), (self.diagnostics,)


class Sources:
    """The text of every file a diagnostic may point into, for snippets."""

    def __init__(self) -> None:
        self._texts: dict[str, str] = {}

    def add(self, path: str, text: str) -> None:
        self._texts[path] = text

    def line(self, path: str, number: int) -> str | None:
        text = self._texts.get(path)
        if text is None:
            return None
        lines = text.split("\n")
        return lines[number - 1] if 0 < number <= len(lines) else ""


MAX_SNIPPET = 100


def _printable(line: str) -> str:
    out = []
    for ch in line:
        if ch == "\t":
            out.append(" ")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append("\N{REPLACEMENT CHARACTER}")
    return "".join(out)


def _snippet(source_line: str, span: Span) -> list[str]:
    line = _printable(source_line.rstrip("\r"))
    start = max(span.col - 1, 0)
    end = span.end_col - 1 if span.end_line == span.line else len(line)
    end = max(end, start + 1)
    offset = 0
    if len(line) > MAX_SNIPPET:  # keep the span in view on very long lines
        offset = max(0, min(start - 20, len(line) - MAX_SNIPPET))
        line = ("..." if offset else "") + line[offset:offset + MAX_SNIPPET] + "..."
        shift = 3 if offset else 0
        start, end = start - offset + shift, min(end - offset + shift, len(line))
    gutter = str(span.line)
    pad = " " * len(gutter)
    caret = " " * start + "^" * max(1, min(end - start, len(line) - start + 1))
    return [f" {gutter} | {line}", f" {pad} | {caret}"]


def render(diag: Diagnostic, sources: Sources) -> str:
    where = f"{diag.span.file}:{diag.span.line}:{diag.span.col}: " if diag.span else "mixc: "
    lines = [f"{where}{diag.severity.value}: {diag.message}"]
    if diag.span:
        source_line = sources.line(diag.span.file, diag.span.line)
        if source_line is not None:
            lines += _snippet(source_line, diag.span)
    for message, span in diag.notes:
        loc = f"{span.file}:{span.line}:{span.col}: " if span else ""
        lines.append(f"  note: {loc}{message}")
    if diag.hint:
        lines.append(f"  hint: {diag.hint}")
    return "\n".join(lines)


def render_all(diags: list[Diagnostic], sources: Sources) -> str:
    body = "\n\n".join(render(d, sources) for d in diags)
    errors = sum(d.severity is Severity.ERROR for d in diags)
    warnings = len(diags) - errors
    summary = []
    if errors:
        summary.append(f"{errors} error{'s' * (errors != 1)}")
    if warnings:
        summary.append(f"{warnings} warning{'s' * (warnings != 1)}")
    return body + ("\n\n" + ", ".join(summary) if summary else "")


def to_json(diags: list[Diagnostic]) -> str:
    return json.dumps({"diagnostics": [d.to_json() for d in diags],
                       "errors": sum(d.severity is Severity.ERROR for d in diags),
                       "warnings": sum(d.severity is Severity.WARNING for d in diags)}, indent=2)


def sort_key(diag: Diagnostic) -> tuple:
    s = diag.span
    return (s.file, s.line, s.col) if s else ("", 0, 0)
