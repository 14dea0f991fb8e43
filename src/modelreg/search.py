"""The search filter language: parse once, split into what MLflow and the ledger answer.

Grammar (``and`` joins clauses; keywords are case-insensitive)::

    filter  := clause ("and" clause)*
    clause  := key op value
    key     := name | version | stage | semver | run_id | lineage
             | tags.<key> | params.<key> | metrics.<key>      (<key> may be `back-quoted`)
    op      := = | != | > | >= | < | <= | like | ilike
    value   := 'text' | "text" | number | bare-word

``semver`` takes a version or a range (``'1.2.x'``, ``'>=1.2,<2'``, ``'^1.4.0'``);
``stage`` one of None/Staging/Production/Archived; ``lineage`` complete/incomplete.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelreg import semver
from modelreg.domain import SemVer, Stage
from modelreg.errors import InvalidFilterError, InvalidSemVerError, InvalidStageError

_MAX_FILTER = 2000
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<op>!=|>=|<=|=|>|<)
      | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<bq>`[^`]+`)
      | (?P<word>[A-Za-z0-9_.\-+*^~:/,]+)
    )""",
    re.VERBOSE,
)
_KEY = re.compile(r"^(name|version|stage|semver|run_id|lineage|(tags|params|metrics)\..+)$")
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


@dataclass(frozen=True)
class Clause:
    """One ``key op value`` condition."""

    key: str
    op: str
    value: str
    quoted: bool

    @property
    def namespace(self) -> str:
        """``tags``, ``params``, ``metrics`` or ``""`` for a built-in key."""
        head, dot, _ = self.key.partition(".")
        return head if dot and head in {"tags", "params", "metrics"} else ""

    @property
    def field(self) -> str:
        """The key without its namespace."""
        return self.key.partition(".")[2] if self.namespace else self.key

    def mlflow_text(self, quote: Callable[[str], str | None]) -> str:
        """Render the clause in MLflow's own filter syntax, quoting values with ``quote``.

        ``quote`` returns the literal MLflow reads back as the value, or None when
        none can express it; such a filter is refused rather than sent mangled.
        """
        literal = self.value if self.namespace == "metrics" else quote(self.value)
        if literal is None:
            raise InvalidFilterError(
                f"{self.key} {self.op} ...",
                "MLflow's filter syntax cannot express a value holding both ' and \"",
            )
        rendered = literal
        op = self.op.upper() if self.op in {"like", "ilike"} else self.op
        key = f"{self.namespace}.`{self.field}`" if self.namespace else self.field
        return f"{key} {op} {rendered}"


@dataclass(frozen=True)
class Query:
    """A parsed filter, split by who can answer each clause."""

    text: str
    clauses: tuple[Clause, ...]

    def by_namespace(self, namespace: str) -> list[Clause]:
        """The clauses on ``tags``, ``params``, ``metrics`` or built-in keys (``""``)."""
        return [c for c in self.clauses if c.namespace == namespace]


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            # Name the offending character itself, not the blanks before it.
            at = len(text) - len(text[pos:].lstrip())
            raise InvalidFilterError(text, f"unexpected character {text[at]!r} at position {at}")
        kind = match.lastgroup or ""
        token = match.group(kind)
        if kind == "bq" and tokens and tokens[-1][0] == "word" and tokens[-1][1].endswith("."):
            # tags.`key with spaces` arrives as two tokens; join them into one key.
            tokens[-1] = ("word", tokens[-1][1] + token[1:-1])
        else:
            tokens.append((kind, token))
        pos = match.end()
    return tokens


def _unquote(token: str) -> str:
    return re.sub(r"\\(.)", r"\1", token[1:-1])


def parse(text: str) -> Query:
    """Parse a filter; raise InvalidFilterError saying what is wrong."""
    if len(text) > _MAX_FILTER:
        raise InvalidFilterError(text, f"longer than {_MAX_FILTER} characters")
    tokens = _tokens(text)
    if not tokens:
        raise InvalidFilterError(text, "it is empty")
    clauses: list[Clause] = []
    i = 0
    while i < len(tokens):
        if clauses:
            if tokens[i] != ("word", tokens[i][1]) or tokens[i][1].lower() != "and":
                raise InvalidFilterError(text, f"expected 'and' before {tokens[i][1]!r}")
            i += 1
        if i + 3 > len(tokens):
            raise InvalidFilterError(text, "a condition is incomplete; write key op value")
        (key_kind, key), (op_kind, op), (value_kind, value) = tokens[i : i + 3]
        key = _key(text, key_kind, key)
        if op_kind == "word" and op.lower() in {"like", "ilike"}:
            op = op.lower()
        elif op_kind != "op":
            raise InvalidFilterError(text, f"expected an operator after {key!r}, got {op!r}")
        if value_kind not in {"str", "word"}:
            raise InvalidFilterError(text, f"expected a value after {op!r}")
        quoted = value_kind == "str"
        clause = Clause(key, op, _unquote(value) if quoted else value, quoted)
        _check(text, clause)
        clauses.append(clause)
        i += 3
    return Query(text, tuple(clauses))


def _key(text: str, kind: str, token: str) -> str:
    if kind == "word":
        head, dot, rest = token.partition(".")
        key = f"{head.lower()}.{rest}" if dot else token.lower()
    else:
        raise InvalidFilterError(text, f"expected a key, got {token!r}")
    if not _KEY.match(key):
        raise InvalidFilterError(
            text,
            f"unknown key {token!r}; use name, version, stage, semver, run_id, lineage, "
            "tags.<key>, params.<key> or metrics.<key>",
        )
    return key


_EQUALITY = frozenset({"=", "!="})
_ORDER = frozenset(_COMPARE)
_TEXT = frozenset({"=", "!=", "like", "ilike"})
# The operators each key (or namespace) takes, and the message when another is used.
# ``params`` take every operator: MLflow compares them as text.
_OPERATORS: dict[str, tuple[frozenset[str], str]] = {
    "metrics": (_ORDER, "metrics compare with = != > >= < <=, not LIKE"),
    "tags": (_TEXT, "tags compare with =, !=, LIKE or ILIKE"),
    "stage": (_EQUALITY, "stage compares with = or !="),
    "semver": (_EQUALITY, "semver takes = or != with a version or range"),
    "version": (_ORDER, "version compares with = != > >= < <=, not LIKE"),
    "lineage": (_EQUALITY, "lineage compares with = or !="),
    "name": (_TEXT, "name compares with =, !=, LIKE or ILIKE"),
    "run_id": (_TEXT, "run_id compares with =, !=, LIKE or ILIKE"),
}


def _metric(value: str) -> str | None:
    try:
        float(value)
    except ValueError:
        return f"metric value {value!r} is not a number"
    return None


def _parsed(parse_: Callable[[str], object]) -> Callable[[str], str | None]:
    """A value check from a parser: its error's message, or None."""

    def check(value: str) -> str | None:
        try:
            parse_(value)
        except (InvalidStageError, InvalidSemVerError) as exc:
            return exc.message
        return None

    return check


def _whole(value: str) -> str | None:
    # ASCII only: str.isdigit also takes superscripts (int() refuses) and other digits.
    if value.isascii() and value.isdigit():
        return None
    return f"version {value!r} is not a whole number"


def _lineage(value: str) -> str | None:
    if value.lower() in {"complete", "incomplete"}:
        return None
    return "lineage is 'complete' or 'incomplete'"


# What a value must be for each key: a check returns why it is not, or None.
_VALUES: dict[str, Callable[[str], str | None]] = {
    "metrics": _metric,
    "stage": _parsed(Stage.parse),
    "semver": _parsed(semver.parse_range),
    "version": _whole,
    "lineage": _lineage,
}


def _check(text: str, clause: Clause) -> None:
    """Refuse an operator the key does not take, or a value it cannot hold."""
    kind = clause.namespace or clause.key
    operators, wrong_operator = _OPERATORS.get(kind, (frozenset(), ""))
    if operators and clause.op not in operators:
        raise InvalidFilterError(text, wrong_operator)
    value_check = _VALUES.get(kind)
    why = value_check(clause.value) if value_check is not None else None
    if why is not None:
        raise InvalidFilterError(text, why)


def _like(pattern: str, value: str, *, fold: bool) -> bool:
    regex = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if fold else 0) is not None


@dataclass(frozen=True)
class Candidate:
    """The built-in facts of one version that built-in clauses test."""

    name: str
    version: int
    stage: Stage
    semver: SemVer | None
    run_id: str
    lineage_complete: bool


def matches(clause: Clause, item: Candidate) -> bool:
    """Whether a built-in clause holds for ``item``."""
    if clause.key == "stage":
        equal = item.stage is Stage.parse(clause.value)
    elif clause.key == "semver":
        equal = item.semver is not None and semver.parse_range(clause.value).contains(item.semver)
    elif clause.key == "lineage":
        equal = item.lineage_complete == (clause.value.lower() == "complete")
    elif clause.key == "version":
        return _COMPARE[clause.op](item.version, int(clause.value))
    else:
        value = item.name if clause.key == "name" else item.run_id
        if clause.op in {"like", "ilike"}:
            return _like(clause.value, value, fold=clause.op == "ilike")
        return _COMPARE[clause.op](value, clause.value)
    return equal if clause.op == "=" else not equal
