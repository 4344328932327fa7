"""deploy/k8s, checked without a cluster: `kustomize build` of the base and the production overlay, every core
resource against the Kubernetes schemas (kubernetes-validate, strict), every custom resource against the CRD
schemas the project vendors (deploy/k8s/crd-schemas), and the wiring between them."""

import copy
import re
import subprocess
from collections import defaultdict
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from platform_schemas.topics import TOPICS, dlq

from .tools import ROOT, tool

pytestmark = pytest.mark.deploy

K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.33"
SERVICES = ["contracts", "escrow", "billing", "notifications"]
OVERLAYS = ["base", "overlays/production"]
DATABASES = [*SERVICES, "gateway"]
# Secrets referenced but not part of the build: Strimzi's (one per KafkaUser, the cluster CA), the database
# roles' (deploy/k8s/database-secrets.sh makes them once; CloudNativePG sets the roles' passwords from them) and
# the read API's token hashes (made by the operators).
OPERATOR_SECRETS = {*SERVICES, *(f"{d}-db-{role}" for d in DATABASES for role in ("owner", "app")),
                    "escrow-cluster-ca-cert", "read-api-token-hashes"}


@cache
def build(overlay: str) -> tuple[dict, ...]:
    result = subprocess.run([str(tool("kustomize")), "build", str(K8S / overlay)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return tuple(d for d in yaml.safe_load_all(result.stdout) if d)


def of_kind(documents, kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


def strict(schema):
    """Unknown properties are errors where the vendored schema lists an object's properties in full."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [strict(v) for v in schema]
    return schema


@cache
def crd_schemas() -> dict[tuple[str, str], dict]:
    schemas = {}
    for path in (K8S / "crd-schemas").glob("*.yaml"):
        group, version, kind = path.stem.split("_")
        vendored = yaml.safe_load(path.read_text())
        assert {"repository", "path", "commit", "version"} <= vendored["source"].keys(), path
        schemas[(f"{group}/{version}", kind)] = strict(copy.deepcopy(vendored["openAPIV3Schema"]))
    return schemas


def validation_errors(document: dict) -> list[str]:
    name = f"{document['kind']}/{document['metadata']['name']}"
    custom = crd_schemas().get((document["apiVersion"], document["kind"].lower()))
    if custom is not None:
        return [f"{name}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
                for e in jsonschema.Draft7Validator(custom).iter_errors(document)]
    try:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{name}: no schema for {document['apiVersion']} {document['kind']} (vendor its CRD schema)"]
    except kubernetes_validate.ValidationError as error:
        return [f"{name}: {'.'.join(map(str, error.absolute_path))}: {error.message}"]
    return []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_resource_is_valid_against_its_schema(overlay):
    documents = build(overlay)
    assert {d["kind"] for d in documents} >= {"Deployment", "Job", "PodDisruptionBudget", "ScaledObject", "Kafka",
                                             "KafkaNodePool", "KafkaTopic", "KafkaUser", "Cluster", "ConfigMap"}
    errors = [error for document in documents for error in validation_errors(document)]
    assert not errors, "\n".join(errors)


def test_the_validator_catches_a_misspelt_field():
    """The checks above are only worth something if they fail: one mistake of each kind."""
    deployment = copy.deepcopy(of_kind(build("base"), "Deployment")["contracts"])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    assert validation_errors(deployment)
    topic = copy.deepcopy(next(iter(of_kind(build("base"), "KafkaTopic").values())))
    topic["spec"]["replica"] = 3
    assert validation_errors(topic)
    user = copy.deepcopy(of_kind(build("base"), "KafkaUser")["contracts"])
    user["spec"]["authentication"]["type"] = "scram-sha-256"
    assert validation_errors(user)
    database = copy.deepcopy(of_kind(build("base"), "Cluster")["contracts-db"])
    database["spec"]["instances"] = 0
    assert validation_errors(database)
    database = copy.deepcopy(of_kind(build("base"), "Cluster")["contracts-db"])
    database["spec"]["managed"]["roles"][0]["superuser"] = "no"
    assert validation_errors(database)


def test_the_committed_manifests_are_what_the_generator_writes():
    import importlib.util

    spec = importlib.util.spec_from_file_location("k8s_generate", K8S / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    stale = [str(path.relative_to(ROOT)) for path, text in generate.files().items() if path.read_text() != text]
    assert not stale, f"run `python deploy/k8s/generate.py`: {stale}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_has_probes_resources_a_budget_a_migration_and_an_autoscaler(overlay):
    documents = build(overlay)
    deployments, jobs = of_kind(documents, "Deployment"), of_kind(documents, "Job")
    budgets, scalers = of_kind(documents, "PodDisruptionBudget"), of_kind(documents, "ScaledObject")
    assert set(deployments) == set(SERVICES)
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["args"] == [name, "serve"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
        assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {
            "topology.kubernetes.io/zone", "kubernetes.io/hostname"}
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert budgets[name]["spec"]["selector"]["matchLabels"] == selector
        assert jobs[f"{name}-migrate"]["spec"]["template"]["spec"]["containers"][0]["args"] == [name, "migrate"]
        scaler = scalers[name]["spec"]
        assert scaler["scaleTargetRef"]["name"] == name
        (trigger,) = scaler["triggers"]
        assert (trigger["type"], trigger["metadata"]["consumerGroup"]) == ("kafka", name)
        assert scaler["maxReplicaCount"] <= max(t.partitions for t in TOPICS)  # more would stand idle


def test_production_runs_at_least_two_of_everything_across_zones():
    documents = build("overlays/production")
    assert all(s["spec"]["minReplicaCount"] >= 2 for s in of_kind(documents, "ScaledObject").values())
    for deployment in of_kind(documents, "Deployment").values():
        zone = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
        assert (zone["topologyKey"], zone["whenUnsatisfiable"]) == ("topology.kubernetes.io/zone", "DoNotSchedule")
    assert all(c["spec"]["instances"] == 3 for c in of_kind(documents, "Cluster").values())
    (pool,) = of_kind(documents, "KafkaNodePool").values()
    assert pool["spec"]["replicas"] == 3 and set(pool["spec"]["roles"]) == {"controller", "broker"}


@pytest.mark.parametrize(("overlay", "replicas", "min_insync"), [("base", 1, 1), ("overlays/production", 3, 2)])
def test_every_topic_of_the_code_is_a_kafka_topic(overlay, replicas, min_insync):
    topics = of_kind(build(overlay), "KafkaTopic")
    assert set(topics) == {t.name for t in TOPICS}
    for topic in TOPICS:
        spec = topics[topic.name]["spec"]
        assert (spec["partitions"], spec["config"]["retention.ms"]) == (topic.partitions, topic.retention_ms)
        assert (spec["replicas"], spec["config"]["min.insync.replicas"]) == (replicas, min_insync)
    kafka = of_kind(build(overlay), "Kafka")["escrow"]["spec"]["kafka"]
    assert kafka["config"]["min.insync.replicas"] == min_insync
    assert kafka["config"]["auto.create.topics.enable"] is False


def consumed_topics(service: str) -> set[str]:
    """The topics of the service's Subscription(...) calls in its bootstrap.py."""
    import platform_schemas.topics as names

    source = (ROOT / "services" / service / service / "bootstrap.py").read_text()
    return {getattr(names, constant) for constant in re.findall(r"Subscription\(\s*([A-Z_]+)", source)}


def test_each_kafka_user_is_its_row_of_the_acl_table_and_a_service_reads_what_it_consumes():
    from platform_schemas.acls import ADMIN_COMMAND_TOPICS, PRINCIPALS, SUPER_USER

    users = of_kind(build("base"), "KafkaUser")
    assert set(users) == set(PRINCIPALS) and SUPER_USER not in users
    topic_names = {t.name for t in TOPICS} | set(ADMIN_COMMAND_TOPICS)
    for name, user in users.items():
        principal = PRINCIPALS[name]
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
        allowed = defaultdict(set)
        for acl in user["spec"]["authorization"]["acls"]:
            resource = acl["resource"]
            allowed[(resource["type"], resource.get("name"), resource.get("patternType"))] |= set(acl["operations"])
        reads = {n for (kind, n, _), ops in allowed.items() if kind == "topic" and "Read" in ops}
        writes = {n for (kind, n, _), ops in allowed.items() if kind == "topic" and "Write" in ops}
        assert (reads, writes) == (set(principal.reads), set(principal.writes))
        assert writes <= topic_names and reads <= topic_names
        pattern = "prefix" if principal.group_prefixed else "literal"
        assert "Read" in allowed[("group", principal.group, pattern)]
        if principal.is_service:
            assert reads == consumed_topics(name)
            assert {dlq(t) for t in reads} <= writes
            assert f"{name}.events" in writes
        assert {kind for kind, _, _ in allowed} <= {"topic", "group", "cluster"}


def test_each_service_is_handed_only_settings_it_reads():
    from .settings_names import unknown

    documents = build("overlays/production")
    literals = {name: set(config["data"]) for name, config in of_kind(documents, "ConfigMap").items()}
    for workload in [*of_kind(documents, "Deployment").values(), *of_kind(documents, "Job").values()]:
        container = workload["spec"]["template"]["spec"]["containers"][0]
        service = container["args"][0]
        names = {e["name"] for e in container["env"]}
        for ref in container["envFrom"]:
            names |= literals[ref["configMapRef"]["name"]]
        assert not unknown(service, names), (workload["metadata"]["name"], unknown(service, names))


def test_every_reference_resolves_to_a_resource_or_an_operator_secret():
    documents = build("overlays/production")
    config_maps, services = set(of_kind(documents, "ConfigMap")), set(of_kind(documents, "Service"))
    clusters = set(of_kind(documents, "Cluster"))
    for workload in [*of_kind(documents, "Deployment").values(), *of_kind(documents, "Job").values()]:
        pod = workload["spec"]["template"]["spec"]
        for container in pod["containers"]:
            assert {ref["configMapRef"]["name"] for ref in container["envFrom"]} <= config_maps
            secrets = {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e}
            assert secrets <= OPERATOR_SECRETS
            for env in container["env"]:
                if env["name"].endswith("DATABASE_URL"):
                    host = re.search(r"@([\w-]+)-rw:5432/(\w+)$", env["value"])
                    assert host and host[1] in clusters and host[1] == f"{host[2]}-db", env
        assert {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v} <= OPERATOR_SECRETS
    for deployment in of_kind(documents, "Deployment"):
        assert deployment in services


def database_secrets(container: dict) -> set[str]:
    return {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]
            if "valueFrom" in e and "-db-" in e["valueFrom"]["secretKeyRef"]["name"]}


def test_each_database_has_an_owner_and_a_dml_only_role_and_no_superuser_login():
    from platform_runtime.database_roles import DatabaseRoles, grant_statements

    clusters = of_kind(build("overlays/production"), "Cluster")
    assert set(clusters) == {f"{d}-db" for d in DATABASES}
    for database in DATABASES:
        spec, roles = clusters[f"{database}-db"]["spec"], DatabaseRoles(database)
        initdb = spec["bootstrap"]["initdb"]
        assert (initdb["database"], initdb["owner"], initdb["secret"]["name"]) == (
            database, roles.owner, f"{database}-db-owner")
        assert initdb["postInitApplicationSQL"] == [f'CREATE ROLE "{roles.app}" NOLOGIN', *grant_statements(roles)]
        managed = {r["name"]: r for r in spec["managed"]["roles"]}
        assert set(managed) == {roles.owner, roles.app}
        for name, role in managed.items():
            assert role["login"] and not any(role[k] for k in ("superuser", "createdb", "createrole", "replication",
                                                               "bypassrls")), role
            assert role["passwordSecret"]["name"] == f"{database}-db-{name.rsplit('_', 1)[1]}"
        assert spec["enableSuperuserAccess"] is False
    script = (K8S / "database-secrets.sh").read_text()
    assert set(re.search(r"^DATABASES=\((.*)\)$", script, re.M)[1].split()) == set(DATABASES)


def test_services_run_as_the_dml_roles_and_only_migrations_as_the_owners():
    documents = build("overlays/production")
    for name, deployment in of_kind(documents, "Deployment").items():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert database_secrets(container) and all(s.endswith("-db-app") for s in database_secrets(container))
        assert not any(e["name"].startswith(("MIGRATION_", "GATEWAY_MIGRATION_")) for e in container["env"])
    for job in of_kind(documents, "Job").values():
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert database_secrets(container) and all(s.endswith("-db-owner") for s in database_secrets(container))
        assert "MIGRATION_DATABASE_URL" in {e["name"] for e in container["env"]}
        assert "DATABASE_URL" not in {e["name"] for e in container["env"]}


# The platform's PostgreSQL tuning (deploy/local/postgres.sh says why): every deployment sets each of these, with the
# same value where it is a matter of behaviour, not of the machine's size.
TUNING = {"autovacuum_naptime": "5s", "checkpoint_timeout": "15min", "max_wal_size": None, "shared_buffers": None}


def local_postgres_settings() -> dict[str, str]:
    script = (ROOT / "deploy/local/postgres.sh").read_text()
    return dict(re.findall(r"^(\w+) = (\S+)$", script, re.MULTILINE))


def compose_postgres_settings() -> dict[str, str]:
    command = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["postgres"].get("command", [])
    return dict(arg.split("=", 1) for flag, arg in zip(command[1::2], command[2::2]) if flag == "-c")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_postgresql_runs_the_platforms_tuning(overlay):
    deployments = {"local": local_postgres_settings(), "compose": compose_postgres_settings(),
                   **{name: cluster["spec"]["postgresql"]["parameters"]
                      for name, cluster in of_kind(build(overlay), "Cluster").items()}}
    for name, settings in deployments.items():
        for key, value in TUNING.items():
            assert key in settings, f"{name}: {key} is not set"
            assert value is None or settings[key] == value, f"{name}: {key} = {settings[key]}, not {value}"
