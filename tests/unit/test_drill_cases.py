"""Which drill cases exist: each fault where it has a symptom, each runbook where it runs.

A case for a profile whose app cannot show the fault (no such route, no such upstream
call) can only end in a false `healthy`; a multi-profile fault left to its default
profile breaks the other app while the runbook checks this one.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from opsbook import drill
from opsbook.sandbox import faultctl

FAULTS = faultctl.load_all()
CASES = drill.cases(seeds=(7, 11))


def test_every_fault_profile_is_one_its_runbook_declares() -> None:
    for fault in FAULTS:
        declared = drill._runbook_profiles(fault.runbook, fault.profiles)
        assert set(fault.profiles) <= set(declared), (fault.name, fault.profiles, declared)


def test_fault_cases_name_their_profile() -> None:
    for case in CASES:
        if case.fault is None:
            continue
        fault = faultctl.get(case.fault)
        if len(fault.profiles) > 1:
            assert case.options.get("profile") == case.profile, case.name


def test_corrupt_breaks_the_database_of_the_case_profile() -> None:
    corrupt = [c for c in drill.cases(["corrupt"]) if c.fault == "corrupt"]
    assert {c.profile: c.options.get("profile") for c in corrupt} == {
        "manuscript": "manuscript",
        "peptalk": "peptalk",
    }


def test_a_multi_profile_fault_without_a_profile_option_is_refused() -> None:
    fault = SimpleNamespace(name="x", profiles=("manuscript", "peptalk"), options={})
    with pytest.raises(ValueError, match="profile"):
        drill.fault_options(fault, "peptalk")
    single = SimpleNamespace(name="y", profiles=("peptalk",), options={})
    assert drill.fault_options(single, "peptalk") == {}


def test_healthy_cases_follow_the_runbook_profiles() -> None:
    healthy = {(c.runbook, c.profile) for c in CASES if c.fault is None}
    for runbook in {f.runbook for f in FAULTS}:
        declared = drill._runbook_profiles(runbook, ())
        assert {p for r, p in healthy if r == runbook} == set(declared), runbook
    assert ("password-reset", "peptalk") not in healthy


@pytest.mark.parametrize("name", ["email-config-missing", "mail-provider-down", "slow-upstream"])
def test_manuscript_only_faults(name: str) -> None:
    # PepTalk has no password-reset route and its API calls no upstream (seed 004)
    assert faultctl.get(name).profiles == ("manuscript",)
    assert {c.profile for c in CASES if c.fault == name} == {"manuscript"}


def test_profile_filter_and_named_faults() -> None:
    only = drill.cases(["bad-deploy"], profiles=("peptalk",), seeds=(7,))
    assert [(c.fault, c.profile) for c in only] == [("bad-deploy", "peptalk")]
    assert drill.cases(["email-config-missing"], profiles=("peptalk",)) == []
