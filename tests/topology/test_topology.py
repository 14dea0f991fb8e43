"""The production topology, for real, on this machine (issue 12).

PostgreSQL, SeaweedFS S3, MLflow with basic auth, the API, a worker, three
``modelreg serve`` replicas behind nginx and Prometheus scraping them, as
plain processes (``production_shape.py``). One A/B experiment runs under
concurrent load through nginx while a promotion, a ramp and a rolling restart
happen; ``run_checks`` returns one verdict per claim (docs/topology.md).

The CI form loads each phase for ``MODELREG_TOPOLOGY_SECONDS`` (default 8)
seconds, about 1.5 minutes in all on 2 cores; set it higher for the long form.
Without nginx or Prometheus (``apt-get install nginx prometheus``, which
``scripts/test`` does as root) the test skips and says why.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from production_shape import ProductionShape, missing_tools, run_checks

from modelreg.errors import BackendUnavailableError
from services import ServiceSetupError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def shape(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProductionShape]:
    """The whole shape, started once for this module and stopped after it."""
    if missing := missing_tools():
        pytest.skip(
            f"{' and '.join(missing)} not installed: apt-get install -y {' '.join(missing)} "
            "(scripts/test does as root)"
        )
    shape = ProductionShape(Path(tmp_path_factory.mktemp("topology")))
    try:
        shape.start()
    except (ServiceSetupError, BackendUnavailableError) as exc:
        # Fail, never skip: a service that cannot start must not turn this test green.
        pytest.fail(f"cannot start the production shape: {exc}", pytrace=False)
    try:
        yield shape
    finally:
        shape.stop()


def test_production_shape_keeps_its_promises_under_load(shape: ProductionShape) -> None:
    seen = run_checks(shape)
    # The evidence of a passing run too (counts, restarts, timings), beside the logs.
    (shape.logs / "checks.txt").write_text(seen.summary() + "\n")
    assert seen.checks, "no check ran"
    assert seen.ok, f"logs in {shape.logs}\n{seen.summary()}"
