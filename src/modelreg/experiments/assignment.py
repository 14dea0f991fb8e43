"""Which variant a routing key gets: a salted, stable hash into 10,000 buckets.

A request's routing key (a user id header, else the request id) is hashed
with the experiment's id as salt into one of :data:`BUCKETS` buckets, so:

- one key always gets the same variant, in every process and on every
  replica (SHA-256, never Python's per-process ``hash()``);
- two experiments split users independently (the salt);
- treatments own fixed *lanes* of the bucket space, and a treatment's share
  grows from the start of its lane, so ramping 10% → 50% only adds keys to a
  treatment and never moves one back to control; a stop (share 0) sends
  everyone to control.

With ``n`` treatments each lane is ``BUCKETS / n`` wide: one treatment may
take up to the whole space, two up to half each. Everything here is pure.
The course's exercise 6 routes ``md5(request_id) % 100 < split``: unsalted,
keyed on the request, so the same user flips between variants; this is its
sticky, salted replacement.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from modelreg.errors import InvalidInputError

BUCKETS = 10_000
CONTROL = "control"


def bucket(experiment_id: str, key: str) -> int:
    """The bucket (0 to BUCKETS - 1) of ``key`` in experiment ``experiment_id``.

    SHA-256 of ``"<experiment_id>:<key>"`` (UTF-8), its first 8 bytes as an
    unsigned big-endian integer, modulo :data:`BUCKETS` (the modulo bias of a
    64-bit value over 10,000 buckets is below 1e-15).
    """
    digest = hashlib.sha256(f"{experiment_id}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


@dataclass(frozen=True)
class Split:
    """How an experiment divides traffic: treatment names and their shares.

    ``traffic`` is each treatment's share of all traffic (0 to 1); the rest
    goes to control. Raises InvalidInputError for no treatments, a duplicate or
    reserved name, or a share outside [0, 1 / number of treatments].
    """

    treatments: tuple[str, ...]
    traffic: float

    def __post_init__(self) -> None:
        if not self.treatments:
            raise InvalidInputError("an experiment needs at least one treatment")
        if len(set(self.treatments)) != len(self.treatments) or CONTROL in self.treatments:
            raise InvalidInputError(
                f"treatment names must be distinct and not {CONTROL!r}: {list(self.treatments)}"
            )
        most = 1 / len(self.treatments)
        if not 0 <= self.traffic <= most:
            raise InvalidInputError(
                f"traffic {self.traffic!r} per treatment must be between 0 and {most:g} "
                f"with {len(self.treatments)} treatment(s)"
            )

    def ramped(self, traffic: float) -> Split:
        """The same treatments at another share (a ramp, or 0 for a stop)."""
        return Split(self.treatments, traffic)

    def variant_of(self, bucket_number: int) -> str:
        """The variant owning ``bucket_number``: a treatment's name, or :data:`CONTROL`."""
        lane = BUCKETS // len(self.treatments)
        index, offset = divmod(bucket_number, lane)
        if index < len(self.treatments) and offset < round(self.traffic * BUCKETS):
            return self.treatments[index]
        return CONTROL


def assign(experiment_id: str, split: Split, key: str) -> str:
    """The variant ``key`` gets in experiment ``experiment_id`` under ``split``."""
    return split.variant_of(bucket(experiment_id, key))
