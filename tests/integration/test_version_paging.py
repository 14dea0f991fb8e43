"""A model's versions paged by the ledger, and a page's runs read in one search.

``Registry.versions_page`` (the dashboard's Model page) asks the ledger for the
page's version numbers and MLflow only for those versions and their runs. The
gateway reads are checked on the REST path (the parametrised servers) and on
the client path (MLflow's SQL store in-process, as ``sqlite:///`` URIs use it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from mlflow import MlflowClient

from modelreg.domain import Stage
from modelreg.errors import ModelNotFoundError
from modelreg.mlflow_gateway import MlflowGateway
from modelreg.registry import Registry
from services import Backend

pytestmark = pytest.mark.integration


def test_pages_run_newest_first_over_the_ledgers_versions(
    registry: Registry, quick_versions: Callable[[str, int], list[int]], model_name: str
) -> None:
    numbers = quick_versions(model_name, 7)
    registry.promote(model_name, numbers[-2], Stage.PRODUCTION)

    pages = [registry.versions_page(model_name, limit=3, offset=o) for o in (0, 3, 6, 9)]

    assert [[v.version for v in p.versions] for p in pages] == [
        [7, 6, 5],
        [4, 3, 2],
        [1],
        [],
    ]
    assert {p.total for p in pages} == {7}
    first = pages[0].versions
    assert first[1].aliases == ["production"] and first[1].stage == Stage.PRODUCTION
    assert first[0].aliases == [] and all(v.adopted and v.semver for v in first)
    # The page's runs, read in one search, are what show() reads one by one.
    shown = registry.show(model_name, 7)
    assert (first[0].run_id, first[0].params, first[0].metrics) == (
        shown.run_id,
        shown.params,
        shown.metrics,
    )
    assert first[0].run_id


def test_versions_the_ledger_has_not_adopted_appear_after_sync(
    backend: Backend,
    registry: Registry,
    quick_versions: Callable[[str, int], list[int]],
    model_name: str,
) -> None:
    from registry_helpers import create_versions

    quick_versions(model_name, 2)
    [plain] = create_versions(backend, registry, model_name, 1, adopt=False)

    before = registry.versions_page(model_name, limit=25, offset=0)
    assert ([v.version for v in before.versions], before.total) == ([2, 1], 2)

    registry.sync(model_name)
    after = registry.versions_page(model_name, limit=25, offset=0)
    assert ([v.version for v in after.versions], after.total) == ([plain, 2, 1], 3)


def test_a_version_deleted_from_mlflow_is_left_out_of_its_page(
    backend: Backend,
    registry: Registry,
    quick_versions: Callable[[str, int], list[int]],
    model_name: str,
) -> None:
    quick_versions(model_name, 4)
    MlflowClient(backend.tracking_uri).delete_model_version(model_name, "3")

    page = registry.versions_page(model_name, limit=2, offset=0)
    assert ([v.version for v in page.versions], page.total) == ([4], 4)
    rest = registry.versions_page(model_name, limit=2, offset=2)
    assert [v.version for v in rest.versions] == [2, 1]


def test_an_unknown_model_or_one_without_versions(registry: Registry, model_name: str) -> None:
    with pytest.raises(ModelNotFoundError):
        registry.versions_page(model_name, limit=25, offset=0)
    MlflowClient(registry.gateway.tracking_uri).create_registered_model(model_name)
    empty = registry.versions_page(model_name, limit=25, offset=0)
    assert (empty.versions, empty.total) == ([], 0)


# -- the gateway reads on both paths -------------------------------------------------


@pytest.fixture(params=["rest", "client"])
def gateway(
    request: pytest.FixtureRequest, mlflow_sqlite: Backend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlflowGateway]:
    """A gateway over REST (the SQLite-backed server) or over MLflow's client on a SQLite file."""
    if request.param == "rest":
        uri = mlflow_sqlite.tracking_uri
    else:
        uri = f"sqlite:///{tmp_path_factory.mktemp('client-path') / 'mlflow.db'}"
    found = MlflowGateway(uri)
    assert (found._rest is None) == (request.param == "client")
    yield found
    found.close()


def _run(client: MlflowClient, experiment: str, auc: float, artifacts: Path) -> str:
    """A run in ``experiment`` (created when missing) logging test_auc and a param."""
    existing = client.get_experiment_by_name(experiment)
    experiment_id = (
        existing.experiment_id
        if existing is not None
        else client.create_experiment(experiment, artifact_location=artifacts.as_uri())
    )
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "test_auc", auc)
    client.log_param(run.info.run_id, "depth", "3")
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


def test_runs_reads_runs_of_several_experiments_in_one_search(
    gateway: MlflowGateway, tmp_path: Path
) -> None:
    client = MlflowClient(gateway.tracking_uri)
    first = _run(client, f"e-{uuid4().hex[:8]}", 0.91, tmp_path)
    second = _run(client, f"e-{uuid4().hex[:8]}", 0.87, tmp_path)
    # run() still reads deleted runs and runs of deleted experiments; so does runs().
    client.delete_experiment(client.get_run(second).info.experiment_id)

    found = gateway.runs([first, second, uuid4().hex, ""])

    assert set(found) == {first, second}
    assert found[first].metrics == {"test_auc": 0.91}
    assert found[second].metrics == {"test_auc": 0.87}
    assert found[first].params == {"depth": "3"}
    assert found[first].experiment_id != found[second].experiment_id
    assert found[first] == gateway.run(first)
    assert gateway.runs([]) == {} and gateway.runs([uuid4().hex]) == {}


def test_versions_numbered_reads_only_the_versions_asked_for(
    gateway: MlflowGateway, tmp_path: Path, model_name: str
) -> None:
    client = MlflowClient(gateway.tracking_uri)
    run_id = _run(client, f"e-{uuid4().hex[:8]}", 0.9, tmp_path)
    client.create_registered_model(model_name)
    for _ in range(6):
        client.create_model_version(model_name, f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias(model_name, "production", "4")
    client.delete_model_version(model_name, "3")

    found = gateway.versions_numbered(model_name, [5, 4, 3, 2])

    assert [v.version for v in found] == [5, 4, 2]  # 3 is gone from MLflow
    assert [v.aliases for v in found] == [(), ("production",), ()]
    assert {v.run_id for v in found} == {run_id}
    assert gateway.versions_numbered(model_name, [6, 1]) == [
        gateway.version(model_name, 6),
        gateway.version(model_name, 1),
    ]
    assert gateway.versions_numbered(model_name, []) == []
    with pytest.raises(ModelNotFoundError):
        gateway.versions_numbered(f"m-{uuid4().hex[:10]}", [1])
