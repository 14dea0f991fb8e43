"""Semantic versions for model versions: parse, compare, choose the next one, match ranges.

A model's semantic version says what a consumer must expect from an upgrade:

- MAJOR: the input signature is incompatible (a column removed, renamed or
  retyped, a new required column, an optional column made required);
- MINOR: inputs stay compatible but the model changed (a new optional input,
  another flavor or model class, different hyperparameters);
- PATCH: only the data or the retraining changed.

Ranges follow npm's syntax (exact, ``1.2.x``, ``>=1.2,<2``, ``^1.2.3``, ``~1.2.3``)
without pre-releases, which modelreg does not issue. Everything here is pure.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelreg.domain import MAX_VERSION_NUMBER, SemVer
from modelreg.errors import InvalidSemVerError, SemVerConflictError

MAX_LENGTH = 200
# A version's text and its MAJOR/MINOR/PATCH live in the ledger's String(128) and INTEGER
# columns: anything larger is refused here instead of failing in the database.
MAX_VERSION_LENGTH = 128
MAX_COMPONENT = MAX_VERSION_NUMBER
_NUMBER = re.compile(r"0|[1-9][0-9]*")
_BUILD = re.compile(r"[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*")
_WILDCARDS = frozenset({"x", "X", "*"})
# Longest operators first so ">=1.0.0" is not read as ">" followed by "=1.0.0".
_OPERATORS = ("^", "~", "!=", "==", ">=", "<=", "=", ">", "<")
# "> = 1" must stay an error, so only glue an operator to something that starts a version.
_GLUED_OPERATOR = re.compile("(" + "|".join(map(re.escape, _OPERATORS)) + r")\s+(?=[0-9vxX*])")
_SEPARATOR = re.compile(r"\s*,\s*|\s+")

Core = tuple[int, int, int]


def _check_length(text: str, limit: int = MAX_LENGTH) -> None:
    # Bounds the work done on hostile input before any regex runs.
    if len(text) > limit:
        raise InvalidSemVerError(text, f"longer than {limit} characters")


def _split(text: str, spec: str) -> tuple[list[str], str]:
    """Split ``spec`` into its dot-separated core parts and build; ``text`` is for errors."""
    spec = spec.removeprefix("v")
    core, plus, build = spec.partition("+")
    if plus and not _BUILD.fullmatch(build):
        raise InvalidSemVerError(
            text, "build metadata must be dot-separated identifiers of [0-9A-Za-z-]"
        )
    if "-" in core:
        raise InvalidSemVerError(text, "pre-release versions (like '-rc1') are not supported")
    parts = core.split(".")
    if len(parts) > 3:
        raise InvalidSemVerError(text, "expected at most three numbers MAJOR.MINOR.PATCH")
    for part in parts:
        if part in _WILDCARDS:
            continue
        if not part or not part.isascii() or not part.isdigit():
            raise InvalidSemVerError(text, f"{part!r} is not a number")
        if not _NUMBER.fullmatch(part):
            raise InvalidSemVerError(text, f"{part!r} has a leading zero")
        if len(part) > len(str(MAX_COMPONENT)) or int(part) > MAX_COMPONENT:
            raise InvalidSemVerError(text, f"{part[:20]!r} is larger than {MAX_COMPONENT}")
    return parts, build


def parse(text: str) -> SemVer:
    """Parse ``MAJOR.MINOR.PATCH[+build]`` (optional leading ``v``) or raise InvalidSemVerError.

    Each number is at most :data:`MAX_COMPONENT` and the text at most
    :data:`MAX_VERSION_LENGTH` characters, so every parsed version fits the ledger.
    """
    _check_length(text, MAX_VERSION_LENGTH)
    parts, build = _split(text, text.strip())
    if len(parts) != 3:
        raise InvalidSemVerError(text, "expected three numbers MAJOR.MINOR.PATCH")
    if any(part in _WILDCARDS for part in parts):
        raise InvalidSemVerError(text, "wildcards are only allowed in version ranges")
    major, minor, patch = (int(part) for part in parts)
    return SemVer(major, minor, patch, build)


@dataclass(frozen=True)
class InputColumn:
    """One named input column of a model signature; ``type`` is MLflow's type name."""

    name: str
    type: str
    required: bool = True


def input_columns(spec: Iterable[Mapping[str, Any]]) -> tuple[InputColumn, ...]:
    """The columns of an MLflow input signature in its JSON form, in signature order.

    ``spec`` is the MLmodel file's ``signature.inputs`` list, or
    ``Schema.to_dict()``: ``{"type": ..., "name": ..., "required": ...}`` per
    column. An unnamed column is named by its position; a tensor's type carries
    its spec (``tensor{'dtype': 'float32', 'shape': (-1, 2)}``) so a changed
    shape is a changed type.
    """
    columns = []
    for index, column in enumerate(spec):
        kind = column.get("type", "")
        if kind == "tensor":
            kind = f"tensor{column.get('tensor-spec', {})}"
        columns.append(
            InputColumn(
                name=str(column.get("name", index)),
                type=str(kind),
                required=bool(column.get("required", True)),
            )
        )
    return tuple(columns)


@dataclass(frozen=True)
class VersionFacts:
    """What :func:`classify` compares between two model versions."""

    inputs: tuple[InputColumn, ...] | None  # None: the version logged no signature
    flavor: str = ""
    model_class: str = ""
    params: tuple[tuple[str, str], ...] = ()  # sorted (name, value) pairs
    data_fingerprint: str = ""

    @classmethod
    def build(
        cls,
        inputs: Iterable[InputColumn] | None,
        flavor: str = "",
        model_class: str = "",
        params: Mapping[str, object] | None = None,
        data_fingerprint: str = "",
    ) -> VersionFacts:
        """Build facts with params normalised to sorted string pairs."""
        pairs = tuple(sorted((str(key), str(value)) for key, value in (params or {}).items()))
        return cls(
            inputs=None if inputs is None else tuple(inputs),
            flavor=flavor,
            model_class=model_class,
            params=pairs,
            data_fingerprint=data_fingerprint,
        )

    def to_json(self) -> dict[str, Any]:
        """The facts as JSON-ready data for the ledger (read back by :meth:`from_json`)."""
        return {
            "inputs": None
            if self.inputs is None
            else [[c.name, c.type, c.required] for c in self.inputs],
            "flavor": self.flavor,
            "model_class": self.model_class,
            "params": [list(pair) for pair in self.params],
            "data_fingerprint": self.data_fingerprint,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VersionFacts:
        """Facts back from the ledger's JSON (what :meth:`to_json` wrote)."""
        inputs = data.get("inputs")
        return cls(
            inputs=None
            if inputs is None
            else tuple(InputColumn(str(n), str(t), bool(r)) for n, t, r in inputs),
            flavor=str(data.get("flavor", "")),
            model_class=str(data.get("model_class", "")),
            params=tuple((str(k), str(v)) for k, v in data.get("params", [])),
            data_fingerprint=str(data.get("data_fingerprint", "")),
        )


class Bump(enum.StrEnum):
    """Which part of a semantic version a new model version increments."""

    MAJOR = "major"
    MINOR = "minor"
    PATCH = "patch"


def _columns(inputs: tuple[InputColumn, ...]) -> dict[str, InputColumn]:
    return {column.name: column for column in inputs}


def breaks_inputs(
    prev: tuple[InputColumn, ...] | None, new: tuple[InputColumn, ...] | None
) -> bool:
    """Whether callers of a model with inputs ``prev`` break on one with inputs ``new``."""
    if prev is None:
        return False  # nothing was promised, so nothing can break
    if new is None:
        return True  # callers relied on a signature that is gone
    before, after = _columns(prev), _columns(new)
    for name, old in before.items():
        column = after.get(name)
        if column is None or column.type != old.type or (column.required and not old.required):
            return True
    return any(column.required for name, column in after.items() if name not in before)


def classify(prev: VersionFacts, new: VersionFacts) -> Bump:
    """Classify the change from ``prev`` to ``new`` as a MAJOR, MINOR or PATCH bump."""
    if breaks_inputs(prev.inputs, new.inputs):
        return Bump.MAJOR
    inputs_changed = (
        prev.inputs is not None
        and new.inputs is not None
        and _columns(prev.inputs) != _columns(new.inputs)
    )
    model_changed = (prev.flavor, prev.model_class, prev.params) != (
        new.flavor,
        new.model_class,
        new.params,
    )
    return Bump.MINOR if inputs_changed or model_changed else Bump.PATCH


def bump(prev: SemVer, kind: Bump) -> SemVer:
    """Return ``prev`` incremented by ``kind``; lower parts reset to 0 and build is dropped.

    Raises InvalidSemVerError when the incremented part would exceed :data:`MAX_COMPONENT`.
    """
    part = {Bump.MAJOR: prev.major, Bump.MINOR: prev.minor, Bump.PATCH: prev.patch}[kind]
    if part >= MAX_COMPONENT:
        raise InvalidSemVerError(str(prev), f"its {kind} cannot grow past {MAX_COMPONENT}")
    if kind is Bump.MAJOR:
        return SemVer(prev.major + 1, 0, 0)
    if kind is Bump.MINOR:
        return SemVer(prev.major, prev.minor + 1, 0)
    return SemVer(prev.major, prev.minor, prev.patch + 1)


def next_version(
    name: str,
    existing: Sequence[SemVer],
    prev_facts: VersionFacts | None,
    new_facts: VersionFacts,
    explicit: SemVer | None = None,
) -> SemVer:
    """Choose the semantic version of a new version of model ``name``.

    The first version gets ``explicit`` or 1.0.0. Later, an explicit version must
    be greater than every existing one (SemVerConflictError otherwise); without
    one, the highest existing version is bumped by :func:`classify` (MINOR when
    the previous facts are unknown).
    """
    if not existing:
        return SemVer(1, 0, 0) if explicit is None else explicit
    highest = max(existing)
    if explicit is not None:
        if explicit.core <= highest.core:
            raise SemVerConflictError(name, str(explicit), str(highest))
        return explicit
    kind = Bump.MINOR if prev_facts is None else classify(prev_facts, new_facts)
    return bump(highest, kind)


@dataclass(frozen=True)
class _Comparator:
    """``op`` applied to the versions whose core lies in ``[low, high)``; high None = unbounded."""

    op: str
    low: Core
    high: Core | None
    build: str = ""

    def matches(self, v: SemVer) -> bool:
        if self.op in {"=", "!="}:
            inside = self.low <= v.core and (self.high is None or v.core < self.high)
            hit = inside and (not self.build or v.build == self.build)
            return hit == (self.op == "=")
        if self.op == ">=":
            return self.low <= v.core
        if self.op == ">":
            return self.high is not None and self.high <= v.core
        if self.op == "<":
            return v.core < self.low
        return self.high is None or v.core < self.high  # "<="


@dataclass(frozen=True)
class SemVerRange:
    """A set of semantic versions written in npm-style range syntax; see :func:`parse_range`."""

    text: str
    comparators: tuple[_Comparator, ...]

    def contains(self, v: SemVer) -> bool:
        """Return whether ``v`` satisfies every comparator of this range."""
        return all(comparator.matches(v) for comparator in self.comparators)

    def __str__(self) -> str:
        return self.text


def _core(numbers: Sequence[int]) -> Core:
    """Pad up to three numbers with zeros: ``[1, 2]`` is 1.2.0."""
    padded = [*numbers, 0, 0, 0]
    return (padded[0], padded[1], padded[2])


def _comparators(text: str, clause: str) -> list[_Comparator]:
    """Translate one range clause (operator and possibly partial version) into comparators."""
    op = next((candidate for candidate in _OPERATORS if clause.startswith(candidate)), "=")
    spec = clause.removeprefix(op)
    if not spec:
        raise InvalidSemVerError(text, f"operator {op!r} is not followed by a version")
    parts, build = _split(text, spec)
    given = next((i for i, part in enumerate(parts) if part in _WILDCARDS), len(parts))
    if any(part not in _WILDCARDS for part in parts[given:]):
        raise InvalidSemVerError(text, f"{spec!r} has a number after a wildcard")
    numbers = [int(part) for part in parts[:given]]
    if build and len(numbers) != 3:
        raise InvalidSemVerError(text, f"{spec!r} has build metadata without a full version")
    op = "=" if op == "==" else op
    if not numbers:
        # A bare wildcard spans every version; the operator then decides all or nothing.
        return [_Comparator(">=" if op in {"^", "~"} else op, (0, 0, 0), None)]
    low = _core(numbers)
    if op in {"^", "~"}:
        # npm: caret raises the left-most non-zero part given (else the last part given);
        # tilde raises the minor when one is given, else the major.
        if op == "^":
            index = next((i for i, n in enumerate(numbers) if n), len(numbers) - 1)
        else:
            index = min(len(numbers) - 1, 1)
        high = _core([*numbers[:index], numbers[index] + 1])
        return [_Comparator(">=", low, None), _Comparator("<", high, None)]
    # A partial version stands for every version it prefixes: 1.2 is [1.2.0, 1.3.0).
    last = len(numbers) - 1
    high = _core([*numbers[:last], numbers[last] + 1])
    return [_Comparator(op, low, high, build)]


def parse_range(text: str) -> SemVerRange:
    """Parse an npm-style range or raise InvalidSemVerError.

    Supported: exact ``1.2.3`` (``+build`` must then match too), wildcards
    ``1.2.x``/``1.2.*``/``1.x``/``*``, comparator lists ``>=1.2,<2.0.0`` joined
    by commas or spaces (``= == != > >= < <=``; partial versions stand for all
    versions they prefix), caret ``^1.2.3`` and tilde ``~1.2.3``.
    """
    _check_length(text)
    stripped = text.strip()
    if not stripped:
        raise InvalidSemVerError(text, "the range is empty; use '*' to match every version")
    clauses = _SEPARATOR.split(_GLUED_OPERATOR.sub(r"\1", stripped))
    comparators: list[_Comparator] = []
    for clause in clauses:
        if not clause:
            raise InvalidSemVerError(text, "empty comparator between separators")
        if clause == "-":
            raise InvalidSemVerError(text, "hyphen ranges are not supported; use '>=A,<=B'")
        comparators.extend(_comparators(text, clause))
    return SemVerRange(stripped, tuple(comparators))
