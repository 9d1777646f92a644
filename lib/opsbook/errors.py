"""One exception tree for opsbook. Every error carries the fields a caller needs.

    OpsbookError                      base: message says what is wrong and what to do
    ├── InputError                    bad input, detected before anything runs (CLI exit 2)
    │   ├── UnknownRunbook            no notebooks/<name>.ipynb
    │   ├── UnknownEnvironment        no params/<env>.yaml
    │   ├── EnvironmentFileError      params/<env>.yaml is malformed
    │   ├── ParameterError            a -p value is wrong
    │   │   ├── UnknownParameter      name not in the notebook's parameters cell
    │   │   ├── BadParameterValue     value does not parse as the default's type
    │   │   ├── MissingParameter      a required parameter was left unset
    │   │   └── SecretLiteral         a value looks like a secret
    │   ├── NoParametersCell          the notebook has no cell tagged `parameters`
    │   └── UnknownRun                a run id/path that is not in the archive
    ├── SecretNotFound                an `env:NAME` reference whose variable is unset
    ├── RunFailed                     a cell raised or the run timed out (exit 1)
    ├── RunAborted                    Ctrl-C / SIGTERM (exit 130)
    ├── ActionRefused                 a guarded action refused whatever is approved
    └── ApiError                      an outside system answered with an error
        ├── ApiUnreachable            no answer at all (connection refused, DNS, timeout)
        ├── AuthenticationError       401/403, bad or expired token
        ├── NotFound                  404 / the object does not exist
        ├── RateLimited               429 after bounded retries
        └── ConflictError             e.g. Cloudflare 10220 (secret changed since version)

The CLI turns these into messages and exit codes at its edge; the library raises.
"""

from __future__ import annotations

from typing import Any


class OpsbookError(Exception):
    """Base of every opsbook error. `str(err)` is the user-facing message."""

    exit_code = 1

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        for key, value in fields.items():
            setattr(self, key, value)


class InputError(OpsbookError):
    exit_code = 2


class UnknownRunbook(InputError):
    pass


class UnknownEnvironment(InputError):
    pass


class EnvironmentFileError(InputError):
    pass


class ParameterError(InputError):
    pass


class UnknownParameter(ParameterError):
    pass


class BadParameterValue(ParameterError):
    pass


class MissingParameter(ParameterError):
    pass


class SecretLiteral(ParameterError):
    pass


class NoParametersCell(InputError):
    pass


class UnknownRun(InputError):
    pass


class SecretNotFound(OpsbookError):
    pass


class RunFailed(OpsbookError):
    exit_code = 1


class RunAborted(OpsbookError):
    exit_code = 130


class ActionRefused(OpsbookError):
    pass


class ApiError(OpsbookError):
    """An outside API answered with an error. Fields: status, code, errors, url, method."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | str | None = None,
        errors: list[dict[str, Any]] | None = None,
        url: str = "",
        method: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.errors = errors or []
        self.url = url
        self.method = method


class ApiUnreachable(ApiError):
    pass


class AuthenticationError(ApiError):
    pass


class NotFound(ApiError):
    pass


class RateLimited(ApiError):
    pass


class ConflictError(ApiError):
    pass
