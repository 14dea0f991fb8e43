"""Hostile inputs by kind, the shapes MLflow's advisories and web-service attacks used.

Each entry is ``(label, value)``. Names, references and filters are plain text;
adapters encode them (URL-quote for paths, argv for the CLI). ``must_refuse``
inputs get a 4xx or a non-zero exit; the others only must not crash (a filter
that matches nothing may answer an empty list).
"""

from __future__ import annotations

NAMES: list[tuple[str, str]] = [
    ("dotdot", ".."),
    ("dot", "."),
    ("traversal", "../../../../etc/passwd"),
    ("traversal-mid", "a/../b"),
    ("backslash", "..\\..\\etc\\passwd"),
    ("absolute", "/etc/passwd"),
    ("file-uri", "file:///etc/passwd"),
    ("proc-environ", "//proc/self/environ"),
    ("mlflow-artifacts-uri", "mlflow-artifacts:../../"),
    ("models-uri", "models:/m/1"),
    ("nul", "sec\x00model"),
    ("newline", "sec-model\n"),
    ("crlf-header", "sec\r\nX-Injected: 1"),
    ("tab", "sec\tmodel"),
    ("leading-space", " sec-model"),
    ("trailing-space", "sec-model "),
    ("empty", ""),
    ("long", "a" * 10_000),
    ("overlong-utf8-text", "\u00c0\u00ae\u00c0\u00ae/"),
    ("bidi-override", "sec\u202emodel"),
    ("zero-width", "sec\u200bmodel"),
]

# Names MLflow and modelreg accept as ordinary names; they must resolve to "not found",
# never to another model (a look-alike of the seeded name).
LOOKALIKE_NAMES: list[tuple[str, str]] = [
    ("percent-encoded-dotdot", "%2e%2e%2f%2e%2e%2f"),  # taken literally, never decoded twice
    ("double-encoded", "%252e%252e%252f"),
    ("fullwidth-s", "\uff53ec"),
    ("cyrillic-e", "s\u0435c"),
    ("unicode-hyphen", "sec\u2010x"),
    ("apostrophe", "sec'x"),
    ("sql-ish", "x' or '1'='1"),
    ("question", "sec?x=1"),
    ("hash", "sec#frag"),
]

REFS: list[tuple[str, str]] = [
    ("superscript-two", "\u00b2"),
    ("arabic-indic-one", "\u0661"),
    ("fullwidth-one", "\uff11"),
    ("negative", "-1"),
    ("zero", "0"),
    ("past-32-bits", "2147483648"),
    ("past-64-bits", "9" * 30),
    ("huge", "9" * 400),
    ("semver-huge-component", "1.0." + "9" * 60),
    ("semver-past-32-bits", "2147483648.0.0"),
    ("semver-build-traversal", "1.0.0+../../etc"),
    ("semver-build-long", "1.0.0+" + "a" * 190),
    ("semver-wildcard", "1.x.x"),
    ("float", "1e3"),
    ("nan", "NaN"),
    ("infinity", "Infinity"),
    ("traversal", "../1"),
    ("nul", "1\x00"),
    ("long", "1" * 10_000),
]

FILTERS: list[tuple[str, str, bool]] = [
    # (label, filter, must_refuse)
    ("traversal-value", "name = '../../etc/passwd'", False),
    ("file-uri-value", "tags.x = 'file:///etc/passwd'", False),
    ("unterminated", "name = 'a", True),
    ("sql-injection", "name = 'a' or 1=1 --", True),
    ("sql-union", "name = 'a' union select * from events", True),
    ("unknown-key", "password = 'x'", True),
    ("unicode-operator", "name \u2260 'a'", True),
    ("nan-metric", "metrics.auc > NaN", True),
    ("huge-metric", "metrics.auc > 1e400", False),
    ("huge-version", "version = " + "9" * 60, False),  # no version matches: []
    ("superscript-version", "version = '\u00b2'", True),
    ("arabic-indic-version", "version > '\u0661'", True),
    ("huge-semver", "semver = '1.0." + "9" * 60 + "'", True),
    ("stage-lookalike", "stage = 'Pr\u043eduction'", True),
    ("nul", "name = 'a\x00b'", False),
    ("newline", "name = 'a'\nand name = 'b'", False),
    ("deep-and", " and ".join(["name = 'a'"] * 150), False),
    ("over-limit", "name = '" + "a" * 5000 + "'", True),
    ("empty", "", True),
]

AT_TIMES: list[tuple[str, str, bool]] = [
    ("traversal", "../../etc", True),
    ("nan", "nan", True),
    ("long", "2" * 10_000, True),
    ("epoch-huge", "9" * 30, True),
    ("year-9999", "9999-12-31T23:59:59+14:00", False),
]

_DEEP = "[" * 10_000 + "]" * 10_000

# Raw JSON bodies (bytes, since most are not what json.dumps writes).
API_BODIES: list[tuple[str, bytes]] = [
    ("nan", b'{"stage": NaN, "reason": "x"}'),
    ("infinity", b'{"stage": Infinity}'),
    ("minus-infinity", b'{"stage": -Infinity}'),
    ("nan-in-to", b'{"to": NaN}'),
    ("huge-int", b'{"stage": ' + b"9" * 5000 + b"}"),
    ("huge-float", b'{"stage": 1e400}'),
    ("deep", b'{"stage": ' + _DEEP.encode() + b"}"),
    ("not-json", b"{not json"),
    ("array", b"[]"),
    ("string", b'"Production"'),
    ("null", b"null"),
    ("duplicate-keys", b'{"stage": "Staging", "stage": "Production\\u0000"}'),
    ("invalid-utf8", b'{"stage": "\xff\xfe"}'),
    ("stage-lookalike", '{"stage": "Pr\u043eduction"}'.encode()),
    ("stage-nul", b'{"stage": "Staging\\u0000"}'),
    ("stage-long", b'{"stage": "' + b"s" * 10_000 + b'"}'),
    ("reason-long", b'{"stage": "Archived", "reason": "' + b"r" * 100_000 + b'"}'),
    ("to-superscript", b'{"to": "\\u00b2"}'),
    ("to-huge", b'{"to": "1.0.' + b"9" * 60 + b'"}'),
    ("to-traversal", b'{"to": "../../1"}'),
    ("to-number-huge", b'{"to": ' + b"9" * 400 + b"}"),
    ("extra-fields", b'{"stage": "Live", "__proto__": {"admin": true}, "actor": "ann"}'),
]


def _record(amount: bytes) -> bytes:
    """A scoring body for the seeded model (columns amount, age, score) with this amount."""
    return b'{"dataframe_records": [{"amount": ' + amount + b', "age": 0, "score": 0}]}'


def _split(amount: bytes) -> bytes:
    return (
        b'{"dataframe_split": {"columns": ["amount", "age", "score"], "data": [['
        + amount
        + b", 0, 0]]}}"
    )


SERVER_BODIES: list[tuple[str, bytes]] = [
    ("deep-inputs", b'{"inputs": ' + _DEEP.encode() + b"}"),
    ("deep-params", b'{"inputs": [[1, 2, 3]], "params": {"p": ' + _DEEP.encode() + b"}}"),
    ("deep-65", b'{"inputs": ' + b"[" * 65 + b"]" * 65 + b"}"),
    ("huge-int-split", _split(b"1" + b"0" * 400)),
    ("huge-int-records", _record(b"1" + b"0" * 400)),
    ("huge-negative-int", _record(b"-1" + b"0" * 400)),
    ("huge-float", _record(b"1e400")),
    ("nan", _record(b"NaN")),
    ("infinity", _record(b"Infinity")),
    ("string-in-float", _record(b'"x"')),
    ("not-json", b"{not json"),
    ("invalid-utf8", b'{"inputs": "\xff\xfe"}'),
    ("array", b"[]"),
    ("two-input-keys", b'{"inputs": [], "instances": []}'),
    ("params-not-object", b'{"inputs": [[1, 2, 3]], "params": []}'),
    ("ragged", b'{"dataframe_split": {"columns": ["amount"], "data": [[1, 2], [3]]}}'),
    ("traversal-columns", b'{"dataframe_split": {"columns": ["../../etc/passwd"], "data": [[1]]}}'),
    ("empty", b""),
]

# (label, header name, header value as bytes): odd identities and injection attempts.
HEADERS: list[tuple[str, str, bytes]] = [
    ("actor-traversal", "X-Modelreg-Actor", b"../../etc/passwd"),
    ("actor-long", "X-Modelreg-Actor", b"a" * 300),
    ("actor-latin1", "X-Modelreg-Actor", "\u00e9ve".encode("latin-1")),
    ("actor-utf8", "X-Modelreg-Actor", "\u00e9ve".encode()),
    ("actor-spaces", "X-Modelreg-Actor", b"   "),
    ("actor-nul-ish", "X-Modelreg-Actor", b"ann\x7f"),
    ("authorization-garbage", "Authorization", b"Basic !!!notbase64"),
    ("authorization-huge", "Authorization", b"Basic " + b"A" * 20_000),
    ("content-length-negative", "Content-Length", b"-1"),
    ("request-id-injection", "X-Request-ID", b"abc\x0bdef"),
]
