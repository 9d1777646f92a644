"""Bad input: a clear message, exit code 2, nothing run and nothing archived. Texts are pinned."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from opsbook.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "notebooks"


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def assert_nothing_archived(outputs: Path) -> None:
    assert not outputs.exists() or not any(outputs.rglob("*")), list(outputs.rglob("*"))


def test_unknown_runbook(outputs: Path) -> None:
    code, out = invoke("run", "helth-check")
    assert code == 2
    assert "error: No runbook named 'helth-check'" in out
    assert "Did you mean 'health-check'?" in out
    assert "`opsbook list` describes them." in out
    assert_nothing_archived(outputs)


def test_missing_notebook_path(outputs: Path) -> None:
    code, out = invoke("run", "nowhere/missing.ipynb")
    assert (code, out.strip()) == (2, "error: Notebook nowhere/missing.ipynb does not exist.")
    assert_nothing_archived(outputs)


def test_unknown_parameter(outputs: Path) -> None:
    code, out = invoke("run", str(FIXTURES / "ok.ipynb"), "-p", "cont=3")
    assert code == 2
    assert out.strip() == (
        "error: Runbook 'ok' has no parameter 'cont'. Did you mean 'count'? "
        "Its parameters: approve, count, items, label, ratio, verbose. `opsbook list ok` describes them."
    )
    assert_nothing_archived(outputs)


def test_bad_value(outputs: Path) -> None:
    code, out = invoke("run", str(FIXTURES / "ok.ipynb"), "-p", "count=three")
    assert (code, out.strip()) == (
        2,
        "error: Parameter 'count' expects a whole number, e.g. 30; got 'three'.",
    )
    assert_nothing_archived(outputs)


def test_missing_required(tmp_path: Path, outputs: Path) -> None:
    nb = (
        (FIXTURES / "ok.ipynb")
        .read_text()
        .replace('label = \\"demo\\"  # a label', "label = None  # required: what to label")
    )
    path = tmp_path / "needs.ipynb"
    path.write_text(nb)
    code, out = invoke("run", str(path))
    assert (code, out.strip()) == (
        2,
        "error: Runbook 'needs' needs parameter 'label' (required: what to label). Pass it with -p label=VALUE.",
    )
    assert_nothing_archived(outputs)


def test_secret_literal(outputs: Path) -> None:
    code, out = invoke(
        "run", str(FIXTURES / "ok.ipynb"), "-p", "label=sk_live_" + "abcdefghijklmnop1234"
    )
    assert code == 2
    assert out.startswith(
        "error: Parameter 'label' looks like a Stripe live secret key (sk_live_…)."
    )
    assert "pass a reference instead, e.g. -p label=env:MY_SECRET." in out
    assert_nothing_archived(outputs)


def test_unknown_environment(outputs: Path) -> None:
    code, out = invoke("run", str(FIXTURES / "ok.ipynb"), "--env", "locl")
    assert code == 2
    assert "error: No environment named 'locl'" in out
    assert "Did you mean 'local'?" in out
    assert_nothing_archived(outputs)


def test_malformed_environment_yaml(tmp_path: Path, outputs: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: broken\ncloudflare:\n  api_base: [unclosed\n")
    code, out = invoke("run", str(FIXTURES / "ok.ipynb"), "--env", str(bad))
    assert code == 2
    assert out.startswith(f"error: {bad} is not valid YAML at line 4, column 1:")
    assert out.strip().endswith("Fix the file and run again.")
    assert_nothing_archived(outputs)


def test_no_parameters_cell(outputs: Path) -> None:
    code, out = invoke("run", str(FIXTURES / "no_parameters.ipynb"))
    assert code == 2
    assert out.strip() == (
        "error: no_parameters.ipynb has no cell tagged 'parameters', so opsbook cannot check or inject "
        "parameters. In Jupyter, tag the first code cell 'parameters' (View → Cell → Tags)."
    )
    assert_nothing_archived(outputs)


def test_approve_without_guarded_actions(outputs: Path) -> None:
    code, out = invoke("run", str(FIXTURES / "problem.ipynb"), "--approve", "rollback")
    assert (code, out.strip()) == (
        2,
        "error: Runbook 'problem' has no guarded actions (no 'approve' parameter), so --approve rollback "
        "approves nothing. Run it without --approve.",
    )
    assert_nothing_archived(outputs)


def test_reserved_parameter(outputs: Path) -> None:
    code, out = invoke("run", str(FIXTURES / "ok.ipynb"), "-p", "approve=x")
    assert (code, out.strip()) == (
        2,
        "error: 'approve' is set by the runner: use --approve instead of -p approve=...",
    )


def test_malformed_pair(outputs: Path) -> None:
    code, out = invoke("run", str(FIXTURES / "ok.ipynb"), "-p", "count")
    assert (code, out.strip()) == (
        2,
        "error: Parameter 'count' must be written name=value, e.g. -p window_minutes=30.",
    )


@pytest.mark.parametrize(
    "command", [[], ["run"], ["plan"], ["runs"], ["runs", "list"], ["list"], ["finish"], ["lab"]]
)
def test_help_is_there(command: list[str]) -> None:
    code, out = invoke(*command, "--help")
    assert code == 0
    assert "Usage: " in out and len(out.splitlines()) > 4


def test_unknown_run(outputs: Path) -> None:
    code, out = invoke("runs", "show", "nope")
    assert code == 2
    assert "error: No run 'nope' in the archive" in out
