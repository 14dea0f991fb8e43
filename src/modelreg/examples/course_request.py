"""Print an MLflow scoring body with rows of the course's fraud features.

``python -m modelreg.examples.course_request > request.json`` then
``curl ... -d @request.json`` sends two real rows to a model server.
"""

from __future__ import annotations

import json
import sys

from modelreg.examples.course_register import fraud_data


def body(rows: int = 2) -> dict[str, object]:
    """A ``dataframe_split`` body with ``rows`` held-out rows of the course's data."""
    _x_train, x_test, _y_train, _y_test = fraud_data()
    return {"dataframe_split": x_test.head(rows).to_dict(orient="split", index=False)}


def main() -> None:
    """Write the body to standard output."""
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    sys.stdout.write(json.dumps(body(rows)) + "\n")


if __name__ == "__main__":
    main()
