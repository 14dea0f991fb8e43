#!/usr/bin/env python
"""Container health check: exit 0 if the URL answers 200 within 4 s, else 1.

Usage: healthcheck http://127.0.0.1:8000/health
The modelreg image has no curl or wget; this uses only the standard library.
"""

import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    """Check ``argv[1]``; print why on failure (Docker keeps the last output)."""
    if len(argv) != 2:
        sys.stderr.write("usage: healthcheck URL\n")
        return 2
    try:
        with urllib.request.urlopen(argv[1], timeout=4) as response:  # noqa: S310 - our URL
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        sys.stderr.write(f"{argv[1]}: {exc}\n")
        return 1
    if status != 200:
        sys.stderr.write(f"{argv[1]}: HTTP {status}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
