"""The Kubernetes manifests in deploy/k8s: valid for Kubernetes, and consistent with the code.

No cluster runs here. Every manifest is validated offline against the
Kubernetes OpenAPI schemas (``kubernetes-validate``, strict: unknown fields
are errors), and everything a manifest names is checked against the code it
will run: environment variables against the settings, probe and scrape
paths against the apps' routes, commands against the Typer CLI and
uvicorn's options, the serving config against modelreg's own parser, ports
and selectors against each other. Each check is a function returning its
problems, and the negative tests feed it a broken copy, so a check that
could never fail would show.
"""

from __future__ import annotations

import copy
import importlib.metadata
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from deploy_code import (
    api_routes,
    command_problems,
    serving_routes,
    settings_env_names,
    worker_answers,
)

from modelreg.serving.config import ServerConfig, load_config
from modelreg.settings import Settings
from modelreg.stack import api_server_argv

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
#: The oldest Kubernetes the manifests claim (native preStop ``sleep``: 1.30) and the newest schema.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())
NOT_RESOURCES = {"kustomization.yaml"}
EXAMPLE_SECRET = "secret.example.yaml"
VERSION = importlib.metadata.version("modelreg")

Doc = dict[str, Any]


# -- reading the manifests ---------------------------------------------------------------


def _load(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def manifest_files() -> list[Path]:
    """Every Kubernetes manifest in deploy/k8s (the kustomization is not one)."""
    return sorted(p for p in K8S.glob("*.yaml") if p.name not in NOT_RESOURCES)


@pytest.fixture(scope="module")
def docs() -> list[Doc]:
    """Every resource that `kubectl apply -k` applies (the example Secret is not one)."""
    return [doc for path in manifest_files() if path.name != EXAMPLE_SECRET for doc in _load(path)]


@pytest.fixture(scope="module")
def secret() -> Doc:
    """The example Secret `modelreg`."""
    (doc,) = _load(K8S / EXAMPLE_SECRET)
    return doc


def of_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    """Resources of ``kind`` by name."""
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_spec(deployment: Doc) -> Doc:
    """The pod template's spec of a Deployment."""
    spec: Doc = deployment["spec"]["template"]["spec"]
    return spec


def containers(docs: list[Doc]) -> Iterator[tuple[Doc, Doc]]:
    """(deployment, container) for every container of every Deployment."""
    for deployment in of_kind(docs, "Deployment").values():
        for container in pod_spec(deployment)["containers"]:
            yield deployment, container


def probes(container: Doc) -> Iterator[tuple[str, Doc]]:
    """(kind, probe) for each probe the container sets."""
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        if kind in container:
            yield kind, container[kind]


def probe_port(probe: Doc) -> int:
    """The port a probe checks (httpGet or tcpSocket)."""
    action = probe.get("httpGet") or probe["tcpSocket"]
    return int(action["port"])


def container_ports(container: Doc) -> dict[int, str]:
    """containerPort -> port name."""
    return {p["containerPort"]: p.get("name", "") for p in container.get("ports", [])}


def resolve_port(container: Doc, port: int | str) -> int | None:
    """A numeric or named port of ``container``, as a number (None: it has no such port)."""
    ports = container_ports(container)
    if isinstance(port, int):
        return port if port in ports else None
    return next((number for number, name in ports.items() if name == port), None)


def http_paths(deployment: Doc) -> list[tuple[str, str]]:
    """(what, path) for every HTTP probe and the scrape path of a Deployment's pods."""
    used = [
        (kind, probe["httpGet"]["path"])
        for container in pod_spec(deployment)["containers"]
        for kind, probe in probes(container)
        if "httpGet" in probe
    ]
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    if "prometheus.io/path" in annotations:
        used.append(("prometheus.io/path", annotations["prometheus.io/path"]))
    return used


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether a label selector's matchLabels select ``labels``."""
    return all(labels.get(key) == value for key, value in selector.items())


# -- what the code defines -----------------------------------------------------------------


@pytest.fixture(scope="module")
def serving_config(docs: list[Doc], tmp_path_factory: pytest.TempPathFactory) -> ServerConfig:
    """The serving TOML of the ConfigMap, read by modelreg's own config parser."""
    path = tmp_path_factory.mktemp("serving") / "serving.toml"
    path.write_text(of_kind(docs, "ConfigMap")["modelreg-serving"]["data"]["serving.toml"])
    return load_config(path)


@pytest.fixture(scope="module")
def serving_paths(
    serving_config: ServerConfig, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, set[str]]:
    """Routes of the model server `modelreg serve` runs (built, never started)."""
    return serving_routes(serving_config, tmp_path_factory.mktemp("serving-home"))


@pytest.fixture(scope="module")
def api_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Routes of the API service and its dashboard (built, never started)."""
    return api_routes(tmp_path_factory.mktemp("api-home"))


@pytest.fixture(scope="module")
def worker_paths(docs: list[Doc], tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The worker's paths in the manifests that its metrics server answers 200 on."""
    asked = {path for _kind, path in http_paths(of_kind(docs, "Deployment")["modelreg-worker"])}
    answers = worker_answers(asked, tmp_path_factory.mktemp("worker-home"))
    return {path for path, status in answers.items() if status == 200}


def routes_by_component(
    serving_paths: dict[str, set[str]],
    api_paths: dict[str, set[str]],
    worker_paths: set[str],
) -> dict[str, set[str]]:
    """GET paths each component's container answers."""
    return {
        "serving": {p for p, methods in serving_paths.items() if "GET" in methods},
        "api": {p for p, methods in api_paths.items() if "GET" in methods},
        "worker": worker_paths,
    }


# -- checks: each returns its problems, so negative tests can feed them broken copies --------


def schema_problems(doc: Doc, version: str) -> list[str]:
    """Why ``doc`` is not a valid resource of Kubernetes ``version`` (strict)."""
    name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(part) for part in exc.path)
        return [f"{name} @ {where}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"{name}: {exc.message}"]
    return []


def env_problems(docs: list[Doc], secret: Doc, known: set[str]) -> list[str]:
    """MODELREG_* variables no settings field reads, and references to missing keys or maps."""
    problems: list[str] = []
    maps = of_kind(docs, "ConfigMap")
    names: list[tuple[str, str]] = []
    for deployment, container in containers(docs):
        where = f"{deployment['metadata']['name']}/{container['name']}"
        for source in container.get("envFrom", []):
            ref = source["configMapRef"]["name"]
            if ref not in maps:
                problems.append(f"{where}: envFrom names no ConfigMap {ref!r}")
            names += [(where, key) for key in maps.get(ref, {}).get("data", {})]
        for var in container.get("env", []):
            names.append((where, var["name"]))
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None and (
                ref["name"] != secret["metadata"]["name"] or ref["key"] not in secret["stringData"]
            ):
                problems.append(f"{where}: {var['name']} reads a key the example Secret lacks")
    names += [("secret.example.yaml", key) for key in secret["stringData"]]
    problems += [
        f"{where}: {name} is no settings field's variable"
        for where, name in names
        if name.startswith("MODELREG_") and name not in known
    ]
    return problems


def port_problems(docs: list[Doc]) -> list[str]:
    """Probe, scrape and Service ports that are no port of the container they point at."""
    problems: list[str] = []
    for deployment, container in containers(docs):
        where = f"{deployment['metadata']['name']}/{container['name']}"
        for kind, probe in probes(container):
            if resolve_port(container, probe_port(probe)) is None:
                problems.append(f"{where}: {kind} port is not a container port")
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        scraped = annotations.get("prometheus.io/scrape") == "true"
        if scraped and resolve_port(container, int(annotations["prometheus.io/port"])) is None:
            problems.append(f"{where}: prometheus.io/port is not a container port")
    deployments = of_kind(docs, "Deployment")
    for name, service in of_kind(docs, "Service").items():
        if service["spec"].get("type") == "ExternalName":
            continue
        selected = [
            d
            for d in deployments.values()
            if matches(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
        ]
        if len(selected) != 1:
            problems.append(f"Service {name} selects {len(selected)} Deployments, not 1")
            continue
        (container,) = pod_spec(selected[0])["containers"]
        for port in service["spec"]["ports"]:
            if resolve_port(container, port["targetPort"]) is None:
                problems.append(f"Service {name}: targetPort {port['targetPort']} is no port")
    return problems


def path_problems(docs: list[Doc], paths: dict[str, set[str]]) -> list[str]:
    """Probe and scrape paths that are no GET route of the app the container runs."""
    problems: list[str] = []
    for name, deployment in of_kind(docs, "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        component = labels["app.kubernetes.io/component"]
        problems += [
            f"{name}: {kind} {path} is no GET route of the {component}"
            for kind, path in http_paths(deployment)
            if path not in paths[component]
        ]
    return problems


# -- tests -------------------------------------------------------------------------------


def test_kustomization_applies_every_manifest_but_the_example_secret() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    assert sorted(listed) == sorted(p.name for p in manifest_files() if p.name != EXAMPLE_SECRET), (
        "every manifest is applied by `kubectl apply -k`, except the example Secret"
    )
    assert kustomization["images"] == [{"name": "modelreg", "newTag": VERSION}]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_a_valid_kubernetes_resource(version: str) -> None:
    problems = [
        problem
        for path in manifest_files()
        for doc in _load(path)
        for problem in schema_problems(doc, version)
    ]
    assert problems == []


def test_unknown_fields_and_wrong_types_are_rejected(docs: list[Doc]) -> None:
    serving = copy.deepcopy(of_kind(docs, "Deployment")["modelreg-serving"])
    pod_spec(serving)["containers"][0]["readinessProbes"] = {}  # misspelt
    assert schema_problems(serving, KUBERNETES_VERSIONS[-1])
    hpa = copy.deepcopy(of_kind(docs, "HorizontalPodAutoscaler")["modelreg-serving"])
    hpa["spec"]["minReplicas"] = "three"
    assert schema_problems(hpa, KUBERNETES_VERSIONS[-1])


def test_every_modelreg_variable_is_a_settings_field(docs: list[Doc], secret: Doc) -> None:
    known = settings_env_names()
    assert {"MODELREG_LEDGER_URI", "MODELREG_RELOAD_TOKEN"} <= known  # the derivation works
    assert env_problems(docs, secret, known) == []


def test_a_bogus_variable_or_missing_secret_key_is_reported(docs: list[Doc], secret: Doc) -> None:
    broken = copy.deepcopy(docs)
    container = pod_spec(of_kind(broken, "Deployment")["modelreg-api"])["containers"][0]
    container["env"].append({"name": "MODELREG_API_RUN_WORKERS", "value": "false"})  # typo
    container["env"].append(
        {"name": "X", "valueFrom": {"secretKeyRef": {"name": "modelreg", "key": "NOPE"}}}
    )
    problems = env_problems(broken, secret, settings_env_names())
    assert len(problems) == 2, problems


def test_the_settings_the_pods_get_are_valid(
    docs: list[Doc], secret: Doc, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ConfigMap's values and each container's literal values parse as Settings."""
    shared = of_kind(docs, "ConfigMap")["modelreg-settings"]["data"]
    for _deployment, container in containers(docs):
        literal = {v["name"]: v["value"] for v in container.get("env", []) if "value" in v}
        with monkeypatch.context() as env:
            for name, value in {**shared, **literal}.items():
                env.setenv(name, value)
            settings = Settings()
        assert str(settings.home) == shared["MODELREG_HOME"]
    # Only the API turns its in-process workers off; the worker Deployment runs them.
    api = pod_spec(of_kind(docs, "Deployment")["modelreg-api"])["containers"][0]
    assert {"name": "MODELREG_API_RUNS_WORKERS", "value": "false"} in api["env"]
    # The example carries no usable secret: every value is empty.
    assert set(secret["stringData"].values()) == {""}


def test_ports_agree(docs: list[Doc]) -> None:
    assert port_problems(docs) == []
    broken = copy.deepcopy(docs)
    of_kind(broken, "Service")["modelreg-serving"]["spec"]["ports"][0]["targetPort"] = 8081
    assert port_problems(broken) == ["Service modelreg-serving: targetPort 8081 is no port"]


def test_probe_and_scrape_paths_are_real_routes(
    docs: list[Doc],
    serving_paths: dict[str, set[str]],
    api_paths: dict[str, set[str]],
    worker_paths: set[str],
) -> None:
    paths = routes_by_component(serving_paths, api_paths, worker_paths)
    assert path_problems(docs, paths) == []
    serving = pod_spec(of_kind(docs, "Deployment")["modelreg-serving"])["containers"][0]
    assert serving["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert serving["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    broken = copy.deepcopy(docs)
    probe = pod_spec(of_kind(broken, "Deployment")["modelreg-serving"])["containers"][0]
    probe["readinessProbe"]["httpGet"]["path"] = "/v2/ready"
    assert len(path_problems(broken, paths)) == 1


def test_commands_are_what_the_cli_and_the_stack_run(docs: list[Doc]) -> None:
    commands = {d["metadata"]["name"]: c["command"] for d, c in containers(docs)}
    assert [p for argv in commands.values() for p in command_problems(argv)] == []
    assert command_problems(["modelreg", "serve", "--config", "x", "--metrics-port", "1"])
    assert command_problems(["modelreg", "serve", "--port", "0"])  # outside 1-65535
    # The API runs exactly what `modelreg up` runs, with the port its container exposes.
    api = commands["modelreg-api"]
    port = int(api[api.index("--port") + 1])
    assert api[1:] == api_server_argv(host="0.0.0.0", port=port)[1:]  # noqa: S104
    assert commands["modelreg-worker"][:2] == ["modelreg", "worker"]


def test_serving_config_is_mounted_where_serve_reads_it(
    docs: list[Doc], serving_config: ServerConfig
) -> None:
    deployment = of_kind(docs, "Deployment")["modelreg-serving"]
    (container,) = pod_spec(deployment)["containers"]
    config = PurePosixPath(container["command"][container["command"].index("--config") + 1])
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    assert mounts[str(config.parent)]["configMap"]["name"] == "modelreg-serving"
    assert config.name in of_kind(docs, "ConfigMap")["modelreg-serving"]["data"]
    # The model cache is a writable emptyDir under the read-only root filesystem.
    assert "emptyDir" in mounts[str(serving_config.cache_dir)]
    assert serving_config.reload_token is None, "the reload token comes from the Secret"


def test_pods_are_locked_down_and_write_only_to_empty_dirs(docs: list[Doc]) -> None:
    home = of_kind(docs, "ConfigMap")["modelreg-settings"]["data"]["MODELREG_HOME"]
    policy = of_kind(docs, "ConfigMap")["modelreg-settings"]["data"]["MODELREG_POLICY_FILE"]
    for deployment, container in containers(docs):
        name = deployment["metadata"]["name"]
        assert pod_spec(deployment)["securityContext"]["runAsNonRoot"] is True, name
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }, name
        assert container["image"] == f"modelreg:{VERSION}", name
        assert {"requests", "limits"} <= set(container["resources"]), name
        volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        for path, mount in mounts.items():
            assert mount.get("readOnly") or "emptyDir" in volumes[mount["name"]], (name, path)
        assert {"/tmp", home} <= set(mounts), name
        assert str(PurePosixPath(policy).parent) in mounts, name


def test_rolling_updates_drop_no_requests(docs: list[Doc]) -> None:
    """Deployments behind a Service: surge first, readiness gates traffic, preStop outlasts it."""
    for name, deployment in of_kind(docs, "Deployment").items():
        update = deployment["spec"]["strategy"]["rollingUpdate"]
        assert update["maxUnavailable"] == 0, name
        spec = pod_spec(deployment)
        (container,) = spec["containers"]
        if name == "modelreg-worker":
            continue  # no Service sends it requests
        assert "readinessProbe" in container, name
        sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert spec["terminationGracePeriodSeconds"] >= sleep + 20, name


def test_autoscaler_and_disruption_budget_target_the_serving_replicas(docs: list[Doc]) -> None:
    deployments = of_kind(docs, "Deployment")
    serving = deployments["modelreg-serving"]
    assert "replicas" not in serving["spec"], "the HPA owns the replica count"
    assert matches(
        serving["spec"]["selector"]["matchLabels"],
        serving["spec"]["template"]["metadata"]["labels"],
    )
    hpa = of_kind(docs, "HorizontalPodAutoscaler")["modelreg-serving"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "modelreg-serving",
    }
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    pdb = of_kind(docs, "PodDisruptionBudget")["modelreg-serving"]
    selected = [
        name
        for name, d in deployments.items()
        if matches(
            pdb["spec"]["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"]
        )
    ]
    assert selected == ["modelreg-serving"]
    assert hpa["spec"]["minReplicas"] > pdb["spec"]["maxUnavailable"]
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert matches(deployment["spec"]["selector"]["matchLabels"], labels), name
