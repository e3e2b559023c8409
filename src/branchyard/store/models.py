"""The control plane's state: projects, environments, deployments, replicas, events.

`*Status` words follow Railway's vocabulary so users recognise them.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deployment statuses (Railway's words).
QUEUED = "QUEUED"
BUILDING = "BUILDING"
DEPLOYING = "DEPLOYING"
SUCCESS = "SUCCESS"
FAILED = "FAILED"
CRASHED = "CRASHED"
REMOVED = "REMOVED"
SKIPPED = "SKIPPED"
SLEEPING = "SLEEPING"

# What reaching a deployment takes (Deployment.work).
WORK_BUILD = "build"  # build the exported commit, provision, run hooks, roll out
WORK_ROLLOUT = "rollout"  # a retained release and its variables snapshot (redeploy, rollback, up, variables)
WORK_PROMOTE = "promote"  # a copy of another environment's release, this environment's variables and data

IN_PROGRESS = frozenset({QUEUED, BUILDING, DEPLOYING})
TERMINAL = frozenset({SUCCESS, FAILED, CRASHED, REMOVED, SKIPPED, SLEEPING})

# Environment states.
ENV_ACTIVE = "ACTIVE"
ENV_SLEEPING = "SLEEPING"
SLEEP_IDLE = "idle"  # Environment.sleep_kind: asleep for want of requests, woken by the next one
SLEEP_DOWN = "down"  # `branchyard down`: the 503 page until `up`

# Replica states.
REPLICA_STARTING = "STARTING"
REPLICA_RUNNING = "RUNNING"
REPLICA_STOPPED = "STOPPED"
REPLICA_CRASHED = "CRASHED"
REPLICA_DRAINING = "DRAINING"  # out of the route, being stopped
REPLICA_EXITED = "EXITED"  # exited 0 and the restart policy leaves it so
REPLICA_STANDBY = "STANDBY"  # out of the route, kept running for overlapSeconds: a rollback re-adopts it


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def new_id() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    pass


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    repo_path: Mapped[str] = mapped_column(Text)  # the bare repository the `branchyard` remote points at
    upstream: Mapped[str | None] = mapped_column(Text, nullable=True)  # `init --repo URL`
    domain: Mapped[str | None] = mapped_column(Text, nullable=True)  # branchyard.toml [project] domain
    github_repository: Mapped[str | None] = mapped_column(Text, nullable=True)  # [github] repository "owner/name"
    webhook_secret: Mapped[str | None] = mapped_column(Text, nullable=True)  # encrypted; `github configure`
    preview_policy: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON PreviewDecl of the base branch
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Environment(Base):
    __tablename__ = "environments"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    branch: Mapped[str | None] = mapped_column(Text, nullable=True)
    branch_pinned: Mapped[bool] = mapped_column(default=False)  # set by the user: the spec's branch never overrides it
    ephemeral: Mapped[bool] = mapped_column(default=False)
    production: Mapped[bool] = mapped_column(default=False)
    protected: Mapped[bool] = mapped_column(default=False)  # the spec's `protected`: admins only deploy, configure, shell
    state: Mapped[str] = mapped_column(String(16), default=ENV_ACTIVE)
    current_deployment_id: Mapped[str | None] = mapped_column(String(36), nullable=True)  # observed: what serves
    target_deployment_id: Mapped[str | None] = mapped_column(String(36), nullable=True)  # desired: what should
    replicas_override: Mapped[int | None] = mapped_column(Integer, nullable=True)  # `branchyard scale web=N`
    # `branchyard scale worker=N`: JSON {process type: count} for the Procfile's other services (web's is above)
    services_scale: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # SLEEPING since (UTC), and how: SLEEP_IDLE (no request for sleepAfter; its next request wakes it) or SLEEP_DOWN
    # (`branchyard down`; None on an environment downed before issue 17: the same)
    slept_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    sleep_kind: Mapped[str | None] = mapped_column(String(8), nullable=True)


class Domain(Base):
    """A custom domain of one environment: routed to it like its generated host; its certificate as last seen."""

    __tablename__ = "domains"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"), index=True)
    host: Mapped[str] = mapped_column(String(253), unique=True)  # names.custom_domain: lowercase, no trailing dot
    source: Mapped[str] = mapped_column(String(8))  # cli (`domain add`) | spec (branchyard.toml `domains`)
    cert_state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | issued | failed
    cert_not_after: Mapped[dt.datetime | None] = mapped_column(nullable=True)  # issued: valid until (UTC)
    cert_error: Mapped[str | None] = mapped_column(Text, nullable=True)  # failed: the CA's error, as the edge said
    cert_checked_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)  # when the edge was last asked
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Deployment(Base):
    __tablename__ = "deployments"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    commit_sha: Mapped[str] = mapped_column(String(64))
    branch: Mapped[str | None] = mapped_column(Text, nullable=True)
    trigger: Mapped[str] = mapped_column(String(32))  # push | up | redeploy | rollback | webhook | promote | variables
    actor: Mapped[str | None] = mapped_column(String(64), nullable=True)  # who asked for it (a user, github, system)
    work: Mapped[str] = mapped_column(String(16), default=WORK_BUILD)  # build | rollout | promote: what reaching it takes
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # workers started on it (a restart resumes it)
    retry_at: Mapped[float | None] = mapped_column(nullable=True)  # epoch seconds: the next attempt, after a backoff
    release_dir: Mapped[str | None] = mapped_column(Text, nullable=True)
    log_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    config_json: Mapped[str | None] = mapped_column(Text, nullable=True)  # effective config snapshot
    variables_json: Mapped[str | None] = mapped_column(Text, nullable=True)  # resolved variables snapshot
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    # post-deploy tests ([environments.<env>.tests], verification.py): passed | failed | running | skipped; None: not
    # decided yet. The detail is one redacted line (exit code or timeout, the last output line).
    tests_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    tests_detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    tests_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class Replica(Base):
    __tablename__ = "replicas"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    slot: Mapped[int] = mapped_column(Integer)  # process slot <env>.<service>.<slot>
    service: Mapped[str] = mapped_column(String(64), default="web", server_default="web")  # web | a Procfile type
    pid: Mapped[int] = mapped_column(Integer)
    start_time: Mapped[int] = mapped_column(Integer)
    port: Mapped[int] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String(64), default="127.0.0.1", server_default="127.0.0.1")  # its namespace's address (issue 17)
    log_path: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=REPLICA_STARTING)
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    restart_after: Mapped[float | None] = mapped_column(nullable=True)  # epoch seconds: restart backoff
    last_exit: Mapped[str | None] = mapped_column(Text, nullable=True)  # why it last stopped (exit code, log tail)
    # liveness of a RUNNING replica with a health-check path: failed checks in a row, when the last one ran, why it failed
    health_failures: Mapped[int] = mapped_column(default=0)
    health_checked_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # epoch seconds
    health_detail: Mapped[str | None] = mapped_column(Text, nullable=True)


class Service(Base):
    """A PostgreSQL database or Redis server that belongs to one environment."""

    __tablename__ = "services"
    __table_args__ = (UniqueConstraint("environment_id", "kind"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # postgres | redis
    name: Mapped[str] = mapped_column(String(64))  # reference namespace: ${{Postgres.DATABASE_URL}}
    source: Mapped[str] = mapped_column(String(16))  # spec | plugin (`branchyard add --plugin`)
    location: Mapped[str] = mapped_column(Text)  # which server / data directory
    connection: Mapped[str | None] = mapped_column(Text, nullable=True)  # encrypted JSON: the variables it exposes
    settings: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON: memory_mb, persistence, dedicated
    seeded: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Variable(Base):
    """A variable set with `branchyard variables set`; secret values are encrypted."""

    __tablename__ = "variables"
    __table_args__ = (UniqueConstraint("environment_id", "key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(128))
    value: Mapped[str] = mapped_column(Text)
    secret: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Backup(Base):
    """A pg_dump (custom format) of one environment's database."""

    __tablename__ = "backups"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project: Mapped[str] = mapped_column(String(64))
    environment: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # manual | scheduled | pre-deploy | final
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Event(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    project: Mapped[str] = mapped_column(String(64))
    environment: Mapped[str | None] = mapped_column(String(64), nullable=True)
    deployment_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64), default="system")  # a user's name, or github / system
    actor_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the user's id (None: not a user)
    message: Mapped[str] = mapped_column(Text)


# Preview decisions (Preview.decision).
PREVIEW_DEPLOY = "deploy"  # admitted: its environment is kept at head_sha
PREVIEW_PENDING = "pending_approval"  # a fork's pull request waiting for `branchyard previews approve`
PREVIEW_REFUSED = "refused"  # not admitted (bot, draft, fork with forks = "never", bad name...)
PREVIEW_WAITING = "waiting"  # admitted by policy, but maxPreviews is reached (evict = "refuse"): waits for a slot,
#                              in the order refused ("preview.waiting" events), admitted when one frees
PREVIEW_EXPIRED = "expired"  # idle longer than expireAfterDays; comes back on new activity
PREVIEW_EVICTED = "evicted"  # the oldest idle preview, removed to make room (evict = "oldest")


class WebhookDelivery(Base):
    """A GitHub delivery seen (X-GitHub-Delivery): a replay of the same id is ignored, across restarts."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event: Mapped[str] = mapped_column(String(64))
    project: Mapped[str | None] = mapped_column(String(64), nullable=True)
    state: Mapped[str] = mapped_column(String(16))  # pending | done | ignored
    payload: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON of the parsed event, while pending
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Preview(Base):
    """One wanted preview: an open pull request (kind "pr") or a live branch (kind "branch"). The desired set."""

    __tablename__ = "previews"
    __table_args__ = (UniqueConstraint("project_id", "environment"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    environment: Mapped[str] = mapped_column(String(64))  # pr-<n> or the branch's slug
    kind: Mapped[str] = mapped_column(String(16))  # pr | branch
    number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    branch: Mapped[str | None] = mapped_column(Text, nullable=True)
    head_sha: Mapped[str] = mapped_column(String(64))
    base_sha: Mapped[str | None] = mapped_column(String(64), nullable=True)
    head_repo: Mapped[str | None] = mapped_column(Text, nullable=True)
    fork: Mapped[bool] = mapped_column(default=False)
    bot: Mapped[bool] = mapped_column(default=False)
    draft: Mapped[bool] = mapped_column(default=False)
    author: Mapped[str | None] = mapped_column(Text, nullable=True)
    open: Mapped[bool] = mapped_column(default=True)
    approved_sha: Mapped[str | None] = mapped_column(String(64), nullable=True)  # `previews approve`: this commit
    # a head commit watchPatterns skipped (nothing it changed is watched): the preview stays on its deployed commit
    unwatched_sha: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decision: Mapped[str | None] = mapped_column(String(24), nullable=True)  # None: not decided yet
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_activity_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# Promotion states.
PROMOTION_PLANNED = "PLANNED"  # plan shown, waiting for the typed confirmation
PROMOTION_PENDING_APPROVAL = "PENDING_APPROVAL"  # confirmed, waiting for approvals
PROMOTION_WAITING = "WAITING"  # confirmed and approved, held by the waitTimer until start_after
PROMOTION_PROMOTING = "PROMOTING"  # the target's deployment is running
PROMOTION_VERIFYING = "VERIFYING"  # post-deploy smoke tests against the target
PROMOTION_SUCCESS = "SUCCESS"
PROMOTION_FAILED = "FAILED"  # a gate failed, the deploy failed, or verification failed (then rolled back)
PROMOTION_CANCELLED = "CANCELLED"  # the confirmation did not match
PROMOTION_OPEN = frozenset({PROMOTION_PLANNED, PROMOTION_PENDING_APPROVAL, PROMOTION_WAITING})
PROMOTION_ACTIVE = frozenset({PROMOTION_PROMOTING, PROMOTION_VERIFYING})
PROMOTION_FINISHED = frozenset({PROMOTION_SUCCESS, PROMOTION_FAILED, PROMOTION_CANCELLED})


class Promotion(Base):
    """`branchyard promote SOURCE TARGET`: the exact release running in SOURCE, deployed to TARGET behind gates."""

    __tablename__ = "promotions"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(64))
    source_deployment_id: Mapped[str] = mapped_column(String(36))  # the release promoted (no rebuild)
    commit_sha: Mapped[str] = mapped_column(String(64))
    previous_deployment_id: Mapped[str | None] = mapped_column(String(36), nullable=True)  # target's, for rollback
    target_deployment_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    rollback_deployment_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    state: Mapped[str] = mapped_column(String(20), default=PROMOTION_PLANNED)
    requested_by: Mapped[str] = mapped_column(String(64))  # who planned it
    requested_by_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # their user id
    confirmed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)  # who typed PROMOTE
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    start_after: Mapped[dt.datetime | None] = mapped_column(nullable=True)  # waitTimer: not started before this (UTC)
    plan_json: Mapped[str] = mapped_column(Text)  # the plan as shown (secret values masked)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class Approval(Base):
    """One approver's approval of a promotion (one row per distinct approver)."""

    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("promotion_id", "approver"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    promotion_id: Mapped[str] = mapped_column(ForeignKey("promotions.id", ondelete="CASCADE"))
    approver: Mapped[str] = mapped_column(String(64))  # the user's name
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the authenticated user (None: before users)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# User roles: see access.py.


class User(Base):
    """A person on this control plane. Removal is soft: their events keep naming them; their tokens stop working."""

    __tablename__ = "users"
    __table_args__ = (Index("ux_users_active_name", "name", unique=True, sqlite_where=text("removed_at IS NULL")),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(39))
    role: Mapped[str] = mapped_column(String(8))  # admin | member | viewer
    created_by: Mapped[str | None] = mapped_column(String(39), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    removed_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class ApiToken(Base):
    """One of a user's API tokens: only its SHA-256 is kept (the token is shown once, when created)."""

    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String(12), primary_key=True)  # public: `tokens list`, `tokens revoke ID`
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class DatabaseTemplate(Base):
    """A database kept migrated and seeded for new databases with the same key to be cloned from (templateFiles)."""

    __tablename__ = "database_templates"
    __table_args__ = (UniqueConstraint("project_id", "key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))  # data.templates.template_key
    database: Mapped[str] = mapped_column(String(63))  # also the name of the role owning its objects
    location: Mapped[str] = mapped_column(String(200))  # the server: "shared" or "external"
    source_environment: Mapped[str] = mapped_column(String(64))  # whose hooks made it
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class MetricSample(Base):
    """One point of a metric series (issue 16): names from monitoring.py; `service`/`replica` are its labels ("" when
    the series is the environment's own); `resolution` is its tier (10, 60, 3600 s), `ts` its bucket's start (epoch
    seconds). Written with Core batched inserts, rolled up and pruned by controller/metrics.py."""

    __tablename__ = "metric_samples"
    __table_args__ = (Index("ix_metric_samples_env", "project", "environment", "resolution", "ts"),
                      Index("ix_metric_samples_age", "resolution", "ts"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project: Mapped[str] = mapped_column(String(64))
    environment: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    service: Mapped[str] = mapped_column(String(64), default="", server_default="")
    replica: Mapped[str] = mapped_column(String(128), default="", server_default="")
    resolution: Mapped[int] = mapped_column(Integer)
    ts: Mapped[int] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(Float)


class Alert(Base):
    """One alert of an environment's rule (issue 16): open (pending or firing) — at most one per rule — or resolved.
    Times are unix seconds; what alerting.evaluate needs to go on after a restart without firing again."""

    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"), index=True)
    rule: Mapped[str] = mapped_column(String(64))  # a series of monitoring.py, or "down"
    state: Mapped[str] = mapped_column(String(16))  # pending | firing | resolved (alerting.py)
    since: Mapped[float] = mapped_column(Float)  # when the condition started holding
    fired_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    clear_since: Mapped[float | None] = mapped_column(Float, nullable=True)  # firing, condition gone: since when
    resolved_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)  # the last value seen
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)


class UptimeCheck(Base):
    """One probe of an environment's public URL through the router (controller/uptime.py); pruned after 30 days."""

    __tablename__ = "uptime_checks"
    __table_args__ = (Index("ix_uptime_checks_environment_id_at", "environment_id", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    at: Mapped[float] = mapped_column(Float)  # unix seconds
    ok: Mapped[bool] = mapped_column()
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration_ms: Mapped[float] = mapped_column(Float, server_default=text("0"))


class EnvironmentUsage(Base):
    """What an environment used while running (issue 17, controller/costs.py): its allocation × time, advanced by
    housekeeping up to `counted_until`; `running` is whether it ran at that instant (an interval counts only when it
    ran at both ends). Dollars are computed when read, from the price table of the day."""

    __tablename__ = "environment_usage"
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"), primary_key=True)
    counted_until: Mapped[float] = mapped_column(Float)  # unix seconds
    running: Mapped[bool] = mapped_column(default=False)
    # the allocation in force since counted_until (GB of RAM, vCPUs, GB of volume): the next interval's rates
    memory_gb: Mapped[float] = mapped_column(Float, server_default=text("0"))
    vcpu: Mapped[float] = mapped_column(Float, server_default=text("0"))
    storage_gb: Mapped[float] = mapped_column(Float, server_default=text("0"))
    running_seconds: Mapped[float] = mapped_column(Float, server_default=text("0"))
    memory_gb_seconds: Mapped[float] = mapped_column(Float, server_default=text("0"))
    vcpu_seconds: Mapped[float] = mapped_column(Float, server_default=text("0"))
    storage_gb_seconds: Mapped[float] = mapped_column(Float, server_default=text("0"))
class CronRun(Base):
    """One slot of a cron service (`cronSchedule`, controller/cron.py): run (running → succeeded/failed) or skipped
    (the previous run was still going, or the slot was missed while the control plane was down). Times are unix
    seconds (UTC); `pid`/`start_time` identify a running run's process (the identity guard against PID reuse)."""

    __tablename__ = "cron_runs"
    __table_args__ = (Index("ix_cron_runs_environment_id_slot", "environment_id", "scheduled_for"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    deployment_id: Mapped[str] = mapped_column(String(36))  # the cron deployment whose release and variables it ran
    scheduled_for: Mapped[float] = mapped_column(Float)  # the schedule's slot
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # running | succeeded | failed | skipped
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)  # why skipped or failed
    log_path: Mapped[str | None] = mapped_column(Text, nullable=True)  # None once housekeeping removed its raw files
    log_lines: Mapped[int | None] = mapped_column(Integer, nullable=True)  # when it ended: lines it printed
    log_tail: Mapped[str | None] = mapped_column(Text, nullable=True)  # when it ended: its last lines, secrets masked
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    start_time: Mapped[int | None] = mapped_column(Integer, nullable=True)
