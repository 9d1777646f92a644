from __future__ import annotations

import pytest

from opsbook import params
from opsbook.errors import BadParameterValue, MissingParameter, SecretLiteral, UnknownParameter

SOURCE = """
window_minutes: int = 60  # how far back to look
user_email = None  # required: the user who cannot log in
ratio = 0.5
flag = False
tags: list = []
note: str | None = None
extra = {"a": 1}
"""


@pytest.fixture
def specs() -> dict[str, params.ParamSpec]:
    return params.inspect_source(SOURCE)


def test_inspect_types_defaults_help(specs: dict[str, params.ParamSpec]) -> None:
    assert specs["window_minutes"] == params.ParamSpec(
        "window_minutes", "int", 60, False, "how far back to look"
    )
    assert (
        specs["user_email"].required
        and specs["user_email"].help == "required: the user who cannot log in"
    )
    assert specs["ratio"].type == "float"
    assert specs["flag"].type == "bool"
    assert specs["tags"].type == "list"
    assert specs["note"].required is False  # Optional annotation: None is a valid value
    assert specs["extra"].type == "dict"


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("window_minutes", "30", 30),
        ("ratio", "0.25", 0.25),
        ("ratio", "1", 1.0),
        ("flag", "yes", True),
        ("flag", "false", False),
        ("tags", "a, b", ["a", "b"]),
        ("tags", '["x"]', ["x"]),
        ("extra", '{"k": 2}', {"k": 2}),
        ("user_email", "a@example.com", "a@example.com"),
    ],
)
def test_parse_text(
    specs: dict[str, params.ParamSpec], name: str, text: str, expected: object
) -> None:
    assert params.parse_text(specs[name], text) == expected


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "window_minutes",
            "abc",
            "Parameter 'window_minutes' expects a whole number, e.g. 30; got 'abc'.",
        ),
        ("ratio", "x", "Parameter 'ratio' expects a number, e.g. 0.05; got 'x'."),
        ("flag", "maybe", "Parameter 'flag' expects true or false; got 'maybe'."),
        ("extra", "[1]", "Parameter 'extra' expects a JSON object, e.g. {\"k\": 1}; got '[1]'."),
    ],
)
def test_bad_values_name_the_expected_type(
    specs: dict[str, params.ParamSpec], name: str, text: str, message: str
) -> None:
    with pytest.raises(BadParameterValue) as err:
        params.parse_text(specs[name], text)
    assert str(err.value) == message


def test_unknown_parameter_lists_known_and_closest(specs: dict[str, params.ParamSpec]) -> None:
    with pytest.raises(UnknownParameter) as err:
        params.resolve(specs, "api-down", {}, {"window_minute": "5", "user_email": "a@b.c"})
    assert str(err.value) == (
        "Runbook 'api-down' has no parameter 'window_minute'. Did you mean 'window_minutes'? "
        "Its parameters: extra, flag, note, ratio, tags, user_email, window_minutes. "
        "`opsbook list api-down` describes them."
    )


def test_missing_required(specs: dict[str, params.ParamSpec]) -> None:
    with pytest.raises(MissingParameter) as err:
        params.resolve(specs, "subscription-access", {}, {})
    assert str(err.value) == (
        "Runbook 'subscription-access' needs parameter 'user_email' "
        "(required: the user who cannot log in). Pass it with -p user_email=VALUE."
    )


def test_env_defaults_apply_only_to_declared_names(specs: dict[str, params.ParamSpec]) -> None:
    values = params.resolve(
        specs, "x", {"window_minutes": 15, "unrelated": 1}, {"user_email": "u@example.com"}
    )
    assert values == {"window_minutes": 15, "user_email": "u@example.com"}


def test_override_beats_env_default(specs: dict[str, params.ParamSpec]) -> None:
    values = params.resolve(
        specs, "x", {"window_minutes": 15}, {"window_minutes": "5", "user_email": "u"}
    )
    assert values["window_minutes"] == 5


@pytest.mark.parametrize(
    ("value", "what"),
    [
        ("sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", "a Stripe live secret key"),
        ("sk_test_" + "4eC39HqLyjWDarjtT1zdp7dc", "a Stripe test secret key"),
        ("whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "a Stripe webhook signing secret"),
        ("Y2xvdWRmbGFyZS10b2tlbi1zaGFwZWQtdmFsdWUx", "a 40-character Cloudflare API token"),
        (
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "a JSON Web Token",
        ),
    ],
)
def test_secret_literals_are_refused(
    specs: dict[str, params.ParamSpec], value: str, what: str
) -> None:
    with pytest.raises(SecretLiteral) as err:
        params.resolve(specs, "x", {}, {"user_email": value})
    assert what in str(err.value)
    assert "-p user_email=env:MY_SECRET" in str(err.value)


def test_secret_reference_is_accepted(specs: dict[str, params.ParamSpec]) -> None:
    assert params.resolve(specs, "x", {}, {"user_email": "env:STRIPE_API_KEY"}) == {
        "user_email": "env:STRIPE_API_KEY"
    }


def test_ordinary_ids_are_not_secrets() -> None:
    assert params.secret_shape("0f1e2d3c4b5a69788796a5b4c3d2e1f0") is None  # 32-hex account id
    assert params.secret_shape("3f2c1b4a-9e8d-4c7b-a6f5-e4d3c2b1a098") is None  # uuid
    assert params.secret_shape("https://api.example.com/health") is None


def test_parse_overrides() -> None:
    assert params.parse_overrides(["a=1", "b=x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(BadParameterValue, match="must be written name=value"):
        params.parse_overrides(["oops"])
