"""Names and labels of an environment's cluster objects. Pure.

Every object branchyard applies carries the environment's labels, so that "what is left of pr-12" is one label
selector across the cluster (Cluster.leftovers) and nothing of one environment is mistaken for another's.
"""

from __future__ import annotations

from ... import names

PROJECT = "branchyard.dev/project"
ENVIRONMENT = "branchyard.dev/environment"
EPHEMERAL = "branchyard.dev/ephemeral"
PULL_REQUEST = "branchyard.dev/pull-request"
SERVICE = "branchyard.dev/service"  # web, worker-<type>, cron, postgres, redis, predeploy, seed, backup, run
RELEASE = "branchyard.dev/release"  # the deployment a pod template, Job or Secret belongs to
MANAGED_BY = ("app.kubernetes.io/managed-by", "branchyard")


def namespace(prefix: str, project: str, environment: str) -> str:
    """`<prefix><project>-<environment>`, one DNS label (hash-shortened past 63 characters, still unique)."""
    return names.slug(f"{prefix}{project}-{environment}", what="namespace")


def environment_labels(project: str, environment: str) -> dict[str, str]:
    """The labels every object of the environment carries."""
    return {MANAGED_BY[0]: MANAGED_BY[1], PROJECT: project, ENVIRONMENT: environment}


def selector(project: str, environment: str) -> str:
    """The label selector of everything the environment has, anywhere in the cluster."""
    return f"{PROJECT}={project},{ENVIRONMENT}={environment}"


def service_labels(project: str, environment: str, service: str) -> dict[str, str]:
    """A workload's selector: its environment's labels and its service (never the release: selectors are immutable,
    a new release rolls the same Deployment)."""
    return environment_labels(project, environment) | {SERVICE: service}


def for_host(prefix: str, host: str) -> str:
    """An object named after one public host: `web-shop-staging-example-com` (one label, hash-shortened)."""
    return names.slug(f"{prefix}-{host}", what="object name")


def release_label(release_id: str) -> str:
    """A release id as a label value and name part (lowercase, ≤ 40 characters)."""
    return names.slug(release_id, what="release id", max_length=40)
