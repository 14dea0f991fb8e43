"""The API's cache of verified MLflow passwords: short-lived, and dropped on a refusal."""

from __future__ import annotations

import pytest

from modelreg.api import identity
from modelreg.api.identity import Identifier
from modelreg.errors import AuthenticationError


class _MlflowUsers:
    """Stands in for the registry's check against MLflow's basic-auth app."""

    def __init__(self) -> None:
        self.passwords = {"carol": "old"}
        self.asked = 0

    def authenticate(self, username: str, password: str) -> str:
        self.asked += 1
        if self.passwords.get(username) != password:
            raise AuthenticationError("refused")
        return username


def test_a_refusal_drops_every_cached_password_of_the_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    users = _MlflowUsers()
    checker = Identifier(users)  # type: ignore[arg-type]
    assert checker._check("carol", "old") == "carol"
    assert checker._check("carol", "old") == "carol"
    assert users.asked == 1  # the second answer came from the cache
    users.passwords["carol"] = "new"  # changed in MLflow
    with pytest.raises(AuthenticationError):
        checker._check("carol", "guess")
    with pytest.raises(AuthenticationError):
        checker._check("carol", "old")  # no longer trusted from the cache
    assert checker._check("carol", "new") == "carol"


def test_entries_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    users = _MlflowUsers()
    checker = Identifier(users)  # type: ignore[arg-type]
    clock = [1000.0]
    monkeypatch.setattr(identity.time, "monotonic", lambda: clock[0])
    checker._check("carol", "old")
    clock[0] += identity.CREDENTIALS_TTL_SECONDS + 1
    checker._check("carol", "old")
    assert users.asked == 2
    assert identity.CREDENTIALS_TTL_SECONDS <= 15
