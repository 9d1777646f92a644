"""Environments: `params/<name>.yaml`, loaded, checked and resolved.

An environment file describes one platform: its API base URLs, account id, worker,
databases, contacts, escalation matrix, thresholds, and env-wide parameter defaults
(`parameters:`). Secrets are never written in it: a secret is a reference,
`env:NAME`, resolved from the process environment only when it is used.

Environments with `sandbox: true` run on the embedded sandbox. Their URLs contain
`{sandbox}`, replaced by the running sandbox's base URL; a secret reference whose
variable is unset falls back to the sandbox's own generated credentials, so the
default environment works with no account and no setup.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import config
from .errors import EnvironmentFileError, SecretNotFound, UnknownEnvironment

SECRET_REF = re.compile(r"^env:([A-Za-z_][A-Za-z0-9_]*)$")
DEFAULT_ENV = "local"


def available() -> list[str]:
    folder = config.params_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def closest(name: str, choices: list[str]) -> str | None:
    match = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return match[0] if match else None


@dataclass
class Environment:
    """One loaded environment. `data` is the file as written (references unresolved)."""

    name: str
    path: Path
    data: dict[str, Any]
    _sandbox_base: str | None = field(default=None, repr=False)
    _sandbox_credentials: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def is_sandbox(self) -> bool:
        return bool(self.data.get("sandbox", False))

    @property
    def profile(self) -> str:
        return str(self.data.get("profile", ""))

    @property
    def parameters(self) -> dict[str, Any]:
        """Env-wide defaults for runbook parameters of the same name."""
        return dict(self.data.get("parameters") or {})

    def get(self, dotted: str, default: Any = None) -> Any:
        """`env.get("app.worker")`, with `{sandbox}` resolved in strings."""
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return self._expand(node)

    def require(self, dotted: str) -> Any:
        value = self.get(dotted)
        if value in (None, ""):
            raise EnvironmentFileError(
                f"{self.path}: '{dotted}' is not set, and this runbook needs it. "
                f"Add it to the environment file."
            )
        return value

    def secret_names(self) -> list[str]:
        """Names of every environment variable this file references with `env:`."""
        names: list[str] = []

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)
            elif isinstance(node, str) and (m := SECRET_REF.match(node)):
                names.append(m.group(1))

        walk(self.data)
        return sorted(set(names))

    def secret(self, ref: str) -> str:
        """Resolve `env:NAME` (or a bare dotted key whose value is such a reference)."""
        if not SECRET_REF.match(ref):
            value = self.get(ref)
            if not isinstance(value, str) or not SECRET_REF.match(value):
                raise EnvironmentFileError(
                    f"{self.path}: '{ref}' must be a secret reference like env:NAME, got {value!r}."
                )
            ref = value
        m = SECRET_REF.match(ref)
        assert m is not None
        name = m.group(1)
        if name in os.environ:
            return os.environ[name]
        if self.is_sandbox:
            self._attach_sandbox()
            if name in self._sandbox_credentials:
                return self._sandbox_credentials[name]
        raise SecretNotFound(
            f"Environment variable {name} is not set. Environment '{self.name}' reads a secret "
            f"from it: export {name}=... in the shell that runs opsbook (never pass it as a parameter).",
            variable=name,
        )

    def secret_values(self) -> list[str]:
        """Every secret value this environment can resolve right now (for scrubbing)."""
        values: list[str] = []
        for name in self.secret_names():
            if os.environ.get(name):
                values.append(os.environ[name])
        if self.is_sandbox:
            values.extend(self._sandbox_credentials.values())
            creds = config.sandbox_dir() / "credentials.json"
            if creds.is_file():  # read, never started: scrubbing must not start a sandbox
                with contextlib.suppress(OSError, ValueError):
                    values.extend(
                        str(v) for v in json.loads(creds.read_text(encoding="utf-8")).values()
                    )
        return values

    # ---- the sandbox ---------------------------------------------------------
    def _attach_sandbox(self) -> None:
        if self._sandbox_base is not None:
            return
        from . import sandbox  # imported lazily: production environments never load it

        info = sandbox.ensure_running()
        self._sandbox_base = info.base_url
        self._sandbox_credentials = dict(info.credentials)

    def _expand(self, node: Any) -> Any:
        if isinstance(node, str) and "{sandbox}" in node:
            if not self.is_sandbox:
                raise EnvironmentFileError(
                    f"{self.path}: '{{sandbox}}' is used but the file does not say `sandbox: true`."
                )
            self._attach_sandbox()
            return node.replace("{sandbox}", self._sandbox_base or "")
        if isinstance(node, dict):
            return {k: self._expand(v) for k, v in node.items()}
        if isinstance(node, list):
            return [self._expand(v) for v in node]
        return node


def load(name: str | None = None) -> Environment:
    """Load `params/<name>.yaml` (default `local`). Errors say what to fix."""
    name = name or DEFAULT_ENV
    path = Path(name) if name.endswith((".yaml", ".yml")) else config.params_dir() / f"{name}.yaml"
    if not path.is_file():
        known = available()
        hint = closest(name, known)
        did_you_mean = f" Did you mean '{hint}'?" if hint else ""
        raise UnknownEnvironment(
            f"No environment named '{name}' (looked for {path}).{did_you_mean} "
            f"Known environments: {', '.join(known) or 'none'}.",
            name=name,
            known=known,
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise EnvironmentFileError(
            f"{path} is not valid YAML{where}: {problem}. Fix the file and run again.",
            path=path,
        ) from exc
    if not isinstance(data, dict):
        raise EnvironmentFileError(
            f"{path} must be a YAML mapping (key: value lines), not {type(data).__name__}.",
            path=path,
        )
    params = data.get("parameters")
    if params is not None and not isinstance(params, dict):
        raise EnvironmentFileError(f"{path}: 'parameters' must be a mapping of name: value.")
    return Environment(name=path.stem, path=path, data=data)
