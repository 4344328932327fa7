"""Writes the Kubernetes manifests that follow from the code: one file per service (Deployment, Service,
PodDisruptionBudget, migrate Job, KEDA ScaledObject), the Strimzi KafkaTopic / KafkaUser resources (one KafkaUser
per principal of the ACL table, platform_schemas.acls, the same table the local scripts apply) and the
CloudNativePG Clusters with their roles and grants (platform_runtime.database_roles).

usage: python deploy/k8s/generate.py   (tests/deploy checks that the committed files are what this writes)
Kafka and the kustomizations themselves are written by hand.
"""

import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from platform_runtime.database_roles import DatabaseRoles, grant_statements
from platform_schemas.acls import PRINCIPALS, Principal, acls
from platform_schemas.topics import TOPICS

BASE = Path(__file__).resolve().parent / "base"
KAFKA_CLUSTER = "escrow"
BOOTSTRAP = f"{KAFKA_CLUSTER}-kafka-bootstrap:9093"
CLUSTER_CA_SECRET = f"{KAFKA_CLUSTER}-cluster-ca-cert"
# The read API's callers, by the SHA-256 of their bearer tokens (key `hashes`: `integrator=<hex>,admin=<hex>,...`),
# made by the operators (README, "Read API: authentication"); the tokens themselves are never in the cluster.
READ_API_SECRET = "read-api-token-hashes"
IMAGE = "escrow-platform"
HTTP_PORT = 8080
HEADER = "# Written by deploy/k8s/generate.py from the code; edit that script, not this file.\n"
POSTGRES_IMAGE = "ghcr.io/cloudnative-pg/postgresql:17.6"


@dataclass(frozen=True)
class Service:
    name: str
    other_databases: dict[str, str] = field(default_factory=dict)  # env variable -> database

    @property
    def databases(self) -> dict[str, str]:
        return {"DATABASE_URL": self.name} | self.other_databases

    @property
    def consumes(self) -> tuple[str, ...]:  # its row of the ACL table (tests/deploy checks it against bootstrap.py)
        return PRINCIPALS[self.name].reads


SERVICES = [
    Service("contracts"),
    Service("escrow"),
    Service("billing", other_databases={"GATEWAY_DATABASE_URL": "gateway"}),
    Service("notifications"),
]


def labels(service: str, component: str) -> dict:
    return {"app.kubernetes.io/name": service, "app.kubernetes.io/component": component}


def secret_env(name: str, secret: str, key: str) -> dict:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def database_secret(database: str, role: str) -> str:
    """The Secret (kubernetes.io/basic-auth) of a database role: `<db>-db-owner` or `<db>-db-app`, made once by
    deploy/k8s/database-secrets.sh; CloudNativePG sets the role's password from it, the pods read it."""
    return f"{database}-db-{role}"


def database_env(databases: dict[str, str], role: str = "app") -> list[dict]:
    """Each URL as the database's `role` (app: DML only, what a service runs as; owner: migrations), from the
    role's Secret ($(VAR) is expanded by the kubelet)."""
    env = []
    for variable, database in databases.items():
        prefix = variable.removesuffix("_URL")
        secret = database_secret(database, role)
        env += [secret_env(f"{prefix}_USER", secret, "username"), secret_env(f"{prefix}_PASSWORD", secret, "password"),
                {"name": variable, "value": f"postgresql+asyncpg://$({prefix}_USER):$({prefix}_PASSWORD)"
                                            f"@{database}-db-rw:5432/{database}"}]
    return env


def kafka_env(service: Service) -> list[dict]:
    return [{"name": "KAFKA_SASL_USERNAME", "value": service.name},
            secret_env("KAFKA_SASL_PASSWORD", service.name, "password")]  # the KafkaUser's Secret


def read_api_env() -> list[dict]:
    return [secret_env("HTTP_TOKEN_HASHES", READ_API_SECRET, "hashes")]


CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                      "capabilities": {"drop": ["ALL"]}}
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"}}


def pod_spec(service: Service, args: list[str], env: list[dict], container_fields: dict, **pod_fields) -> dict:
    """The pod of a service's Deployment or Job: the image, its settings, non-root with a read-only root."""
    container = {
        "name": service.name, "image": IMAGE, "args": args,
        # platform-config and <service>-config: the configMapGenerator of base/kustomization.yaml
        "envFrom": [{"configMapRef": {"name": "platform-config"}}, {"configMapRef": {"name": f"{service.name}-config"}}],
        "env": env, "securityContext": CONTAINER_SECURITY,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    container.update(container_fields)
    volumes = [{"name": "tmp", "emptyDir": {}}]
    if any(m["name"] == "kafka-ca" for m in container["volumeMounts"]):
        volumes.append({"name": "kafka-ca", "secret": {"secretName": CLUSTER_CA_SECRET,
                                                       "items": [{"key": "ca.crt", "path": "ca.crt"}]}})
    return {"automountServiceAccountToken": False, "securityContext": POD_SECURITY, **pod_fields,
            "containers": [container], "volumes": volumes}


def deployment(service: Service) -> dict:
    selector = {"app.kubernetes.io/name": service.name}
    probe = {"httpGet": {"path": "/health/live", "port": "http"}}
    spec = pod_spec(
        service, [service.name, "serve"],
        kafka_env(service) + database_env(service.databases) + read_api_env(),
        # uvicorn's graceful stop (20 s) + the consumer's in-flight batch (15 s) + the relay's last pass (10 s)
        terminationGracePeriodSeconds=60,
        topologySpreadConstraints=[
            {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": selector}, "matchLabelKeys": ["pod-template-hash"]}
            for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")],
        container_fields={
            "ports": [{"name": "http", "containerPort": HTTP_PORT}],
            "startupProbe": {**probe, "periodSeconds": 2, "failureThreshold": 60},
            "livenessProbe": {**probe, "periodSeconds": 20, "timeoutSeconds": 5, "failureThreshold": 3},
            "readinessProbe": {"httpGet": {"path": "/health/ready", "port": "http"}, "periodSeconds": 10,
                               "timeoutSeconds": 5, "failureThreshold": 3},
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                             {"name": "kafka-ca", "mountPath": "/etc/kafka-ca", "readOnly": True}],
        })
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": service.name, "labels": labels(service.name, "service")},
        "spec": {
            # KEDA owns the replica count once the ScaledObject is there; this is the count before it.
            "replicas": 1, "revisionHistoryLimit": 5, "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels(service.name, "service"),
                             "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(HTTP_PORT),
                                             "prometheus.io/path": "/metrics"}},
                "spec": spec,
            },
        },
    }


def http_service(service: Service) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": service.name, "labels": labels(service.name, "service")},
            "spec": {"selector": {"app.kubernetes.io/name": service.name},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}


def disruption_budget(service: Service) -> dict:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": service.name, "labels": labels(service.name, "service")},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": service.name}}}}


def migrate_job(service: Service) -> dict:
    # as the owners (MIGRATION_DATABASE_URL; billing also makes the gateway simulator's tables): the Job gets
    # no runtime credentials, the Deployment no owner's
    migrations = {variable.replace("DATABASE_URL", "MIGRATION_DATABASE_URL"): database
                  for variable, database in service.databases.items()}
    env = database_env(migrations, role="owner")
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {
            "name": f"{service.name}-migrate", "labels": labels(service.name, "migrate"),
            # A Job's pod template cannot change: with Argo CD the hook recreates it on every sync; with plain
            # kubectl, delete the finished Job before applying a new image (README, "Kubernetes").
            "annotations": {"argocd.argoproj.io/hook": "PreSync",
                            "argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation"},
        },
        "spec": {
            "backoffLimit": 4, "activeDeadlineSeconds": 900, "ttlSecondsAfterFinished": 86400,
            "template": {"metadata": {"labels": labels(service.name, "migrate")},
                         "spec": pod_spec(service, [service.name, "migrate"], env, restartPolicy="Never",
                                          container_fields={"resources": {"requests": {"cpu": "100m",
                                                                                       "memory": "128Mi"},
                                                                          "limits": {"memory": "256Mi"}}})},
        },
    }


def scaled_object(service: Service) -> list[dict]:
    """Scale on the consumer group's lag; more replicas than partitions would only stand idle."""
    partitions = max(t.partitions for t in TOPICS if t.name in service.consumes)
    auth = f"{service.name}-kafka"
    return [
        {"apiVersion": "keda.sh/v1alpha1", "kind": "TriggerAuthentication",
         "metadata": {"name": auth, "labels": labels(service.name, "autoscaling")},
         "spec": {"secretTargetRef": [{"parameter": "password", "name": service.name, "key": "password"},
                                      {"parameter": "ca", "name": CLUSTER_CA_SECRET, "key": "ca.crt"}],
                  "env": [{"parameter": "username", "name": "KAFKA_SASL_USERNAME"}]}},
        {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
         "metadata": {"name": service.name, "labels": labels(service.name, "autoscaling")},
         "spec": {"scaleTargetRef": {"name": service.name}, "minReplicaCount": 1, "maxReplicaCount": partitions,
                  "pollingInterval": 15, "cooldownPeriod": 300,
                  "triggers": [{"type": "kafka", "authenticationRef": {"name": auth},
                                "metadata": {"bootstrapServers": BOOTSTRAP, "consumerGroup": service.name,
                                             "lagThreshold": "500", "offsetResetPolicy": "earliest",
                                             "sasl": "scram_sha512", "tls": "enable"}}]}},
    ]


def kafka_topic(topic) -> dict:
    return {"apiVersion": "kafka.strimzi.io/v1beta2", "kind": "KafkaTopic",
            "metadata": {"name": topic.name, "labels": {"strimzi.io/cluster": KAFKA_CLUSTER}},
            # Replication 1 for a one-broker cluster; the production overlay makes it 3 with min.insync.replicas 2.
            "spec": {"partitions": topic.partitions, "replicas": 1,
                     "config": {"retention.ms": topic.retention_ms, "min.insync.replicas": 1}}}


def kafka_user(principal: Principal) -> dict:
    """The principal's row of the ACL table: one Strimzi ACL per resource, with all its operations."""
    operations: dict[tuple[str, str, bool], list[str]] = {}
    for rule in acls(principal):
        operations.setdefault((rule.resource, rule.name, rule.prefixed), []).append(rule.operation)
    rendered = []
    for (kind, name, prefixed), ops in operations.items():
        resource = {"type": "cluster"} if kind == "cluster" else {
            "type": kind, "name": name, "patternType": "prefix" if prefixed else "literal"}
        rendered.append({"type": "allow", "resource": resource, "operations": ops})
    return {"apiVersion": "kafka.strimzi.io/v1beta2", "kind": "KafkaUser",
            "metadata": {"name": principal.name, "labels": {"strimzi.io/cluster": KAFKA_CLUSTER}},
            "spec": {"authentication": {"type": "scram-sha-512"},
                     "authorization": {"type": "simple", "acls": rendered}}}


def database_cluster(database: str) -> dict:
    """One CloudNativePG Cluster per database: the owner role owns it (initdb) and runs the migrations, the app role
    has DML only (the grants of platform_runtime.database_roles, run once after initdb); both are managed roles,
    neither a superuser, and the cluster hands out no superuser credentials at all."""
    roles = DatabaseRoles(database)

    def managed(name: str, role: str) -> dict:
        return {"name": name, "ensure": "present", "login": True, "superuser": False, "createdb": False,
                "createrole": False, "replication": False, "bypassrls": False,
                "passwordSecret": {"name": database_secret(database, role)}}

    return {
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": f"{database}-db", "labels": labels(f"{database}-db", "database")},
        "spec": {
            "instances": 1, "imageName": POSTGRES_IMAGE, "storage": {"size": "10Gi"},
            "enableSuperuserAccess": False,
            "bootstrap": {"initdb": {
                "database": database, "owner": roles.owner, "secret": {"name": database_secret(database, "owner")},
                "dataChecksums": True,
                # the app role exists before the managed roles are reconciled (after bootstrap), which then give
                # it LOGIN and its password
                "postInitApplicationSQL": [f'CREATE ROLE "{roles.app}" NOLOGIN', *grant_statements(roles)]}},
            "managed": {"roles": [managed(roles.owner, "owner"), managed(roles.app, "app")]},
            # The platform's tuning, explained where it is set for local runs (deploy/local/postgres.sh): autovacuum
            # every 5 s for the outbox, checkpoints by time for the bonus batch; shared_buffers a quarter of the
            # memory limit (the production overlay raises it and max_wal_size).
            "postgresql": {"parameters": {"max_connections": "200", "autovacuum_naptime": "5s",
                                          "shared_buffers": "256MB", "max_wal_size": "4GB",
                                          "checkpoint_timeout": "15min"}},
            "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
        },
    }


def databases() -> list[str]:
    return list(dict.fromkeys(database for s in SERVICES for database in s.databases.values()))


CLUSTERS_PREAMBLE = """\
# PostgreSQL on CloudNativePG: one Cluster per database, so each service owns its data (and its failover); gateway
# is the payment gateway simulator's (billing's GATEWAY_DATABASE_URL), a real gateway needs none. `<cluster>-rw`
# is the Service that always points at the primary. The base runs one instance each; overlays/production three.
"""


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data) -> bool:  # no &id001 anchors: each manifest reads on its own
        return True


def dump(documents: list[dict], preamble: str = "") -> str:
    return HEADER + preamble + "".join("---\n" + yaml.dump(d, Dumper=_Dumper, sort_keys=False, width=120) for d in documents)


def files() -> dict[Path, str]:
    out = {BASE / "kafka" / "topics.yaml": dump([kafka_topic(t) for t in TOPICS]),
           BASE / "kafka" / "users.yaml": dump([kafka_user(p) for p in PRINCIPALS.values()]),
           BASE / "postgres" / "clusters.yaml": dump([database_cluster(d) for d in databases()], CLUSTERS_PREAMBLE)}
    for s in SERVICES:
        out[BASE / "services" / f"{s.name}.yaml"] = dump(
            [deployment(s), http_service(s), disruption_budget(s), migrate_job(s), *scaled_object(s)])
    return out


def main() -> int:
    for path, text in files().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(BASE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
