"""The mapping spec → Kubernetes objects (backends/kubernetes/manifests.py), as tables: replicas, resources, probes,
restart policy, quota, network policies, secrets (never in a ConfigMap, never outside a Secret), labels."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from branchyard import settings as settings_module
from branchyard.backends.kubernetes import naming, quantities
from branchyard.backends.kubernetes.inputs import Credentials, EnvironmentInputs, Release
from branchyard.backends.kubernetes.manifests import render_environment
from branchyard.backends.kubernetes.offline import inputs_from_files
from branchyard.errors import BadInput
from branchyard.spec.model import ProcessConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "yoto-smart-stream"
CREDENTIALS = Credentials(postgres_password="pg-Secret-4f1c", redis_password="redis-Secret-9a2b",
                          release_token="release-Token-77e0", backup_token="backup-Token-51d3")
RELEASE = Release(id="4d2c0f6e9b", commit="a" * 40, branch="main", archive_url="https://deploy.example.com/r/4d2c",
                  archive_sha256="b" * 64)


def inputs(environment: str = "production", env: dict[str, str] | None = None, **changes: Any) -> EnvironmentInputs:
    """The example app's environment as the backend would see it: a real release, real-looking credentials."""
    base = inputs_from_files(EXAMPLE, environment, settings_module.load({"BRANCHYARD_HOME": "/nonexistent"} | (env or {})))
    variables = dict(base.variables) | {"YOTO_CLIENT_SECRET": "yoto-Secret-c0ffee"}
    base = dataclasses.replace(base, release=RELEASE, credentials=CREDENTIALS, variables=variables)
    return dataclasses.replace(base, **changes)


def with_web(i: EnvironmentInputs, **web: Any) -> EnvironmentInputs:
    return dataclasses.replace(i, config=dataclasses.replace(i.config, web=dataclasses.replace(i.config.web, **web)))


def objects(i: EnvironmentInputs) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in render_environment(i)}


def web_container(objs: dict) -> dict[str, Any]:
    return objs[("Deployment", "web")]["spec"]["template"]["spec"]["containers"][0]


def walk_strings(node: Any):
    if isinstance(node, dict):
        for v in node.values():
            yield from walk_strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk_strings(v)
    elif isinstance(node, str):
        yield node


# --- replicas ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("environment", "override", "web", "worker"), [
    ("production", None, 2, 1),  # the spec's 2 replicas
    ("staging", None, 1, 1),
    ("pr-7", None, 1, 1),
    ("production", 4, 4, 1),  # `scale`: web only
    ("production", 0, 0, 0),  # `down` / asleep: the workers stop too
])
def test_replicas(environment, override, web, worker):
    i = inputs(environment, replicas=override)
    i = dataclasses.replace(i, config=dataclasses.replace(i.config, processes={"worker": ProcessConfig("python w.py")}))
    objs = objects(i)
    assert objs[("Deployment", "web")]["spec"]["replicas"] == web
    assert objs[("Deployment", "worker-worker")]["spec"]["replicas"] == worker


# --- resources -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("memory_mb", "cpu", "expected"), [
    (1024, 1.0, {"memory": "1Gi", "cpu": "1"}),
    (512, 0.5, {"memory": "512Mi", "cpu": "500m"}),
    (1536, 0.25, {"memory": "1536Mi", "cpu": "250m"}),
    (None, 2.0, {"cpu": "2"}),
    (None, None, None),
])
def test_resources_are_the_specs_sizes_requested_and_limited(memory_mb, cpu, expected):
    c = web_container(objects(with_web(inputs(), memory_mb=memory_mb, cpu=cpu)))
    assert c["resources"] == ({"requests": expected, "limits": expected} if expected else {})


def test_the_seeds_sizes_per_tier():
    """docs: production 1 GB / 1 vCPU per web replica, 10 GB for PostgreSQL; staging 512 MB / 0.5 vCPU, 5 GB; previews
    512 MB, PostgreSQL 1 GB."""
    for environment, limits, storage in (("production", {"memory": "1Gi", "cpu": "1"}, "10Gi"),
                                         ("staging", {"memory": "512Mi", "cpu": "500m"}, "5Gi"),
                                         ("pr-3", {"memory": "512Mi", "cpu": "500m"}, "1Gi")):
        objs = objects(inputs(environment))
        assert web_container(objs)["resources"]["limits"] == limits
        claim = objs[("StatefulSet", "postgres")]["spec"]["volumeClaimTemplates"][0]
        assert claim["spec"]["resources"]["requests"]["storage"] == storage


@pytest.mark.parametrize(("environment", "hard"), [
    # production: web 2 + 1 surge (1 vCPU, 1 GB each), the migration Job (same), PostgreSQL (1 vCPU, 2 GB), Redis
    # (1 vCPU, 512 MB), the backup CronJob's pod (1 vCPU, 256 MB), one on-demand pod (the larger of a `run` — web's
    # size — and a dump job: 0.5 vCPU, 256 MB); PostgreSQL 10 GB + Redis's append-only file 1 GB
    ("production", {"pods": "8", "requests.cpu": "8", "limits.cpu": "8", "requests.memory": "7936Mi",
                    "limits.memory": "7936Mi", "requests.storage": "11Gi", "persistentvolumeclaims": "2"}),
    # a preview: web 1 + 1 surge, migration and seed Jobs (0.5 vCPU, 512 MB each), PostgreSQL (0.5 vCPU, 512 MB),
    # one on-demand pod (web's size)
    ("pr-3", {"pods": "6", "requests.cpu": "3", "limits.cpu": "3", "requests.memory": "3Gi",
              "limits.memory": "3Gi", "requests.storage": "1Gi", "persistentvolumeclaims": "1"}),
])
def test_the_quota_is_the_peak_of_the_environments_own_workloads(environment, hard):
    quota = objects(inputs(environment, new_database=environment != "production"))[("ResourceQuota", "environment")]
    assert quota["spec"]["hard"] == hard | {"services.loadbalancers": "0", "services.nodeports": "0"}


def test_no_memory_quota_without_memory_sizes():
    i = with_web(inputs("pr-3"), memory_mb=None)
    i = dataclasses.replace(i, config=dataclasses.replace(i.config, postgres=dataclasses.replace(i.config.postgres,
                                                                                                  memory_mb=None)))
    hard = objects(i)[("ResourceQuota", "environment")]["spec"]["hard"]
    assert "limits.memory" not in hard and "requests.memory" not in hard
    assert hard["limits.cpu"] == "3"


def test_the_limit_range_defaults_to_web_and_caps_at_the_largest_container():
    limits = objects(inputs())[("LimitRange", "environment")]["spec"]["limits"]
    assert limits[0] == {"type": "Container", "default": {"memory": "1Gi", "cpu": "1"},
                         "defaultRequest": {"memory": "1Gi", "cpu": "1"}, "max": {"cpu": "1", "memory": "2Gi"}}
    assert limits[1] == {"type": "PersistentVolumeClaim", "max": {"storage": "10Gi"}}


@pytest.mark.parametrize(("text", "value"), [("500m", 0.5), ("1", 1.0), ("2Gi", 2 * 1024**3), ("512Mi", 512 * 1024**2),
                                             ("1k", 1000.0)])
def test_quantities_parse(text, value):
    assert quantities.parse(text) == value


def test_a_bad_quantity_is_refused():
    with pytest.raises(BadInput, match="not a Kubernetes quantity: '5 GB'"):
        quantities.parse("5 GB")


# --- probes and restarts -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "timeout", "interval", "failures", "probe", "startup_failures"), [
    ("/health", 100, 5, 3, {"httpGet": {"path": "/health", "port": "http"}}, 50),
    ("/ready", 7, 10, 1, {"httpGet": {"path": "/ready", "port": "http"}}, 4),
    (None, 300, 5, 3, {"tcpSocket": {"port": "http"}}, 150),  # no path: the port accepting connections
])
def test_probes_from_the_health_check(path, timeout, interval, failures, probe, startup_failures):
    i = with_web(inputs(), healthcheck_path=path, healthcheck_timeout=timeout, healthcheck_interval=interval,
                 healthcheck_failures=failures)
    objs = objects(i)
    c = web_container(objs)
    assert c["startupProbe"] == probe | {"periodSeconds": 2, "timeoutSeconds": 2, "failureThreshold": startup_failures}
    running = probe | {"periodSeconds": interval, "timeoutSeconds": min(interval, 5), "failureThreshold": failures}
    assert c["readinessProbe"] == c["livenessProbe"] == running
    assert objs[("Deployment", "web")]["spec"]["progressDeadlineSeconds"] == timeout + 60


@pytest.mark.parametrize("policy", ["ALWAYS", "ON_FAILURE", "NEVER"])
def test_deployments_always_restart_and_one_shot_work_never_does(policy):
    objs = objects(with_web(inputs("staging", new_database=True), restart_policy_type=policy))
    assert objs[("Deployment", "web")]["spec"]["template"]["spec"]["restartPolicy"] == "Always"
    for name in ("predeploy-4d2c0f6e9b", "seed-4d2c0f6e9b"):
        job = objs[("Job", name)]["spec"]
        assert (job["template"]["spec"]["restartPolicy"], job["backoffLimit"]) == ("Never", 0)


def test_rolling_update_never_drops_below_the_replicas_and_drains_before_stopping():
    objs = objects(with_web(inputs(), draining_seconds=20, overlap_seconds=3))
    spec = objs[("Deployment", "web")]["spec"]
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert spec["minReadySeconds"] == 3
    assert web_container(objs)["lifecycle"] == {"preStop": {"sleep": {"seconds": 20}}}
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == 50
    assert web_container(objects(inputs()))["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}  # the minimum


# --- services: cron, workers, hooks, data ----------------------------------------------------------------------------

def test_a_cron_service_is_a_cronjob_and_serves_nothing():
    objs = objects(with_web(inputs("staging"), cron_schedule="*/5 * * * *"))
    cron = objs[("CronJob", "cron")]["spec"]
    assert (cron["schedule"], cron["timeZone"], cron["concurrencyPolicy"], cron["startingDeadlineSeconds"],
            cron["suspend"]) == ("*/5 * * * *", "Etc/UTC", "Forbid", 3600, False)
    assert not {k for k in objs if k in (("Deployment", "web"), ("Service", "web"))}
    assert not [k for k in objs if k[0] == "Ingress"]
    assert objects(with_web(inputs("staging", replicas=0), cron_schedule="0 * * * *"))[("CronJob", "cron")][
        "spec"]["suspend"] is True


def test_a_procfile_worker_is_a_deployment_without_a_service_or_probes():
    i = inputs()
    i = dataclasses.replace(i, config=dataclasses.replace(i.config, processes={"clock": ProcessConfig("python clock.py", 2)}))
    objs = objects(i)
    worker = objs[("Deployment", "worker-clock")]
    c = worker["spec"]["template"]["spec"]["containers"][0]
    assert worker["spec"]["replicas"] == 2 and c["command"] == ["/bin/sh", "-c", "python clock.py"]
    assert not {"ports", "readinessProbe", "livenessProbe", "startupProbe"} & set(c)
    assert ("Service", "worker-clock") not in objs
    assert {e["name"]: e.get("value") for e in c["env"]}["BRANCHYARD_SERVICE_NAME"] == "worker-clock"


def test_hooks_run_in_order_and_the_seed_only_for_a_new_database():
    objs = objects(inputs("staging", new_database=True))
    script = objs[("Job", "predeploy-4d2c0f6e9b")]["spec"]["template"]["spec"]["containers"][0]["command"][2]
    assert script == "set -e\necho '-----> running: python manage.py migrate'\npython manage.py migrate\n"
    assert ("Job", "seed-4d2c0f6e9b") in objs
    assert ("Job", "seed-4d2c0f6e9b") not in objects(inputs("staging", new_database=False))
    order = [o["kind"] for o in render_environment(inputs("staging", new_database=True))]
    assert order.index("Job") < order.index("Deployment") < order.index("Ingress")


@pytest.mark.parametrize(("external", "kinds"), [
    (False, {("StatefulSet", "postgres"), ("Service", "postgres"), ("Secret", "postgres"), ("CronJob", "postgres-backup")}),
    (True, set()),  # the operator's server: nothing of PostgreSQL's in the namespace, its backups the control plane's
])
def test_postgres_in_the_namespace_or_on_the_operators_server(external, kinds):
    objs = objects(inputs(external_postgres=external))
    found = {k for k in objs if "postgres" in k[1]}
    assert found == kinds


def test_redis_persistence_is_a_volume_and_memory_a_limit_with_headroom():
    prod = objects(inputs())[("StatefulSet", "redis")]["spec"]
    args = prod["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes" and args[args.index("--maxmemory") + 1] == "409mb"
    assert prod["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "1Gi"
    staging = objects(inputs("staging"))[("StatefulSet", "redis")]["spec"]
    assert staging["template"]["spec"]["volumes"] == [{"name": "data", "emptyDir": {}}]
    assert "volumeClaimTemplates" not in staging


def test_a_prebuilt_image_runs_as_is():
    i = inputs(release=Release(id="r1", commit="c" * 40, branch="main", image="ghcr.io/acme/shop@sha256:" + "e" * 64))
    objs = objects(i)
    pod = objs[("Deployment", "web")]["spec"]["template"]["spec"]
    assert "initContainers" not in pod and "volumes" not in pod and "runAsUser" not in pod["securityContext"]
    assert pod["containers"][0]["image"] == "ghcr.io/acme/shop@sha256:" + "e" * 64
    assert ("Secret", "release-r1") not in objs  # no archive, no token


def test_a_release_archive_is_fetched_with_its_own_token_and_checked():
    pod = objects(inputs())[("Deployment", "web")]["spec"]["template"]["spec"]
    fetch = pod["initContainers"][0]
    env = {e["name"]: e for e in fetch["env"]}
    assert env["BRANCHYARD_RELEASE_URL"]["value"] == RELEASE.archive_url
    assert env["BRANCHYARD_RELEASE_SHA256"]["value"] == RELEASE.archive_sha256
    assert env["BRANCHYARD_RELEASE_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "release-4d2c0f6e9b", "key": "token"}}
    assert pod["securityContext"]["runAsUser"] == 1000 and pod["automountServiceAccountToken"] is False


# --- network -------------------------------------------------------------------------------------------------------

def test_network_policies_admit_the_namespace_the_ingress_controller_and_the_control_plane_only():
    objs = objects(inputs(env={"BRANCHYARD_KUBE_INGRESS_NAMESPACE": "traefik", "BRANCHYARD_KUBE_CONTROL_NAMESPACE": "ops"}))
    policies = {name: o["spec"] for (kind, name), o in objs.items() if kind == "NetworkPolicy"}
    assert policies["same-environment"] == {"podSelector": {}, "policyTypes": ["Ingress"],
                                            "ingress": [{"from": [{"podSelector": {}}]}]}
    ingress = policies["from-ingress-controller"]
    assert ingress["podSelector"] == {"matchLabels": {naming.SERVICE: "web"}}
    assert ingress["ingress"] == [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "traefik"}}}],
                                   "ports": [{"protocol": "TCP", "port": 8080}]}]
    control = policies["from-control-plane"]
    assert control["podSelector"]["matchExpressions"][0]["values"] == ["postgres", "redis"]
    assert control["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ops"}
    assert [p["port"] for p in control["ingress"][0]["ports"]] == [5432, 6379]
    assert all(p["policyTypes"] == ["Ingress"] for p in policies.values())


@pytest.mark.parametrize(("env", "tls", "klass"), [
    ({}, None, None),
    ({"BRANCHYARD_KUBE_CLUSTER_ISSUER": "letsencrypt", "BRANCHYARD_KUBE_INGRESS_CLASS": "nginx"}, "letsencrypt", "nginx"),
])
def test_an_ingress_per_host_with_cert_manager_when_configured(env, tls, klass):
    i = inputs(env={"BRANCHYARD_DOMAIN": "example.com"} | env, hosts=("yoto.example.com", "yoto.app"))
    ingresses = [o for o in render_environment(i) if o["kind"] == "Ingress"]
    assert [o["spec"]["rules"][0]["host"] for o in ingresses] == ["yoto.example.com", "yoto.app"]
    assert [o["metadata"]["name"] for o in ingresses] == ["web-yoto-example-com", "web-yoto-app"]
    for o in ingresses:
        assert o["spec"].get("ingressClassName") == klass
        if tls:
            assert o["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": tls}
            assert o["spec"]["tls"][0]["secretName"] == "tls-" + o["metadata"]["name"].removeprefix("web-")
        else:
            assert "tls" not in o["spec"] and "annotations" not in o["metadata"]


# --- secrets and labels --------------------------------------------------------------------------------------------

SECRET_VALUES = ("pg-Secret-4f1c", "redis-Secret-9a2b", "release-Token-77e0", "backup-Token-51d3", "yoto-Secret-c0ffee")


@pytest.mark.parametrize("environment", ["production", "staging", "pr-9"])
def test_secret_values_are_only_ever_in_secrets_and_nothing_is_a_configmap(environment):
    objs = render_environment(inputs(environment))
    assert not [o for o in objs if o["kind"] == "ConfigMap"]
    outside = [(o["kind"], o["metadata"]["name"], s) for o in objs if o["kind"] != "Secret"
               for s in walk_strings(o) if any(v in s for v in SECRET_VALUES)]
    assert outside == []
    inside = {v for o in objs if o["kind"] == "Secret" for s in walk_strings(o) for v in SECRET_VALUES if v in s}
    expected = {"pg-Secret-4f1c", "release-Token-77e0", "yoto-Secret-c0ffee"}
    expected |= {"redis-Secret-9a2b"} if environment != "pr-9" else set()  # previews have no Redis
    expected |= {"backup-Token-51d3"} if environment != "pr-9" else set()  # nor backups
    assert inside == expected


def test_every_variable_is_in_the_releases_immutable_secret():
    objs = objects(inputs())
    secret = objs[("Secret", "variables-4d2c0f6e9b")]
    assert secret["immutable"] is True
    assert secret["stringData"]["LOG_LEVEL"] == "warning" and secret["stringData"]["RAILWAY_GIT_COMMIT_SHA"] == "a" * 40
    assert web_container(objs)["envFrom"] == [{"secretRef": {"name": "variables-4d2c0f6e9b"}}]
    assert not any(e["name"] == "LOG_LEVEL" for e in web_container(objs)["env"])


@pytest.mark.parametrize(("environment", "ephemeral", "pull_request"), [
    ("production", "false", None), ("staging", "false", None), ("pr-41", "true", "41")])
def test_every_object_carries_the_environments_labels(environment, ephemeral, pull_request):
    objs = render_environment(inputs(environment))
    for o in objs:
        labels = o["metadata"]["labels"]
        assert (labels[naming.PROJECT], labels[naming.ENVIRONMENT], labels["app.kubernetes.io/managed-by"]) == (
            "yoto", environment, "branchyard"), (o["kind"], o["metadata"]["name"])
        if o["kind"] != "Namespace":
            assert o["metadata"]["namespace"] == f"branchyard-yoto-{environment}"
    ns = objs[0]
    assert ns["kind"] == "Namespace" and ns["metadata"]["labels"][naming.EPHEMERAL] == ephemeral
    assert ns["metadata"]["labels"].get(naming.PULL_REQUEST) == pull_request


@pytest.mark.parametrize(("prefix", "project", "environment", "expected"), [
    ("branchyard-", "yoto", "production", "branchyard-yoto-production"),
    ("", "yoto", "pr-12", "yoto-pr-12"),
    ("team-a-", "a" * 40, "b" * 40, None),  # 87 characters: shortened to one DNS label, still unique
])
def test_namespace_names(prefix, project, environment, expected):
    name = naming.namespace(prefix, project, environment)
    assert len(name) <= 63
    if expected:
        assert name == expected
    else:
        assert name != naming.namespace(prefix, project, "b" * 39 + "c")
