"""The deployment files agree with the code: metrics, settings, probes.

Reads the files as they are in the tree (no kustomize, no Docker): the
rendered manifests are checked by .ci/check-deploy.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from worker import metrics
from worker.errors import ConfigurationError, InsiError
from worker.insi.model import CodeCR
from worker.metrics import BREAKER_STATES, REGISTRY
from worker.settings import PREFIX, Settings, describe

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "k8s"
BASE = K8S / "base"
OVERLAYS = sorted(
    p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml")
)
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "ins-worker.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

#: series Prometheus makes itself for every target
SCRAPE_METRICS = {"up"}
#: labels a series gets from its target, not from the worker
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service"}
PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring",
    "group_left", "group_right", "bool", "offset",
}  # fmt: skip
#: placeholders for the values Secrets provide in Kubernetes
SECRET_ENV = {
    f"{PREFIX}AMQP_URL": "amqp://user:secret@rabbitmq:5672/",
    f"{PREFIX}DATABASE_URL": "postgresql://app:secret@postgres/ins_worker",
}


# ---- reading the files ---------------------------------------------------


def _yaml_documents(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def _kustomization(directory: Path) -> dict[str, Any]:
    doc = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def _base_objects() -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for resource in _kustomization(BASE)["resources"]:
        objects.extend(_yaml_documents(BASE / resource))
    return objects


def _one(kind: str, name: str) -> dict[str, Any]:
    found = [
        o
        for o in _base_objects()
        if o["kind"] == kind and o["metadata"]["name"] == name
    ]
    assert len(found) == 1, f"{kind}/{name} in k8s/base"
    return found[0]


def _env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def _config(overlay: Path | None) -> dict[str, str]:
    """The ConfigMap's data as kustomize merges it for one overlay."""
    generator = _kustomization(BASE)["configMapGenerator"][0]
    data: dict[str, str] = {}
    for env_file in generator.get("envs", []):
        data.update(_env_file(BASE / env_file))
    if overlay is not None:
        for generator in _kustomization(overlay).get("configMapGenerator", []):
            if generator["name"] == "ins-worker-config":
                for literal in generator.get("literals", []):
                    key, _, value = literal.partition("=")
                    data[key] = value
    return data


def _json_patches(overlay: Path, kind: str) -> list[dict[str, Any]]:
    operations: list[dict[str, Any]] = []
    for patch in _kustomization(overlay).get("patches", []):
        if patch.get("target", {}).get("kind") == kind:
            operations.extend(yaml.safe_load(patch["patch"]))
    return operations


def _patched_scaledobject(overlay: Path) -> dict[str, Any]:
    spec = dict(_one("ScaledObject", "ins-worker")["spec"])
    for operation in _json_patches(overlay, "ScaledObject"):
        assert operation["op"] == "replace"
        field = operation["path"].removeprefix("/spec/")
        assert "/" not in field, operation["path"]
        spec[field] = operation["value"]
    return spec


def _pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in _base_objects():
        if obj["kind"] in ("Deployment", "Job"):
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]


def _compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def _image_services() -> dict[str, dict[str, Any]]:
    services = _compose()["services"]
    return {
        name: service
        for name, service in services.items()
        if service.get("image") == "ins-worker:dev"
    }


def _dashboard() -> dict[str, Any]:
    doc = json.loads(DASHBOARD.read_text())
    assert isinstance(doc, dict)
    return doc


def _panels() -> list[dict[str, Any]]:
    panels = []
    for panel in _dashboard()["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def _dashboard_expressions() -> list[str]:
    return [t["expr"] for p in _panels() for t in p.get("targets", [])]


def _alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _alert_expressions() -> list[str]:
    return [str(rule["expr"]) for rule in _alert_rules()]


def _default(setting: str) -> str:
    return {row[0]: row[2] for row in describe()}[PREFIX + setting]


# ---- PromQL --------------------------------------------------------------

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
)
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-z]+")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_GRAFANA_VARIABLE = re.compile(r"\$\{?\w+\}?")
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:\\.|[^"\\])*)"')


def metric_names(expr: str) -> set[str]:
    """Series names an expression selects, functions and keywords aside."""
    text = _GRAFANA_VARIABLE.sub("", _STRING.sub('""', expr))
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _OFFSET.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        follows = text[match.end() :].lstrip()
        if follows.startswith("(") or match.group() in PROMQL_KEYWORDS:
            continue
        names.add(match.group())
    return names


def matchers(expr: str) -> Iterator[tuple[str, str, str, str]]:
    """(metric, label, operator, value) for every label matcher."""
    for selector in _SELECTOR.finditer(_GRAFANA_VARIABLE.sub("x", expr)):
        for label, operator, value in _MATCHER.findall(selector.group(2)):
            yield selector.group(1), label, operator, value


def grouping_labels(expr: str) -> set[str]:
    """Labels named in by, without, on and ignoring clauses."""
    labels = set()
    for clause in _GROUPING.finditer(expr):
        inside = clause.group().split("(", 1)[1].rstrip(")")
        labels |= {part.strip() for part in inside.split(",") if part.strip()}
    return labels


def _exposed() -> dict[str, MetricWrapperBase]:
    """Every series name the registry exposes -> the metric behind it."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    wrappers = {
        family.name: wrapper
        for wrapper in vars(metrics).values()
        if isinstance(wrapper, MetricWrapperBase)
        for family in wrapper.describe()
    }
    exposed = {}
    for family in REGISTRY.collect():
        for suffix in suffixes.get(family.type, ("",)):
            exposed[family.name + suffix] = wrappers[family.name]
    return exposed


def _labels_of(name: str) -> set[str]:
    # NOTE: prometheus_client has no public accessor for a metric's label
    # names; _labelnames has been stable since its first releases.
    wrapper = _exposed()[name]
    labels = set(wrapper._labelnames)
    if name.endswith("_bucket"):
        labels.add("le")
    return labels


def _insi_results() -> set[str]:
    kinds = set()
    pending: list[type[InsiError]] = [InsiError]
    while pending:
        cls = pending.pop()
        kinds.add(cls.kind)
        pending.extend(cls.__subclasses__())
    return kinds | {code.value for code in CodeCR}


EXPRESSIONS = [
    pytest.param(e, id=f"dashboard-{i}")
    for i, e in enumerate(_dashboard_expressions())
] + [
    pytest.param(str(r["expr"]), id=f"alert-{r['alert']}")
    for r in _alert_rules()
]


def test_metric_name_extraction_sees_only_series() -> None:
    """Functions, keywords, labels, ranges and offsets are not metrics."""
    expr = (
        'sum by (le, instance) (rate(a_bucket{result!~"[0-9]+", x="y"}'
        "[$__rate_interval])) / ignoring (state) b_total offset 5m"
        ' or vector(0) and on (job) max_over_time(c{s="d e"}[5m:1m])'
        " > bool 30 * 86400"
    )

    assert metric_names(expr) == {"a_bucket", "b_total", "c"}
    assert grouping_labels(expr) == {"le", "instance", "state", "job"}


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_every_queried_metric_exists_in_the_registry(expr: str) -> None:
    """Dashboard and alerts query only series the worker exposes."""
    selected = metric_names(expr)
    names = selected - SCRAPE_METRICS

    assert selected, "an expression that selects no series"
    assert names <= set(_exposed()), sorted(names - set(_exposed()))


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_every_label_queried_belongs_to_its_metric(expr: str) -> None:
    """Label matchers and groupings name labels the metrics carry."""
    names = metric_names(expr) - SCRAPE_METRICS
    known = set(TARGET_LABELS)
    for name in names:
        known |= _labels_of(name)

    for metric, label, _, _ in matchers(expr):
        if metric in SCRAPE_METRICS:
            continue
        assert label in _labels_of(metric) | TARGET_LABELS, (metric, label)
    assert grouping_labels(expr) <= known


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_label_values_queried_are_values_the_worker_sets(expr: str) -> None:
    """INSi results and breaker states are matched by their real values."""
    for _, label, operator, value in matchers(expr):
        if operator not in ("=", "!="):
            continue
        if label == "result":
            assert value in _insi_results(), value
        if label == "state":
            assert value in BREAKER_STATES, value


def test_alert_rules_page_with_severity_and_explanation() -> None:
    """Every alert has a severity, a summary and a runbook description."""
    rules = _alert_rules()

    assert len({r["alert"] for r in rules}) == len(rules)
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["annotations"]["summary"].strip()
        assert len(rule["annotations"]["description"].split()) >= 20


def test_alerts_cover_the_states_that_need_a_human() -> None:
    """The alert set names each metric an on-call person must act on."""
    queried = set().union(*(metric_names(e) for e in _alert_expressions()))

    for needed in (
        "up",
        "ins_worker_breaker_state",
        "ins_worker_consumer_attached",
        "ins_worker_outbox_oldest_age_seconds",
        "ins_worker_dead_letters_total",
        "ins_worker_client_certificate_expiry_seconds",
        "ins_worker_insi_calls_total",
        "ins_worker_event_loop_lag_seconds",
    ):
        assert needed in queried


def test_alerts_and_scrape_configs_agree_on_the_job() -> None:
    """`job` in the alerts is the compose job and the k8s Service name."""
    jobs = {
        value
        for expr in _alert_expressions()
        for _, label, _, value in matchers(expr)
        if label == "job"
    }
    scrape = yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]

    assert jobs == {"ins-worker"}
    assert [c["job_name"] for c in scrape] == ["ins-worker"]
    assert _one("Service", "ins-worker")["metadata"]["name"] in jobs
    assert "jobLabel" not in _one("ServiceMonitor", "ins-worker")["spec"]


def test_dashboard_picks_its_prometheus_from_a_variable() -> None:
    """Every panel and query uses the ${datasource} variable."""
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}

    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in _panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"


def test_dashboard_panels_fit_the_grid_without_overlapping() -> None:
    """Panel ids are unique and panels tile the 24-column grid."""
    panels = _panels()
    cells: set[tuple[int, int]] = set()

    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, panel["title"]
                cells.add((x, y))


def test_dashboard_shows_what_on_call_looks_at_first() -> None:
    """Throughput, outcomes, INSi, breaker, outbox, dead letters, TLS..."""
    queried = set().union(*(metric_names(e) for e in _dashboard_expressions()))

    for needed in (
        "ins_worker_messages_consumed_total",
        "ins_worker_outcomes_total",
        "ins_worker_insi_call_duration_seconds_bucket",
        "ins_worker_insi_calls_total",
        "ins_worker_breaker_state",
        "ins_worker_outbox_backlog",
        "ins_worker_outbox_oldest_age_seconds",
        "ins_worker_dead_letters_total",
        "ins_worker_messages_in_flight",
        "ins_worker_event_loop_lag_seconds",
        "ins_worker_client_certificate_expiry_seconds",
        "ins_worker_consumer_attached",
        "ins_worker_delayed_retries_total",
    ):
        assert needed in queried


# ---- settings ------------------------------------------------------------

_VARIABLE = re.compile(PREFIX + r"[A-Z0-9]+(?:_[A-Z0-9]+)*")


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, str):
        yield node


def _variables_used() -> Iterator[tuple[str, str]]:
    """(file, variable) for every INS_WORKER_* name outside comments."""
    for path in [*sorted(ROOT.glob("k8s/**/*.yaml")), COMPOSE, ALERTS]:
        for doc in _yaml_documents(path):
            for text in _strings(doc):
                for name in _VARIABLE.findall(text):
                    yield path.relative_to(ROOT).as_posix(), name
    for path in sorted(ROOT.glob("k8s/**/*.env")):
        for name in _env_file(path):
            yield path.relative_to(ROOT).as_posix(), name
    for text in _strings(_dashboard()):
        for name in _VARIABLE.findall(text):
            yield DASHBOARD.name, name
    for line in DOCKERFILE.read_text().splitlines():
        if not line.lstrip().startswith("#"):
            for name in _VARIABLE.findall(line):
                yield DOCKERFILE.name, name


def test_every_ins_worker_variable_is_a_known_setting() -> None:
    """No file sets or names an INS_WORKER_* variable the worker lacks."""
    known = {row[0] for row in describe()}
    used = list(_variables_used())

    assert len({name for _, name in used}) > 10
    unknown = sorted({(f, n) for f, n in used if n not in known})
    assert not unknown


@pytest.mark.parametrize(
    "overlay", [None, *OVERLAYS], ids=lambda o: o.name if o else "base"
)
def test_kubernetes_configuration_is_accepted_by_the_worker(
    overlay: Path | None,
) -> None:
    """Each environment's ConfigMap, with its Secrets, parses and checks."""
    settings = Settings.from_env({**_config(overlay), **SECRET_ENV})

    assert settings.health_host == "0.0.0.0"
    if overlay is not None:
        assert settings.environment == overlay.name
        assert settings.event_source.endswith(overlay.name)
        assert settings.insi_url.startswith("https://")
        assert settings.tls_cert_file is not None


def test_overlays_point_at_the_cnam_endpoints() -> None:
    """Qualification and production call their own INSi."""
    by_name = {o.name: _config(o) for o in OVERLAYS}

    assert by_name["qualification"][PREFIX + "INSI_URL"] == (
        "https://qualiflps-services-ps-tlsm.ameli.fr:443/lps"
    )
    assert by_name["production"][PREFIX + "INSI_URL"] == (
        "https://services-ps-tlsm.ameli.fr/lps"
    )


@pytest.mark.parametrize("service", sorted(_image_services()))
def test_compose_configuration_is_accepted_by_the_worker(service: str) -> None:
    """Each compose service of the image starts with valid settings."""
    environment = _image_services()[service].get("environment", {})

    Settings.from_env({k: str(v) for k, v in environment.items()})


def test_compose_worker_calls_the_simulator_and_is_scraped() -> None:
    """The worker's INSi URL is the simulator; Prometheus scrapes it."""
    services = _compose()["services"]
    worker = Settings.from_env(
        {k: str(v) for k, v in services["worker"]["environment"].items()}
    )
    scrape = yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"][0]

    assert worker.insi_url.startswith("http://simulator:8089/")
    assert services["simulator"]["command"][0] == "simulator"
    assert "0.0.0.0" in services["simulator"]["command"]
    target = scrape["static_configs"][0]["targets"][0]
    assert target == f"worker:{worker.health_port}"
    assert services["migrate"]["command"] == ["migrate"]
    migrate_env = services["migrate"]["environment"]
    assert PREFIX + "MIGRATE_DATABASE_URL" in migrate_env
    depends = services["worker"]["depends_on"]
    assert depends["migrate"]["condition"] == (
        "service_completed_successfully"
    )


# ---- the pod -------------------------------------------------------------


def _duration_s(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"([0-9.]+)(ms|s|m|h)", text):
        total += float(number) * units[unit]
    return total


def test_grace_period_outlasts_the_drain_budget() -> None:
    """SIGKILL comes well after the drain budget, in k8s and compose."""
    pod = _one("Deployment", "ins-worker")["spec"]["template"]["spec"]
    grace = pod["terminationGracePeriodSeconds"]
    budgets = [float(_default("SHUTDOWN_BUDGET_S"))] + [
        float(_config(o).get(PREFIX + "SHUTDOWN_BUDGET_S", "0"))
        for o in [None, *OVERLAYS]
    ]
    compose_grace = _duration_s(
        _compose()["services"]["worker"]["stop_grace_period"]
    )

    # the outbox flush and the closes come after the budget
    assert grace >= max(budgets) + 10
    assert compose_grace >= max(budgets) + 10


def test_probes_ask_the_health_endpoints_on_the_health_port() -> None:
    """Startup and liveness ask /livez, readiness /readyz, on port 8000."""
    container = _one("Deployment", "ins-worker")["spec"]["template"]["spec"][
        "containers"
    ][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    health_port = int(_config(None)[PREFIX + "HEALTH_PORT"])
    probes = {
        kind: container[kind]["httpGet"]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }

    assert health_port == int(_default("HEALTH_PORT"))
    assert probes["startupProbe"]["path"] == "/livez"
    assert probes["livenessProbe"]["path"] == "/livez"
    assert probes["readinessProbe"]["path"] == "/readyz"
    for probe in probes.values():
        port = probe["port"]
        assert ports.get(port, port) == health_port


def test_metrics_service_and_monitor_reach_the_health_port() -> None:
    """Service and ServiceMonitor select the worker pods' metrics port."""
    deployment = _one("Deployment", "ins-worker")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = _one("Service", "ins-worker")
    monitor = _one("ServiceMonitor", "ins-worker")

    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items() | {
        ("app.kubernetes.io/name", "ins-worker")
    }
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


@pytest.mark.parametrize("name", [n for n, _ in _pod_specs()])
def test_pods_meet_the_restricted_pod_security_standard(name: str) -> None:
    """Non-root, read-only root, no capabilities, RuntimeDefault seccomp."""
    pod = dict(_pod_specs())[name]
    security = pod["securityContext"]

    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == int(_dockerfile_arg("APP_UID"))
    assert security["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]


@pytest.mark.parametrize("name", [n for n, _ in _pod_specs()])
def test_pods_get_no_service_link_variables(name: str) -> None:
    """Service links would add INS_WORKER_* names the worker refuses."""
    pod = dict(_pod_specs())[name]

    assert pod["enableServiceLinks"] is False
    with pytest.raises(ConfigurationError, match="unknown setting"):
        Settings.from_env({PREFIX + "SERVICE_HOST": "10.0.0.1"})


def test_tls_files_are_mounted_read_only_where_the_settings_say() -> None:
    """Every TLS path in the ConfigMap is a file of the read-only mount."""
    pod = _one("Deployment", "ins-worker")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    mount = next(
        m for m in container["volumeMounts"] if m["name"] == "insi-tls"
    )
    volume = next(v for v in pod["volumes"] if v["name"] == "insi-tls")
    files = {
        f"{mount['mountPath']}/{item['path']}"
        for source in volume["projected"]["sources"]
        for ref in source.values()
        for item in ref["items"]
    }
    paths = {
        value
        for key, value in _config(None).items()
        if key.startswith(PREFIX + "TLS_") and key.endswith("_FILE")
    }

    assert mount["readOnly"] is True
    assert mount["mountPath"] == "/etc/ins-worker/tls"
    assert paths and paths <= files
    assert not any("secret" in str(v).lower() for v in _config(None).values())


def test_secrets_are_referenced_not_defined() -> None:
    """No Secret object and no credentials in the manifests."""
    for overlay in [BASE, *OVERLAYS]:
        for path in overlay.glob("*.yaml"):
            for doc in _yaml_documents(path):
                assert doc.get("kind") != "Secret", path
    container = _one("Deployment", "ins-worker")["spec"]["template"]["spec"][
        "containers"
    ][0]
    from_secrets = {
        e["name"] for e in container["env"] if "secretKeyRef" in e["valueFrom"]
    }

    assert from_secrets == {PREFIX + "AMQP_URL", PREFIX + "DATABASE_URL"}
    job = _one("Job", "ins-worker-migrate")["spec"]["template"]["spec"]
    job_env = {e["name"]: e for e in job["containers"][0]["env"]}
    migrate_url = job_env[PREFIX + "MIGRATE_DATABASE_URL"]["valueFrom"]
    assert migrate_url["secretKeyRef"]["name"] == "ins-worker-migrate-database"


# ---- scaling and network -------------------------------------------------


def test_scaledobject_scales_the_worker_on_its_requests_queue() -> None:
    """KEDA watches identity.requests.v1 and scales the Deployment."""
    scaled = _one("ScaledObject", "ins-worker")["spec"]
    trigger = scaled["triggers"][0]

    assert scaled["scaleTargetRef"]["name"] == "ins-worker"
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == _default("REQUESTS_QUEUE")
    assert (
        trigger["metadata"]["queueName"]
        == _config(None)[PREFIX + "REQUESTS_QUEUE"]
    )
    assert "replicas" not in _one("Deployment", "ins-worker")["spec"]


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda o: o.name)
def test_replicas_stay_within_what_the_global_rate_limit_can_use(
    overlay: Path,
) -> None:
    """Past rate x timeout / concurrency, more pods only wait."""
    settings = Settings.from_env({**_config(overlay), **SECRET_ENV})
    spec = _patched_scaledobject(overlay)
    useful = math.ceil(
        settings.rate_limit_per_s
        * settings.insi_timeout_s
        / settings.concurrency
    )

    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert spec["maxReplicaCount"] <= useful


def _egress_ports(rule: dict[str, Any]) -> set[int]:
    return {int(p["port"]) for p in rule.get("ports", [])}


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda o: o.name)
def test_overlays_set_the_insi_address_on_the_443_rule(overlay: Path) -> None:
    """The overlay's cidr replaces the placeholder of the INSi rule."""
    egress = _one("NetworkPolicy", "ins-worker")["spec"]["egress"]
    patches = _json_patches(overlay, "NetworkPolicy")
    cidrs = [p for p in patches if p["path"].endswith("/ipBlock/cidr")]

    assert len(cidrs) == 1
    index = int(cidrs[0]["path"].split("/")[3])
    assert _egress_ports(egress[index]) == {443}
    assert cidrs[0]["value"] != egress[index]["to"][0]["ipBlock"]["cidr"]


def test_egress_goes_only_to_dns_broker_database_and_insi() -> None:
    """Four egress rules: DNS, AMQP, PostgreSQL, INSi over 443."""
    egress = _one("NetworkPolicy", "ins-worker")["spec"]["egress"]

    assert [_egress_ports(rule) for rule in egress] == [
        {53},
        {5671, 5672},
        {5432},
        {443},
    ]
    for rule in egress:
        assert rule["to"], "a rule without peers allows everywhere"


# ---- the image -----------------------------------------------------------


def _dockerfile_lines() -> list[str]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _dockerfile_arg(name: str) -> str:
    for line in _dockerfile_lines():
        match = re.fullmatch(rf"ARG {name}=(\S+)", line)
        if match:
            return match.group(1)
    raise AssertionError(f"no ARG {name}")


def _stages() -> list[list[str]]:
    stages: list[list[str]] = []
    for line in _dockerfile_lines():
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerignore_admits_exactly_what_the_build_copies() -> None:
    """The build context is the allow-list, and the build copies it all."""
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied = set()
    for line in _dockerfile_lines():
        if line.startswith("COPY ") and "--from" not in line:
            copied |= {part.rstrip("/") for part in line.split()[1:-1]}

    assert "*" in (ROOT / ".dockerignore").read_text().splitlines()
    assert copied == allowed
    missing = sorted(path for path in copied if not (ROOT / path).exists())
    assert not missing, f"the build copies missing files: {missing}"


def test_runtime_image_runs_the_worker_as_pid_1_unprivileged() -> None:
    """Numeric user, exec-form entrypoint, SIGTERM, health port exposed."""
    runtime = _stages()[-1]
    instructions = {line.split()[0].upper(): line for line in runtime}
    user = instructions["USER"].split()[1].split(":")[0]
    base = _dockerfile_arg("PYTHON_IMAGE")

    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), base
    assert user in ("${APP_UID}", _dockerfile_arg("APP_UID"))
    assert int(_dockerfile_arg("APP_UID")) > 0
    assert json.loads(instructions["ENTRYPOINT"].split(None, 1)[1]) == [
        "ins-worker"
    ]
    assert json.loads(instructions["CMD"].split(None, 1)[1]) == ["run"]
    assert instructions["STOPSIGNAL"].split()[1] == "SIGTERM"
    assert instructions["EXPOSE"].split()[1] == _default("HEALTH_PORT")
    assert "PYTHONDONTWRITEBYTECODE=1" in instructions["ENV"]
    assert not any(line.upper().startswith("COPY ") for line in runtime)
