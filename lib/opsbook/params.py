"""Runbook parameters: read a notebook's `parameters` cell and check values before a kernel starts.

The parameters cell is plain Python assignments, as papermill expects:

    window_minutes: int = 60        # how far back to look
    user_email = None               # required: the user who cannot log in
    approve: list = []

Each name gets a type (its annotation, else its default's type), a default, whether
it is required (default `None` without an `Optional`/`| None` annotation) and a help
text (the trailing comment). Values come from, lowest first: the notebook default, the
environment file's `parameters:` section, then `-p name=value` overrides.

Two names are the runner's: `env` (the environment name) and `approve` (the list of
approved action ids, from `--approve`). Secrets are never values: a value that looks
like a token is refused; pass a reference such as `env:STRIPE_API_KEY` instead.
"""

from __future__ import annotations

import ast
import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import (
    BadParameterValue,
    MissingParameter,
    NoParametersCell,
    SecretLiteral,
    UnknownParameter,
)

RUNNER_PARAMETERS = ("env", "approve")
TYPES: dict[str, type] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "list": list,
    "dict": dict,
}

# Shapes of secrets that must never be parameter values, with what they are.
SECRET_SHAPES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\bsk_live_[A-Za-z0-9]{8,}"), "a Stripe live secret key (sk_live_…)"),
    (re.compile(r"\bsk_test_[A-Za-z0-9]{8,}"), "a Stripe test secret key (sk_test_…)"),
    (re.compile(r"\brk_(live|test)_[A-Za-z0-9]{8,}"), "a Stripe restricted key (rk_…)"),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=]{8,}"), "a Stripe webhook signing secret (whsec_…)"),
    (
        re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}"),
        "a JSON Web Token",
    ),
    (
        re.compile(r"^(?=.*[A-Za-z])(?=.*\d)[A-Za-z0-9_-]{40}$"),
        "a 40-character Cloudflare API token",
    ),
]


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: str  # one of TYPES, or "any"
    default: Any
    required: bool
    help: str = ""

    def describe(self) -> str:
        default = "required" if self.required else f"default {self.default!r}"
        text = f"{self.name} ({self.type}, {default})"
        return f"{text}: {self.help}" if self.help else text


def load_notebook_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        from .errors import InputError

        raise InputError(f"{path} is not a valid notebook (JSON error: {exc}).") from exc


def parameters_cell(nb: dict[str, Any]) -> str | None:
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get(
            "tags", []
        ):
            source = cell.get("source", "")
            return "".join(source) if isinstance(source, list) else source
    return None


def _annotation_type(node: ast.expr | None) -> tuple[str | None, bool]:
    """(type name, optional?) from an annotation like `int`, `list[str]`, `str | None`."""
    if node is None:
        return None, False
    if isinstance(node, ast.Constant) and node.value is None:
        return None, True
    if isinstance(node, ast.Name):
        return (node.id if node.id in TYPES else "any"), False
    if isinstance(node, ast.Subscript):
        base = node.value
        if isinstance(base, ast.Name) and base.id == "Optional":
            inner, _ = _annotation_type(node.slice)
            return inner, True
        if isinstance(base, ast.Name) and base.id in ("list", "List"):
            return "list", False
        if isinstance(base, ast.Name) and base.id in ("dict", "Dict"):
            return "dict", False
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left, lopt = _annotation_type(node.left)
        right, ropt = _annotation_type(node.right)
        return (left or right), bool(lopt or ropt)
    return "any", False


def inspect_source(source: str, where: str = "the parameters cell") -> dict[str, ParamSpec]:
    """Parse a parameters cell into specs. Only literal defaults are allowed."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise NoParametersCell(f"{where} is not valid Python: {exc}") from exc
    lines = source.splitlines()
    specs: dict[str, ParamSpec] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            name, value_node, annotation = stmt.target.id, stmt.value, stmt.annotation
        elif (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
        ):
            name, value_node, annotation = stmt.targets[0].id, stmt.value, None
        else:
            continue
        try:
            default = ast.literal_eval(value_node) if value_node is not None else None
        except ValueError:
            default = None
        ann_type, optional = _annotation_type(annotation)
        type_name = ann_type or (
            type(default).__name__ if type(default).__name__ in TYPES else "any"
        )
        line = lines[stmt.lineno - 1] if stmt.lineno - 1 < len(lines) else ""
        comment = line.split("#", 1)[1].strip() if "#" in line else ""
        required = default is None and not optional
        specs[name] = ParamSpec(name, type_name, default, required, comment)
    return specs


def inspect_notebook(path: Path) -> dict[str, ParamSpec]:
    nb = load_notebook_json(path)
    source = parameters_cell(nb)
    if source is None:
        raise NoParametersCell(
            f"{path.name} has no cell tagged 'parameters', so opsbook cannot check or inject "
            "parameters. In Jupyter, tag the first code cell 'parameters' (View → Cell → Tags)."
        )
    return inspect_source(source, where=f"The parameters cell of {path.name}")


# ---- values ---------------------------------------------------------------------------
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def secret_shape(value: str) -> str | None:
    for pattern, what in SECRET_SHAPES:
        if pattern.search(value):
            return what
    return None


def _refuse_secrets(name: str, value: Any) -> None:
    values = value if isinstance(value, list) else [value]
    for item in values:
        if isinstance(item, str) and not item.startswith("env:") and (what := secret_shape(item)):
            raise SecretLiteral(
                f"Parameter '{name}' looks like {what}. Secrets are never parameter values: they "
                f"would be written into the notebook and the archive. Put the secret in an "
                f"environment variable and pass a reference instead, e.g. -p {name}=env:MY_SECRET.",
                name=name,
            )


def parse_text(spec: ParamSpec, text: str) -> Any:
    """Parse a command-line string as the parameter's type."""
    kind = spec.type
    stripped = text.strip()
    try:
        if kind == "int":
            return int(stripped)
        if kind == "float":
            return float(stripped)
        if kind == "bool":
            low = stripped.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(text)
        if kind in ("list", "dict"):
            if stripped.startswith(("[", "{")):
                value = json.loads(stripped)
            elif kind == "list":
                value = [part.strip() for part in stripped.split(",") if part.strip()]
            else:
                raise ValueError(text)
            if kind == "list" and not isinstance(value, list):
                raise ValueError(text)
            if kind == "dict" and not isinstance(value, dict):
                raise ValueError(text)
            return value
        if kind == "any":
            try:
                return json.loads(stripped)
            except json.JSONDecodeError:
                return text
        return text
    except (ValueError, json.JSONDecodeError):
        examples = {
            "int": "a whole number, e.g. 30",
            "float": "a number, e.g. 0.05",
            "bool": "true or false",
            "list": 'a comma-separated list or a JSON list, e.g. a,b or ["a","b"]',
            "dict": 'a JSON object, e.g. {"k": 1}',
        }
        raise BadParameterValue(
            f"Parameter '{spec.name}' expects {examples.get(kind, kind)}; got {text!r}.",
            name=spec.name,
            expected=kind,
        ) from None


def check_value(spec: ParamSpec, value: Any) -> Any:
    """Check an already-typed value (from YAML or Python) against the spec."""
    if isinstance(value, str) and spec.type not in ("str", "any"):
        return parse_text(spec, value)
    expected = TYPES.get(spec.type)
    if expected is None or value is None:
        return value
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is int and isinstance(value, bool):
        pass
    elif isinstance(value, expected):
        return value
    raise BadParameterValue(
        f"Parameter '{spec.name}' expects {spec.type}; got {type(value).__name__} {value!r}.",
        name=spec.name,
        expected=spec.type,
    )


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """`["a=1", "b=x=y"]` -> {"a": "1", "b": "x=y"}."""
    out: dict[str, str] = {}
    for pair in pairs:
        if "=" not in pair:
            raise BadParameterValue(
                f"Parameter {pair!r} must be written name=value, e.g. -p window_minutes=30."
            )
        name, value = pair.split("=", 1)
        out[name.strip()] = value
    return out


def resolve(
    specs: dict[str, ParamSpec],
    runbook: str,
    env_defaults: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    text_overrides: bool = True,
) -> dict[str, Any]:
    """Merge env defaults and overrides over the notebook defaults; return what to inject.

    Only values that differ from the notebook (env defaults and overrides) are returned,
    plus every required parameter. Raises before anything runs.
    """
    overrides = overrides or {}
    known = sorted(specs)
    for name in overrides:
        if name not in specs:
            hint = difflib.get_close_matches(name, known, n=1)
            did = f" Did you mean '{hint[0]}'?" if hint else ""
            raise UnknownParameter(
                f"Runbook '{runbook}' has no parameter '{name}'.{did} "
                f"Its parameters: {', '.join(known) or 'none'}. "
                f"`opsbook list {runbook}` describes them.",
                name=name,
                known=known,
            )
    values: dict[str, Any] = {}
    for name, value in (env_defaults or {}).items():
        if name in specs and name not in RUNNER_PARAMETERS:
            values[name] = check_value(specs[name], value)
    for name, value in overrides.items():
        spec = specs[name]
        if text_overrides and isinstance(value, str):
            values[name] = parse_text(spec, value)
        else:
            values[name] = check_value(spec, value)
    for name, value in values.items():
        _refuse_secrets(name, value)
    missing = [s.name for s in specs.values() if s.required and values.get(s.name) is None]
    if missing:
        first = specs[missing[0]]
        raise MissingParameter(
            f"Runbook '{runbook}' needs parameter{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(m) for m in missing)}"
            + (f" ({first.help})" if first.help else "")
            + f". Pass it with -p {missing[0]}=VALUE.",
            names=missing,
        )
    return values
