"""Secret scrubbing: nothing that reaches the archive may hold a secret.

A `Scrubber` removes two kinds of secret from text, JSON-like objects and notebooks:

1. **Literal values**: the values of the environment variables an environment references
   (`env:NAME`), of every variable whose *name* contains TOKEN, SECRET, KEY or PASSWORD,
   and any extra values (e.g. the sandbox's generated credentials). Values shorter than
   6 characters are ignored: replacing "1" or "true" everywhere would destroy the record.
   Common encodings of each value (URL-quoted, JSON/repr-escaped, HTML-escaped) count too.
2. **Known shapes**, whoever the secret belongs to:
   - Cloudflare API tokens: 40 characters of `[A-Za-z0-9_-]` standing alone. Tradeoff:
     the shape alone cannot tell a token from any other 40-character word, so a
     40-character run is redacted unless it is all hex in one case (git SHAs, SHA-1
     digests) or it "looks like a word" (fewer than two of lower/upper/digit). Snake-case
     identifiers with a digit in them are redacted too: over-redaction is the safe error.
     One exact shape is spared: opsbook's own run-folder names, `<run-id>_<runbook>`
     (`20261123T162545Z-c013_maintenance-window` is 40 long): a UTC timestamp, four hex
     digits and a lowercase runbook name, which no random token plausibly matches.
     32-hex account ids and 36-char UUIDs are not 40 long and never match.
   - Stripe secret and restricted keys (`sk_live_`, `sk_test_`, `rk_live_`, `rk_test_`)
     and webhook signing secrets (`whsec_`).
   - JWTs (`eyJ...` `.eyJ...` `.signature`).
   - Credentials in `Authorization`, `Proxy-Authorization`, `X-Auth-Key` and `X-Api-Key`
     values, as an HTTP header line, JSON, or a Python dict repr; the scheme word
     (`Bearer`, `Basic`) is kept. A stand-alone `Bearer <long token>` too.
   - Passwords in URLs: `scheme://user:PASSWORD@host` -> `scheme://user:[REDACTED]@host`.

In JSON-like objects a string value under a key that names a secret (`password`,
`api_token`, `client_secret`, `authorization`, ...) is redacted whole, unless it is an
`env:NAME` reference (a reference is not a secret; it is what parameters should hold) or
the UPPER_SNAKE name of a secret (`{"secret": "JWT_SECRET"}` is evidence, not a leak).

Terminal colour codes (ANSI escapes, as in IPython tracebacks) can split a secret into
pieces no pattern would see; text holding escapes is therefore checked with the escapes
removed, and when that finds a secret the escape-free, scrubbed text is kept (colours
are lost only where a secret was).

Binary outputs (PNG, JPEG, GIF, PDF: base64) are left alone: a base64 image can contain
40-character runs by chance, and redacting them would corrupt the image.
"""

from __future__ import annotations

import copy
import html
import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

import nbformat

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 6

SECRET_NAME = re.compile(r"TOKEN|SECRET|KEY|PASSWORD", re.IGNORECASE)
SECRET_KEY_NAME = re.compile(
    r"password|passwd|secret|token|api[-_]?key|private[-_]?key|access[-_]?key|authorization",
    re.IGNORECASE,
)
ENV_REF = re.compile(r"^env:[A-Za-z_][A-Za-z0-9_]*$")
SECRET_NAME_VALUE = re.compile(r"^[A-Z][A-Z0-9_]*$")  # `{"secret": "JWT_SECRET"}` names one
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
BINARY_MIME = ("image/png", "image/jpeg", "image/gif", "image/bmp", "application/pdf")

# Cloudflare API tokens: 40 chars of base64url standing alone.
_CF_TOKEN = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{40}(?![A-Za-z0-9_-])")
_HEX40 = re.compile(r"[0-9a-f]{40}|[0-9A-F]{40}")
# runfolder.RunFolder names: <YYYYmmddTHHMMSSZ>-<4 hex>_<runbook>
_RUN_FOLDER = re.compile(
    r"20\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3])[0-5]\d[0-5]\dZ"
    r"-[0-9a-f]{4}_[a-z][a-z0-9]*(?:-[a-z0-9]+)*"
)
_STRIPE = re.compile(r"(?<![A-Za-z0-9])(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{6,}")
_WHSEC = re.compile(r"(?<![A-Za-z0-9])whsec_[A-Za-z0-9+/=]{6,}")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# `Authorization: Bearer x`, `"authorization": "Basic x"`, `{'X-Auth-Key': 'x'}`.
# The value must be 6+ chars with no quote, brace or bracket, so code such as
# f"Bearer {token}" and already-redacted text are left alone.
_AUTH_HEADER = re.compile(
    r"(?i)(\b(?:proxy-)?authorization|\bx-auth-key|\bx-api-key)"
    r"([\"']?\s*[:=]\s*[\"']?)"
    r"((?:bearer|basic|token|bot)\s+)?"
    r"(?!(?:bearer|basic|token|bot)\s)"
    r"([^\s\"'<>,;{}()\[\]]{6,})"
)
_BEARER = re.compile(r"\b(Bearer\s+)([A-Za-z0-9._~+/=-]{16,})")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@\"'<>]*:)([^\s/\"'<>\[\]]+)(@)")
_DATA_URI = re.compile(r"(data:[\w.+/-]+;base64,[A-Za-z0-9+/=]+)")


def _looks_random(word: str) -> bool:
    if _HEX40.fullmatch(word) or _RUN_FOLDER.fullmatch(word):
        return False
    classes = sum(
        (
            any(c.islower() for c in word),
            any(c.isupper() for c in word),
            any(c.isdigit() for c in word),
        )
    )
    return classes >= 2


def _cf_token(m: re.Match[str]) -> str:
    return REDACTED if _looks_random(m.group(0)) else m.group(0)


def scrub_shapes(s: str) -> str:
    """Redact the known secret shapes in `s` (no literal values)."""
    if "base64," in s:  # leave data: URI payloads (images in HTML) intact
        parts = _DATA_URI.split(s)
        return "".join(p if i % 2 else _shapes(p) for i, p in enumerate(parts))
    return _shapes(s)


def _shapes(s: str) -> str:
    s = _URL_PASSWORD.sub(lambda m: m.group(1) + REDACTED + m.group(3), s)
    s = _AUTH_HEADER.sub(lambda m: m.group(1) + m.group(2) + (m.group(3) or "") + REDACTED, s)
    s = _BEARER.sub(lambda m: m.group(1) + REDACTED, s)
    s = _JWT.sub(REDACTED, s)
    s = _STRIPE.sub(REDACTED, s)
    s = _WHSEC.sub(REDACTED, s)
    return _CF_TOKEN.sub(_cf_token, s)


def _variants(value: str) -> set[str]:
    """The value and the encodings it is commonly written in."""
    found = {
        value,
        quote(value, safe=""),
        quote_plus(value, safe=""),
        json.dumps(value)[1:-1],
        repr(value)[1:-1],
        html.escape(value),
    }
    return {v for v in found if len(v) >= MIN_SECRET_LENGTH}


class Scrubber:
    """Removes secret values and secret shapes. Immutable once built; thread-safe."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        literal: set[str] = set()
        for value in values:
            if isinstance(value, str) and len(value.strip()) >= MIN_SECRET_LENGTH:
                literal |= _variants(value)
                if value != value.strip():
                    literal |= _variants(value.strip())
        self.values: frozenset[str] = frozenset(literal)
        ordered = sorted(literal, key=lambda v: (-len(v), v))  # longest first
        self._literal = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    @classmethod
    def from_environment(
        cls,
        referenced: Iterable[str] = (),
        extra_values: Iterable[str] = (),
        environ: Mapping[str, str] | None = None,
    ) -> Scrubber:
        """Values of the referenced variables, of every variable named like a secret,
        and `extra_values`."""
        env = os.environ if environ is None else environ
        names = {n for n in referenced if n in env}
        names |= {n for n in env if SECRET_NAME.search(n)}
        return cls([*(env[n] for n in sorted(names)), *extra_values])

    # ---- text ----------------------------------------------------------------
    def _plain(self, s: str) -> str:
        if self._literal is not None:
            s = self._literal.sub(REDACTED, s)
        return scrub_shapes(s)

    def text(self, s: str) -> str:
        """`s` with literal secret values, then known shapes, replaced by REDACTED."""
        if not s:
            return s
        if "\x1b" in s:
            plain = ANSI.sub("", s)
            scrubbed = self._plain(plain)
            if scrubbed != plain:
                return scrubbed  # a secret was there: drop the colours, keep it out
            # No secret in the visible text; make sure none hides in an escape either.
            return self._plain(s)
        return self._plain(s)

    def contains_secret(self, s: str) -> bool:
        return self.text(s) != s

    # ---- JSON-like objects ---------------------------------------------------
    def obj(self, o: Any) -> Any:
        """A scrubbed copy of a JSON-like object. Keys are kept; values are scrubbed, and
        string values under secret-sounding keys are redacted whole."""
        if isinstance(o, str):
            return self.text(o)
        if isinstance(o, Mapping):
            out = {}
            for key, value in o.items():
                if (
                    isinstance(key, str)
                    and isinstance(value, str)
                    and value
                    and SECRET_KEY_NAME.search(key)
                    and not ENV_REF.match(value)
                    and not SECRET_NAME_VALUE.match(value)
                    and value != REDACTED
                ):
                    out[key] = REDACTED
                else:
                    out[key] = self.obj(value)
            return type(o)(out) if isinstance(o, nbformat.NotebookNode) else out
        if isinstance(o, list | tuple):
            return type(o)(self.obj(v) for v in o)
        return o

    # ---- notebooks -----------------------------------------------------------
    def _source(self, src: Any) -> Any:
        if isinstance(src, list):  # multi-line strings as stored on disk
            return self.text("".join(src)).splitlines(keepends=True)
        return self.text(src) if isinstance(src, str) else self.obj(src)

    def _output(self, out: nbformat.NotebookNode) -> None:
        if "text" in out:
            out["text"] = self._source(out["text"])
        if "data" in out:
            for mime, value in list(out["data"].items()):
                if mime in BINARY_MIME:
                    continue
                out["data"][mime] = (
                    self._source(value) if isinstance(value, str | list) else self.obj(value)
                )
        if "traceback" in out:
            out["traceback"] = [self.text(line) for line in out["traceback"]]
        for field in ("ename", "evalue"):
            if isinstance(out.get(field), str):
                out[field] = self.text(out[field])
        if "metadata" in out:
            out["metadata"] = nbformat.from_dict(self.obj(out["metadata"]))

    def notebook(self, nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
        """A scrubbed copy of `nb`: sources, outputs, tracebacks, cell and notebook metadata."""
        nb = copy.deepcopy(nb)
        nb["metadata"] = nbformat.from_dict(self.obj(nb.get("metadata", {})))
        for cell in nb.get("cells", []):
            cell["source"] = self._source(cell.get("source", ""))
            cell["metadata"] = nbformat.from_dict(self.obj(cell.get("metadata", {})))
            for out in cell.get("outputs", []):
                self._output(out)
        return nb
