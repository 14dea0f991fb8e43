"""Version facts survive the ledger: to_json then from_json gives the same facts back."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from modelreg.semver import InputColumn, VersionFacts

_TEXT = st.text(max_size=12)
_COLUMNS = st.lists(st.builds(InputColumn, _TEXT, _TEXT, st.booleans()), max_size=4)


@given(
    inputs=st.none() | _COLUMNS,
    flavor=_TEXT,
    model_class=_TEXT,
    params=st.dictionaries(_TEXT, _TEXT | st.integers() | st.floats(allow_nan=False), max_size=4),
    data=_TEXT,
)
def test_facts_round_trip_through_json_text(
    inputs: list[InputColumn] | None,
    flavor: str,
    model_class: str,
    params: dict[str, object],
    data: str,
) -> None:
    facts = VersionFacts.build(inputs, flavor, model_class, params, data)
    stored = json.loads(json.dumps(facts.to_json()))
    assert VersionFacts.from_json(stored) == facts


def test_facts_without_a_signature_keep_inputs_none() -> None:
    assert VersionFacts.from_json(VersionFacts(None).to_json()).inputs is None
    assert VersionFacts.from_json({}) == VersionFacts(None)
