"""Secret scrubbing: every known shape, planted values, tracebacks, metadata, HTML."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from opsbook.runfolder import RunFolder
from opsbook.scrub import REDACTED, Scrubber

CF_TOKEN = "Xy7_kQ2-aB9cD4eF6gH8iJ0kL1mN3oP5qR7sT9uV"  # 40 chars, mixed
GIT_SHA = "3f9a1c0de2b4a6c8e0f1a2b3c4d5e6f708192a3b"  # 40 lowercase hex
ACCOUNT_ID = "023e105f4ecef8ad9ca31a8372d0c353"  # 32 hex
UUID = "f2a1c9e4-6b7d-4e3a-9c1b-2d8e7f6a5b4c"
STRIPE_LIVE = "sk_live_51HqLyjWDarjtT1zdp7dcXk8f"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkphbmUifQ."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PLANTED = "planted-Secret-value-77"


@pytest.fixture
def scrubber() -> Scrubber:
    return Scrubber.from_environment(environ={"MY_API_KEY": PLANTED, "HOME": "/root/home"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"token={CF_TOKEN}", f"token={REDACTED}"),
        (f"CLOUDFLARE_API_TOKEN={CF_TOKEN}\n", f"CLOUDFLARE_API_TOKEN={REDACTED}\n"),
        (f"key {STRIPE_LIVE} used", f"key {REDACTED} used"),
        ("sk_test_4eC39HqLyjWDarjtT1zdp7dc", REDACTED),
        ("rk_live_abcdefGHIJ1234", REDACTED),
        ("rk_test_abcdefGHIJ1234", REDACTED),
        (
            "STRIPE_WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIK2LWqnbP",
            f"STRIPE_WEBHOOK_SECRET={REDACTED}",
        ),
        (f"cookie jwt {JWT}.", f"cookie jwt {REDACTED}."),
        ("Authorization: Bearer abc.def-ghi_123", f"Authorization: Bearer {REDACTED}"),
        ("authorization: Basic dXNlcjpwYXNzd29yZA==", f"authorization: Basic {REDACTED}"),
        ('{"authorization": "Bearer x1y2z3w4v5"}', f'{{"authorization": "Bearer {REDACTED}"}}'),
        ("{'Authorization': 'Bearer x1y2z3w4v5'}", f"{{'Authorization': 'Bearer {REDACTED}'}}"),
        ("X-Auth-Key: 1234567893feefc5f0q5000bfo0c38d90bbeb", f"X-Auth-Key: {REDACTED}"),
        ("curl -H 'Bearer abcdefghijklmnop1234'", f"curl -H 'Bearer {REDACTED}'"),
        (
            "postgres://admin:hunter2secret@db.internal:5432/app",
            f"postgres://admin:{REDACTED}@db.internal:5432/app",
        ),
        ("redis://:p@ss:w0rd@cache:6379", f"redis://:{REDACTED}@cache:6379"),
        (f"value {PLANTED} here", f"value {REDACTED} here"),
        ("quoted planted-Secret-value-77!", f"quoted {REDACTED}!"),
    ],
)
def test_shapes_and_values_are_redacted(scrubber: Scrubber, text: str, expected: str) -> None:
    assert scrubber.text(text) == expected
    assert scrubber.contains_secret(text)
    assert scrubber.text(expected) == expected  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        f"account {ACCOUNT_ID}",
        f"deployment {UUID}",
        f"commit {GIT_SHA}",
        f"COMMIT {GIT_SHA.upper()}",
        "The quick brown fox jumps over the lazy dog",
        "this_is_an_ordinary_lowercase_identifier",  # 40 chars, one character class
        "https://api.cloudflare.com/client/v4/accounts/023e105f4ecef8ad9ca31a8372d0c353",
        "http://127.0.0.1:8787/health",
        "user@example.com wrote: ok",
        "Authorization header is missing",
        'headers = {"Authorization": f"Bearer {token}"}',
        "pk_live_publishable_is_not_secret",
        "GET /v1/customers/cus_NffrFeUfNV2Hib 200",
        "HOME is /root/home",  # a non-secret variable's value
        f"Authorization: Bearer {REDACTED}",
    ],
)
def test_ordinary_text_is_untouched(scrubber: Scrubber, text: str) -> None:
    assert scrubber.text(text) == text
    assert not scrubber.contains_secret(text)


def test_from_environment_picks_names_and_references() -> None:
    environ = {
        "MY_API_KEY": "key-value-123",
        "DB_PASSWORD": "pw-value-123",
        "client_secret": "cs-value-123",
        "GH_TOKEN": "gh-value-123",
        "CUSTOM_CRED": "referenced-123",
        "OTHER": "not-a-secret-123",
        "SHORT_TOKEN": "abc",
    }
    s = Scrubber.from_environment(["CUSTOM_CRED", "UNSET"], ["extra-value-123"], environ)
    for value in ("key-value-123", "pw-value-123", "cs-value-123", "gh-value-123"):
        assert s.text(f"x {value} y") == f"x {REDACTED} y"
    assert s.text("referenced-123 extra-value-123") == f"{REDACTED} {REDACTED}"
    assert s.text("not-a-secret-123") == "not-a-secret-123"
    assert s.text("abc abcdef") == "abc abcdef"  # short values are ignored


def test_short_values_are_ignored() -> None:
    s = Scrubber(["12345", "true", "", "longer-secret"])
    assert s.text("12345 true longer-secret") == f"12345 true {REDACTED}"


def test_encoded_forms_of_a_value_are_redacted() -> None:
    s = Scrubber(["p@ss/word+1"])
    assert s.text("q=p%40ss%2Fword%2B1&x") == f"q={REDACTED}&x"
    assert s.text('"p@ss/word+1"') == f'"{REDACTED}"'


def test_secret_split_by_ansi_codes_in_a_traceback(scrubber: Scrubber) -> None:
    line = (
        "\x1b[0;31mValueError\x1b[0m: bad token "
        f"\x1b[0;32m{CF_TOKEN[:15]}\x1b[0m\x1b[1;34m{CF_TOKEN[15:]}\x1b[0m"
    )
    out = scrubber.text(line)
    assert CF_TOKEN not in out and CF_TOKEN[:15] not in out and CF_TOKEN[15:] not in out
    assert REDACTED in out
    split_value = f"x = '\x1b[1m{PLANTED[:9]}\x1b[0m{PLANTED[9:]}'"
    assert PLANTED[9:] not in scrubber.text(split_value)


def test_ansi_colours_survive_when_no_secret(scrubber: Scrubber) -> None:
    line = "\x1b[0;31mKeyError\x1b[0m: 'missing'"
    assert scrubber.text(line) == line


def test_obj_scrubs_values_and_keeps_keys(scrubber: Scrubber) -> None:
    record = {
        "parameters": {"cf_api_token": "env:CLOUDFLARE_API_TOKEN", "window_minutes": 30},
        "evidence": [{"password": "hunter2!", "url": "https://u:pw123456@h/x"}, PLANTED],
        "headers": {"Authorization": "Bearer abcdef123456"},
        "missing": {"secret": "JWT_SECRET"},  # the name of a secret is evidence
        "count": 3,
        "ok": True,
        "none": None,
        CF_TOKEN: "keys are kept",
    }
    out = scrubber.obj(record)
    assert out["parameters"] == record["parameters"]  # a reference is not a secret
    assert out["evidence"][0]["password"] == REDACTED
    assert out["evidence"][0]["url"] == f"https://u:{REDACTED}@h/x"
    assert out["evidence"][1] == REDACTED
    assert out["headers"]["Authorization"] == REDACTED
    assert out["missing"] == {"secret": "JWT_SECRET"}
    assert (out["count"], out["ok"], out["none"]) == (3, True, None)
    assert CF_TOKEN in out
    assert record["evidence"][1] == PLANTED  # input not modified


def _notebook() -> nbformat.NotebookNode:
    png = base64.b64encode(bytes(range(256)) * 40).decode()
    code = new_code_cell(f"token = '{CF_TOKEN}'\nprint(token)", execution_count=1)
    code.metadata["papermill"] = {"parameters": {"api_key": PLANTED}}
    code.metadata["tags"] = ["injected-parameters"]
    code.outputs = [
        new_output("stream", name="stdout", text=f"{CF_TOKEN}\n"),
        new_output(
            "display_data",
            data={
                "text/html": f"<b>key</b> <code>{STRIPE_LIVE}</code>",
                "text/plain": f"{STRIPE_LIVE}",
                "application/json": {"jwt": JWT, "n": 1},
                "image/png": png,
            },
        ),
        new_output(
            "error",
            ename="AuthenticationError",
            evalue=f"401 for token {PLANTED}",
            traceback=[
                f"\x1b[0;31mAuthenticationError\x1b[0m: \x1b[1m{PLANTED[:5]}\x1b[0m{PLANTED[5:]}"
            ],
        ),
    ]
    nb = new_notebook(cells=[new_markdown_cell(f"Use `{STRIPE_LIVE}`"), code])
    nb.metadata["papermill"] = {
        "parameters": {"stripe_key": STRIPE_LIVE, "note": f"see {PLANTED}", "env": "local"}
    }
    return nb


def test_notebook_everywhere(scrubber: Scrubber) -> None:
    nb = _notebook()
    out = scrubber.notebook(nb)
    dumped = json.dumps(out)
    for secret in (CF_TOKEN, STRIPE_LIVE, JWT, PLANTED, PLANTED[5:]):
        assert secret not in dumped, secret
    assert CF_TOKEN in json.dumps(nb)  # the input notebook is not modified
    outputs = out.cells[1].outputs
    assert outputs[1]["data"]["image/png"] == nb.cells[1].outputs[1]["data"]["image/png"]
    assert outputs[1]["data"]["application/json"]["n"] == 1
    assert out.metadata.papermill.parameters.env == "local"
    assert out.cells[1].metadata.papermill.parameters.api_key == REDACTED
    nbformat.validate(out)


def test_data_uri_payloads_are_left_alone(scrubber: Scrubber) -> None:
    payload = "A" * 10 + "+" + CF_TOKEN + "/" + "B" * 10
    html = f'<img src="data:image/png;base64,{payload}"> {CF_TOKEN}'
    assert scrubber.text(html) == f'<img src="data:image/png;base64,{payload}"> {REDACTED}'


# ---- run-folder names are not Cloudflare tokens ---------------------------------------------
RUN_FOLDER = "20261123T162545Z-c013_maintenance-window"  # 40 chars: <run-id>_<runbook>


def test_a_run_folder_name_of_40_chars_is_kept(scrubber: Scrubber) -> None:
    assert len(RUN_FOLDER) == 40
    for text in (
        RUN_FOLDER,
        f"record: /tmp/out/2026-11-23/{RUN_FOLDER}/report.html",
        f"restore it from {RUN_FOLDER}/backup-manuscript-platform.sql",
        json.dumps({"run_dir": f"outputs/2026-11-23/{RUN_FOLDER}"}),
    ):
        assert scrubber.text(text) == text
        assert not scrubber.contains_secret(text)


def test_the_names_runfolder_makes_are_kept(scrubber: Scrubber, tmp_path: Path) -> None:
    folder = RunFolder.create(tmp_path, "maintenance-window")
    assert len(folder.path.name) == 40
    assert scrubber.text(str(folder.path)) == str(folder.path)


@pytest.mark.parametrize(
    "token",
    [
        CF_TOKEN,
        "20261123T162545Z-c013_maintenance-windoW",  # an upper-case letter in the name
        "20261323T162545Z-c013_maintenance-window",  # month 13: not a timestamp
        "20261123T162545Z-C013_maintenance-window",  # upper-case hex
        "20261123T162545Z-c013-maintenance-window",  # no underscore
        "2026112xT162545Z-c013_maintenance-window",
        "Ab1_20261123T162545Z-c013_maintenance-wi",  # the shape inside, not the whole word
    ],
)
def test_real_and_near_miss_40_char_tokens_stay_redacted(scrubber: Scrubber, token: str) -> None:
    assert len(token) == 40
    assert scrubber.text(f"token {token} end") == f"token {REDACTED} end"
    assert scrubber.text(f"/tmp/{token}/x") == f"/tmp/{REDACTED}/x"
