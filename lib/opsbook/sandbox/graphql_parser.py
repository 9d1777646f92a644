"""A small GraphQL tokenizer and recursive-descent parser: the subset the analytics API needs.

Supports operations (`query Name($v: Type! = default) {...}` or a bare `{...}`), fields
with aliases and arguments, nested selection sets, named fragments and inline fragments
(spread in place), and every literal kind (int, float, string, block string, boolean,
null, enum, list, object, $variable). Values are resolved against the variables when the
document is bound (`bind`), so the executor sees plain Python values.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any


class GraphQLError(Exception):
    def __init__(self, message: str, path: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message}
        if self.path:
            out["path"] = self.path
        return out


_TOKEN = re.compile(
    r"""
    (?P<ws>[\s,\ufeff]+|\#[^\n]*)
  | (?P<block>\"\"\"(?:[^"\\]|\\.|"(?!""))*\"\"\")
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<float>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+(?:[eE][+-]?[0-9]+)?|[eE][+-]?[0-9]+))
  | (?P<int>-?(?:0|[1-9][0-9]*))
  | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
  | (?P<spread>\.\.\.)
  | (?P<punct>[!$&()\:=@\[\]{}|])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str  # block|string|float|int|name|spread|punct|eof
    text: str
    pos: int


def tokenize(source: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if not m:
            raise GraphQLError(f"Syntax Error: unexpected character {source[pos]!r} at {pos}")
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, m.group(), pos))
        pos = m.end()
    tokens.append(Token("eof", "", pos))
    return tokens


@dataclass(frozen=True)
class Var:
    name: str


@dataclass(frozen=True)
class Enum:
    name: str


@dataclass
class Field:
    name: str
    alias: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    selections: list[Field] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.alias or self.name


@dataclass
class Operation:
    kind: str
    name: str | None
    variables: dict[str, tuple[str, Any]]  # name -> (type, default)
    selections: list[Field]


@dataclass
class _Spread:
    fragment: str


class Parser:
    def __init__(self, source: str) -> None:
        self.tokens = tokenize(source)
        self.i = 0
        self.fragments: dict[str, list[Any]] = {}

    # ---- token helpers ----------------------------------------------------
    def peek(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, text: str) -> Token:
        tok = self.next()
        if tok.text != text or tok.kind not in ("punct", "spread"):
            shown = tok.text or "<EOF>"
            raise GraphQLError(f"Syntax Error: Expected {text!r}, found {shown!r} at {tok.pos}")
        return tok

    def accept(self, text: str) -> bool:
        tok = self.peek()
        if tok.text == text and tok.kind in ("punct", "spread"):
            self.i += 1
            return True
        return False

    def name(self) -> str:
        tok = self.next()
        if tok.kind != "name":
            raise GraphQLError(
                f"Syntax Error: Expected Name, found {tok.text or '<EOF>'!r} at {tok.pos}"
            )
        return tok.text

    # ---- grammar ----------------------------------------------------------
    def document(self) -> list[Operation]:
        ops: list[Operation] = []
        raw_ops: list[tuple[str, str | None, dict[str, tuple[str, Any]], list[Any]]] = []
        while self.peek().kind != "eof":
            tok = self.peek()
            if tok.text == "{" and tok.kind == "punct":
                raw_ops.append(("query", None, {}, self.selection_set()))
            elif tok.kind == "name" and tok.text in ("query", "mutation", "subscription"):
                self.next()
                op_name = self.name() if self.peek().kind == "name" else None
                variables = self.variable_defs() if self.peek().text == "(" else {}
                self.directives()
                raw_ops.append((tok.text, op_name, variables, self.selection_set()))
            elif tok.kind == "name" and tok.text == "fragment":
                self.next()
                frag_name = self.name()
                if self.name() != "on":
                    raise GraphQLError("Syntax Error: Expected 'on' in fragment definition")
                self.name()
                self.directives()
                self.fragments[frag_name] = self.selection_set()
            else:
                raise GraphQLError(f"Syntax Error: Unexpected {tok.text or '<EOF>'!r} at {tok.pos}")
        for kind, op_name, variables, sels in raw_ops:
            ops.append(Operation(kind, op_name, variables, self.expand(sels, set())))
        if not ops:
            raise GraphQLError("Syntax Error: the document has no operation")
        return ops

    def expand(self, sels: list[Any], seen: set[str]) -> list[Field]:
        out: list[Field] = []
        for sel in sels:
            if isinstance(sel, _Spread):
                if sel.fragment not in self.fragments:
                    raise GraphQLError(f'Unknown fragment "{sel.fragment}".')
                if sel.fragment in seen:
                    raise GraphQLError(f'Cannot spread fragment "{sel.fragment}" within itself.')
                out.extend(self.expand(self.fragments[sel.fragment], seen | {sel.fragment}))
            elif isinstance(sel, list):  # inline fragment
                out.extend(self.expand(sel, seen))
            else:
                sel.selections = self.expand(sel.selections, seen)
                out.append(sel)
        return out

    def variable_defs(self) -> dict[str, tuple[str, Any]]:
        self.expect("(")
        defs: dict[str, tuple[str, Any]] = {}
        while not self.accept(")"):
            self.expect("$")
            var = self.name()
            self.expect(":")
            type_str = self.type_ref()
            default = self.value(const=True) if self.accept("=") else None
            defs[var] = (type_str, default)
        return defs

    def type_ref(self) -> str:
        if self.accept("["):
            inner = self.type_ref()
            self.expect("]")
            text = f"[{inner}]"
        else:
            text = self.name()
        if self.accept("!"):
            text += "!"
        return text

    def directives(self) -> None:
        while self.accept("@"):
            self.name()
            if self.peek().text == "(":
                self.arguments()

    def selection_set(self) -> list[Any]:
        self.expect("{")
        sels: list[Any] = []
        while not self.accept("}"):
            if self.accept("..."):
                if self.peek().kind == "name" and self.peek().text != "on":
                    sels.append(_Spread(self.name()))
                    self.directives()
                else:
                    if self.peek().text == "on":
                        self.next()
                        self.name()
                    self.directives()
                    sels.append(self.selection_set())
                continue
            first = self.name()
            alias, fname = (first, self.name()) if self.accept(":") else (None, first)
            args = self.arguments() if self.peek().text == "(" else {}
            self.directives()
            children = self.selection_set() if self.peek().text == "{" else []
            sels.append(Field(fname, alias, args, children))
        if not sels:
            raise GraphQLError("Syntax Error: empty selection set")
        return sels

    def arguments(self) -> dict[str, Any]:
        self.expect("(")
        args: dict[str, Any] = {}
        while not self.accept(")"):
            key = self.name()
            self.expect(":")
            args[key] = self.value(const=False)
        return args

    def value(self, const: bool) -> Any:
        tok = self.next()
        if tok.kind == "punct":
            if tok.text == "$" and not const:
                return Var(self.name())
            if tok.text == "[":
                items = []
                while not self.accept("]"):
                    items.append(self.value(const))
                return items
            if tok.text == "{":
                obj: dict[str, Any] = {}
                while not self.accept("}"):
                    key = self.name()
                    self.expect(":")
                    obj[key] = self.value(const)
                return obj
        if tok.kind == "int":
            return int(tok.text)
        if tok.kind == "float":
            return float(tok.text)
        if tok.kind == "string":
            return json.loads(tok.text)
        if tok.kind == "block":
            return tok.text[3:-3].replace('\\"""', '"""').strip("\n")
        if tok.kind == "name":
            return {"true": True, "false": False, "null": None}.get(tok.text, Enum(tok.text))
        raise GraphQLError(f"Syntax Error: Unexpected {tok.text or '<EOF>'!r} at {tok.pos}")


def parse(source: str, operation_name: str | None = None) -> Operation:
    ops = Parser(source).document()
    if operation_name:
        for op in ops:
            if op.name == operation_name:
                return op
        raise GraphQLError(f'Unknown operation named "{operation_name}".')
    if len(ops) > 1:
        raise GraphQLError("Must provide operation name if query contains multiple operations.")
    return ops[0]


def resolve(value: Any, variables: dict[str, Any]) -> Any:
    """Replace $variables (and enums, by their name) with plain values."""
    if isinstance(value, Var):
        if value.name not in variables:
            raise GraphQLError(f'Variable "${value.name}" is not defined or has no value.')
        return variables[value.name]
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, list):
        return [resolve(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, variables) for k, v in value.items()}
    return value


def bind_variables(op: Operation, given: dict[str, Any] | None) -> dict[str, Any]:
    given = dict(given or {})
    out: dict[str, Any] = {}
    for name, (type_str, default) in op.variables.items():
        if name in given and given[name] is not None:
            out[name] = given[name]
        elif default is not None:
            out[name] = resolve(default, {})
        elif type_str.endswith("!"):
            raise GraphQLError(
                f'Variable "${name}" of required type "{type_str}" was not provided.'
            )
        else:
            out[name] = None
    return out
