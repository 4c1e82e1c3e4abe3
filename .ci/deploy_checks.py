"""Offline checks of the deployment files, run by .ci/check-deploy.

Subcommands, each printing one line per thing checked and exiting
non-zero on the first kind of failure it finds:

- ``manifests FILE...``: rendered Kubernetes manifests against the
  API schemas of kubernetes-validate (strict: unknown fields are errors),
  and the KEDA and Prometheus Operator custom resources against schemas
  derived from the cloudcoil model packages, made strict the same way;
- ``compose SCHEMA``: docker-compose.yml against the Compose
  Specification's JSON schema, plus the references inside the file;
- ``dashboard-rules OUT``: the dashboard's PromQL written as recording
  rules, for ``promtool check rules`` to parse;
- ``same-objects A B``: whether two renderings hold the same objects;
- ``strip-annotations IN OUT``: alert rules without their annotations,
  for ``promtool test rules``, which compares annotations verbatim.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[1]

#: Kubernetes versions the manifests must be valid for: the oldest the
#: project supports (PodDisruptionBudget's unhealthyPodEvictionPolicy is
#: GA there) and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.31.0", "1.37.0")

#: custom resources: (apiVersion, kind) -> (module, class) of a model
CUSTOM_RESOURCES = {
    ("keda.sh/v1alpha1", "ScaledObject"): (
        "cloudcoil.models.keda.v1alpha1",
        "ScaledObject",
    ),
    ("keda.sh/v1alpha1", "TriggerAuthentication"): (
        "cloudcoil.models.keda.v1alpha1",
        "TriggerAuthentication",
    ),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): (
        "cloudcoil.models.prometheus_operator.v1",
        "ServiceMonitor",
    ),
}

CUSTOM_KINDS = {kind for _, kind in CUSTOM_RESOURCES}

#: Grafana's own variables, replaced by something PromQL can parse
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
}


def _documents(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as stream:
        for doc in yaml.safe_load_all(stream):
            if doc:
                yield doc


def _strict(schema: Any) -> Any:
    """Refuse properties a schema does not declare, at every level.

    Kubernetes prunes unknown fields of custom resources silently, so a
    misspelt field would be dropped, not refused: the check has to be
    stricter than the cluster.
    """
    if isinstance(schema, dict):
        out = {key: _strict(value) for key, value in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


def _custom_validator(module: str, name: str) -> jsonschema.Validator:
    model = getattr(importlib.import_module(module), name)
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return jsonschema.Draft202012Validator(_strict(schema))


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "(root)"


def _object_errors(
    doc: dict[str, Any],
    validators: dict[tuple[str, str], jsonschema.Validator],
) -> list[str]:
    """What is wrong with one object, as short sentences."""
    import kubernetes_validate  # type: ignore[import-untyped]

    key = (doc.get("apiVersion", ""), doc.get("kind", ""))
    if key in CUSTOM_RESOURCES:
        if key not in validators:
            validators[key] = _custom_validator(*CUSTOM_RESOURCES[key])
        return [
            f"{_where(error)}: {error.message}"
            for error in validators[key].iter_errors(doc)
        ]

    errors = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"({version}) {_where(exc)}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(exc.message)
    return errors


def check_manifests(paths: list[Path]) -> int:
    """Validate every object of every rendered file."""
    failures = 0
    validators: dict[tuple[str, str], jsonschema.Validator] = {}
    for path in paths:
        where = f"rendered {path.stem}"
        try:
            docs = list(_documents(path))
        except yaml.YAMLError as exc:
            print(f"FAIL  {where}: not YAML: {exc}")
            failures += 1
            continue

        found = 0
        for doc in docs:
            name = doc.get("metadata", {}).get("name")
            for error in _object_errors(doc, validators):
                print(f"FAIL  {where}: {doc.get('kind')}/{name}: {error}")
                found += 1
        failures += found

        if not found:
            custom = sum(1 for d in docs if d.get("kind") in CUSTOM_KINDS)
            print(
                f"ok    {where}: {len(docs)} objects valid against "
                f"Kubernetes {' and '.join(KUBERNETES_VERSIONS)} (strict), "
                f"{custom} custom resources against the KEDA and "
                "Prometheus Operator models"
            )
    return 1 if failures else 0


def check_compose(schema_path: Path) -> int:
    """docker-compose.yml against the Compose Specification."""
    compose_file = ROOT / "docker-compose.yml"
    doc = yaml.safe_load(compose_file.read_text(encoding="utf-8"))
    schema = json.loads(schema_path.read_text(encoding="utf-8"))

    # The published schema snapshot predates the top-level `name` (the
    # project name), which Compose v2 reads.
    schema["properties"].setdefault("name", {"type": "string"})
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(doc))
    for error in errors:
        print(f"FAIL  docker-compose.yml: {_where(error)}: {error.message}")

    services = doc["services"]
    for name, service in services.items():
        depends = service.get("depends_on", {})
        for other in depends:
            if other not in services:
                print(f"FAIL  docker-compose.yml: {name} needs {other}")
                errors.append(other)
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith(".") and not (ROOT / source).exists():
                print(f"FAIL  docker-compose.yml: {name}: no {source}")
                errors.append(source)
    if errors:
        return 1
    print(
        f"ok    docker-compose.yml: {len(services)} services, valid "
        "against the Compose Specification, references resolve"
    )
    return 0


def same_objects(first: Path, second: Path) -> int:
    """Whether two renderings hold the same objects, in any order."""

    def objects(path: Path) -> list[str]:
        docs = _documents(path)
        return sorted(json.dumps(doc, sort_keys=True) for doc in docs)

    if objects(first) == objects(second):
        return 0
    print(f"FAIL  {first.name} and {second.name} differ")
    return 1


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_rules(out: Path) -> int:
    """Write each dashboard expression as a recording rule."""
    path = ROOT / "deploy" / "grafana" / "dashboards" / "ins-worker.json"
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    rules = []
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            # dashboard variables are regexes in label matchers
            expr = re.sub(r"\$\{?\w+\}?", ".*", expr)
            record = f"dashboard:panel_{panel['id']}_{target['refId']}"
            rules.append({"record": record, "expr": expr})
    groups = {"groups": [{"name": "dashboard", "rules": rules}]}
    out.write_text(yaml.safe_dump(groups), encoding="utf-8")
    panels = sum(1 for _ in _panels(dashboard))
    print(
        f"ok    {path.name}: valid JSON, {panels} panels, "
        f"{len(rules)} expressions to parse"
    )
    return 0


def strip_annotations(source: Path, out: Path) -> int:
    """Copy alert rules without their annotations."""
    rules = yaml.safe_load(source.read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    out.write_text(yaml.safe_dump(rules), encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    manifests = commands.add_parser("manifests")
    manifests.add_argument("files", nargs="+", type=Path)
    compose = commands.add_parser("compose")
    compose.add_argument("schema", type=Path)
    rules = commands.add_parser("dashboard-rules")
    rules.add_argument("out", type=Path)
    same = commands.add_parser("same-objects")
    same.add_argument("first", type=Path)
    same.add_argument("second", type=Path)
    strip = commands.add_parser("strip-annotations")
    strip.add_argument("source", type=Path)
    strip.add_argument("out", type=Path)
    args = parser.parse_args(argv)

    if args.command == "manifests":
        return check_manifests(args.files)
    if args.command == "compose":
        return check_compose(args.schema)
    if args.command == "dashboard-rules":
        return dashboard_rules(args.out)
    if args.command == "same-objects":
        return same_objects(args.first, args.second)
    return strip_annotations(args.source, args.out)


if __name__ == "__main__":
    sys.exit(main())
