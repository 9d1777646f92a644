"""Batch files: `params/batches/<name>.yaml`, loaded and checked before anything runs.

    name: daily
    parallel: 2                      # optional; at most the CPU count
    runs:
      - runbook: checklist-daily     # a runbook name, or a path to an .ipynb
        env: [local, local-peptalk]  # one name or a list; default: local
        parameters: {window_minutes: 60}
        incident: INC-42             # optional
        approve: [rollback]          # optional

Each item expands over its environments into jobs (runbook x environment). `load()`
checks the whole file, including every job's parameters through `runner.prepare()`,
and raises one `InputError` that lists every problem with its line number.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import config
from .errors import InputError, UnknownRunbook

TOP_KEYS = ("name", "description", "parallel", "runs")
ITEM_KEYS = ("runbook", "env", "parameters", "incident", "approve")
DEFAULT_PARALLEL = 2


@dataclass
class Job:
    """One run of a batch: a runbook on one environment."""

    n: int
    runbook: str  # the runbook's name (a notebook path's stem)
    notebook: str  # what `opsbook run` is given: the name, or an absolute .ipynb path
    env: str
    parameters: dict[str, Any] = field(default_factory=dict)
    incident: str | None = None
    approve: list[str] = field(default_factory=list)
    line: int = 0

    def argv(self) -> list[str]:
        """`opsbook run` arguments; each -p value is text `opsbook run` parses back."""
        args = [self.notebook, "--env", self.env]
        for name, value in self.parameters.items():
            text = value if isinstance(value, str) else json.dumps(value)
            args += ["-p", f"{name}={text}"]
        if self.incident:
            args += ["--incident", self.incident]
        for action in self.approve:
            args += ["--approve", action]
        return args


@dataclass
class BatchFile:
    name: str
    path: Path
    parallel: int
    jobs: list[Job]
    parallel_asked: int | None = None


class _Mapping(dict[str, Any]):
    """A YAML mapping that remembers the line of each key (1-based)."""

    line: int = 0
    lines: dict[str, int]


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Mapping:
    out = _Mapping({str(k): v for k, v in loader.construct_mapping(node, deep=True).items()})
    out.line = node.start_mark.line + 1
    out.lines = {str(k.value): k.start_mark.line + 1 for k, _ in node.value}
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def batches_dir() -> Path:
    return config.params_dir() / "batches"


def available() -> list[str]:
    folder = batches_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def find(name_or_path: str | Path) -> Path:
    """A batch name (`daily` -> params/batches/daily.yaml) or a path to a YAML file."""
    text = str(name_or_path)
    path = Path(text)
    if text.endswith((".yaml", ".yml")) or os.sep in text:
        if path.is_file():
            return path.resolve()
        raise InputError(f"Batch file {text} does not exist.", path=path)
    path = batches_dir() / f"{text}.yaml"
    if path.is_file():
        return path
    known = available()
    hint = difflib.get_close_matches(text, known, n=1)
    did = f" Did you mean '{hint[0]}'?" if hint else ""
    raise InputError(
        f"No batch named '{text}' (looked for {path}).{did} "
        f"Known batches: {', '.join(known) or 'none'}.",
        name=text,
        known=known,
    )


def _unknown(key: str, allowed: tuple[str, ...], where: str) -> str:
    hint = difflib.get_close_matches(key, allowed, n=1)
    did = f" Did you mean '{hint[0]}'?" if hint else ""
    return f"unknown key '{key}' {where}.{did} Allowed keys: {', '.join(allowed)}."


def _strings(value: Any) -> list[str] | None:
    if isinstance(value, str) and value.strip():
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return list(value)
    return None


def load(
    name_or_path: str | Path, *, parallel: int | None = None, envs: list[str] | None = None
) -> BatchFile:
    """Read and check a batch file; `envs` replaces every item's environments."""
    path = find(name_or_path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(
            f"{path} is not valid YAML{where}: {problem}. Check the indentation and the "
            "`key: value` syntax there; nothing ran.",
            path=path,
        ) from None
    problems: list[str] = []
    if not isinstance(data, _Mapping):
        raise InputError(
            f"{path}: a batch file is a mapping with `name:` and `runs:` (a list of "
            f"{{runbook, env, parameters}}), not {type(data).__name__}.",
            path=path,
        )
    for key in data:
        if key not in TOP_KEYS:
            problems.append(f"line {data.lines[key]}: " + _unknown(key, TOP_KEYS, "at the top"))
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(f"line {data.lines.get('name', 1)}: `name:` must be a non-empty string.")
        name = path.stem
    asked = parallel if parallel is not None else data.get("parallel", DEFAULT_PARALLEL)
    if isinstance(asked, bool) or not isinstance(asked, int) or asked < 1:
        src = "--parallel" if parallel is not None else f"line {data.lines.get('parallel')}"
        problems.append(f"{src}: parallel must be a whole number >= 1; got {asked!r}.")
        asked = 1
    effective = min(asked, os.cpu_count() or 1)
    runs = data.get("runs")
    jobs: list[Job] = []
    if not isinstance(runs, list) or not runs:
        problems.append(
            f"line {data.lines.get('runs', data.line)}: `runs:` must be a non-empty list of "
            "items like {runbook: health-check, env: [local]}."
        )
        runs = []
    for i, item in enumerate(runs):
        jobs += _item_jobs(i, item, path, envs, len(jobs), problems)
    if problems:
        raise InputError(
            f"{path} has {len(problems)} problem{'s' if len(problems) > 1 else ''}; "
            "nothing ran:\n  " + "\n  ".join(problems),
            path=path,
            problems=problems,
        )
    return BatchFile(name.strip(), path, effective, jobs, asked if asked != effective else None)


def _item_jobs(
    i: int, item: Any, path: Path, envs: list[str] | None, start: int, problems: list[str]
) -> list[Job]:
    from . import runner

    if not isinstance(item, _Mapping):
        problems.append(f"runs[{i}]: each item is a mapping with `runbook:`; got {item!r}.")
        return []
    where = f"line {item.line} (runs[{i}])"
    for key in item:
        if key not in ITEM_KEYS:
            problems.append(f"line {item.lines[key]}: " + _unknown(key, ITEM_KEYS, f"in runs[{i}]"))
    runbook = item.get("runbook")
    if not isinstance(runbook, str) or not runbook.strip():
        problems.append(f"{where}: `runbook:` is missing; name a runbook (`opsbook list`).")
        return []
    notebook = runbook
    if runbook.endswith(".ipynb") and not Path(runbook).is_absolute():
        notebook = str((path.parent / runbook).resolve())
    item_envs = _strings(item.get("env", "local"))
    if item_envs is None:
        problems.append(f"{where}: `env:` must be a name or a list of names; got {item['env']!r}.")
        return []
    parameters = item.get("parameters") or {}
    if not isinstance(parameters, dict):
        problems.append(f"{where}: `parameters:` must be a mapping of name: value.")
        return []
    nulls = [k for k, v in parameters.items() if v is None]
    if nulls:
        problems.append(f"{where}: parameter '{nulls[0]}' is empty; remove it to use its default.")
        return []
    incident = item.get("incident")
    if incident is not None and not isinstance(incident, str):
        problems.append(f"{where}: `incident:` must be a string such as INC-42.")
        return []
    approve = _strings(item.get("approve")) if item.get("approve") is not None else []
    if approve is None:
        problems.append(f"{where}: `approve:` must be a list of action ids.")
        return []
    jobs: list[Job] = []
    for env in envs or item_envs:
        try:
            runner.prepare(notebook, env, parameters, incident=incident, approve=approve)
        except UnknownRunbook as exc:
            problems.append(f"{where}: {exc.message}")
            return []
        except InputError as exc:
            problems.append(f"{where}, {Path(notebook).stem} on {env}: {exc.message}")
            continue
        n = start + len(jobs) + 1
        jobs.append(
            Job(
                n,
                Path(notebook).stem,
                notebook,
                env,
                dict(parameters),
                incident,
                approve,
                item.line,
            )
        )
    return jobs
