"""opsbook: executable runbook notebooks with an archived incident record for every run.

The public API is imported lazily so that `import opsbook` stays cheap in a kernel:

    opsbook.run(name, env=..., parameters=..., incident=..., approve=[...]) -> RunResult
    opsbook.plan(name, ...) -> Path            # a parameterized copy for a walkthrough
    opsbook.finish(run_dir) -> RunResult       # render, record and index a run folder
    opsbook.connect(env) -> Platform           # the environment's clients, in a notebook
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "run": ("opsbook.runner", "run"),
    "plan": ("opsbook.runner", "plan"),
    "finish": ("opsbook.runner", "finish"),
    "RunResult": ("opsbook.runner", "RunResult"),
    "connect": ("opsbook.platform", "connect"),
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'opsbook' has no attribute {name!r}")
