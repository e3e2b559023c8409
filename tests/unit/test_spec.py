"""The spec: branchyard.toml + railway.toml/json (+ Procfile) → validated per-environment config.

Exact values, exact messages, every precedence layer, and the messy files real projects have.
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path

import pytest

from branchyard.errors import NotFound, SpecError
from branchyard.spec import (
    EnvironmentDecl,
    PreviewDecl,
    PromotionSpec,
    check,
    explain,
    load_project,
    parse_cpu,
    parse_memory,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "yoto-smart-stream"

MINIMAL = """
[project]
name = "app"
"""


def project(root: Path, files: dict[str, str] | None = None, **named: str) -> Path:
    """Write files into root: `files` maps relative paths to text; keywords are short for
    branchyard_toml, railway_toml, railway_json and Procfile."""
    short = {"branchyard_toml": "branchyard.toml", "railway_toml": "railway.toml", "railway_json": "railway.json"}
    everything = {**{short.get(k, k): v for k, v in named.items()}, **(files or {})}
    for relative, text in everything.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


def load_error(root: Path, **kwargs: object) -> str:
    with pytest.raises(SpecError) as err:
        load_project(root, **kwargs)  # type: ignore[arg-type]
    return str(err.value)


# --- sizes and CPUs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "mb"),
    [
        (1024, 1024),
        (512.0, 512),
        ("512", 512),
        ("512MB", 512),
        ("512 MB", 512),
        ("512 MiB", 512),
        ("512m", 512),
        ("2 GB", 2048),
        ("2gb", 2048),
        ("1 GiB", 1024),
        ("1.5 GB", 1536),
        ("0.5G", 512),
        ("1 TB", 1048576),
        ("2048 KB", 2),
        ("1500 KB", 2),  # rounded up to whole MB
        ("3000000000 B", 2862),
    ],
)
def test_parse_memory(value: object, mb: int) -> None:
    assert parse_memory(value) == mb


@pytest.mark.parametrize("value", ["lots", "", "0", 0, -1, "2 GBs", "GB", True, None, [512], "1,5 GB"])
def test_parse_memory_refuses(value: object) -> None:
    with pytest.raises(SpecError) as err:
        parse_memory(value)
    assert str(err.value) == f'expected a size like "512 MB" or "2 GB", got {json.dumps(value)}'


@pytest.mark.parametrize(
    ("value", "cpus"),
    [(1, 1.0), (0.5, 0.5), ("0.5", 0.5), ("2", 2.0), ("1 vCPU", 1.0), ("2 vcpus", 2.0), ("500m", 0.5), ("4 cores", 4.0)],
)
def test_parse_cpu(value: object, cpus: float) -> None:
    assert parse_cpu(value) == cpus


@pytest.mark.parametrize("value", ["lots", 0, "0", -1, True, "1 GHz", None])
def test_parse_cpu_refuses(value: object) -> None:
    with pytest.raises(SpecError) as err:
        parse_cpu(value)
    assert str(err.value) == f"expected a number of vCPUs like 0.5 or 2, got {json.dumps(value)}"


# --- the shipped example ---------------------------------------------------------------------


def test_example_loads_without_warnings() -> None:
    spec = load_project(EXAMPLE)
    assert spec.warnings == ()
    assert spec.ignored == ('railway.toml: build.builder = "NIXPACKS" is ignored (branchyard builds with a virtualenv)',)
    assert spec.files[:2] == ("branchyard.toml", "railway.toml")  # + Procfile when the app ships one
    assert spec.name == "yoto"
    assert spec.domain is None
    assert spec.strict is False
    assert spec.github_repository == "owner/yoto-smart-stream"
    assert list(spec.environments) == ["production", "staging", "pr"]
    promotion = PromotionSpec(source="staging", approvals=2, smoke_command="python manage.py smoke", smoke_timeout=60,
                              prevent_self_review=True)  # production's default
    assert spec.environments["production"] == EnvironmentDecl("production", branch="main", production=True,
                                                              promotion=promotion, protected=True)
    assert spec.environments["staging"] == EnvironmentDecl("staging", branch="develop")
    assert spec.preview == PreviewDecl(patterns=("feature/*", "fix/*", "chore/*"), base="staging", trigger="pr")
    assert check(EXAMPLE) == []
    assert check(EXAMPLE, strict=True) == []


SHARED = {
    "YOTO_CLIENT_ID": "${{ secrets.YOTO_CLIENT_ID }}",
    "YOTO_CLIENT_SECRET": "${{ secrets.YOTO_CLIENT_SECRET }}",
    "DATABASE_URL": "${{Postgres.DATABASE_URL}}",
    "PORT": "${{PORT}}",
}


@pytest.mark.parametrize(
    ("env", "web", "postgres", "redis", "variables"),
    [
        (
            "production",
            {"replicas": 2, "memory_mb": 1024, "cpu": 1.0},
            {"memory_mb": 2048, "storage_mb": 10240, "backups": "daily", "ephemeral": False, "dedicated": True,
             "template_files": []},
            {"name": "Redis", "memory_mb": 512, "persistence": True},
            {
                **SHARED,
                "ENVIRONMENT": "production",
                "DEBUG": "false",
                "LOG_LEVEL": "warning",
                "WORKERS": "4",
                "REDIS_URL": "${{Redis.REDIS_URL}}",
                "SENTRY_DSN": "${{ secrets.SENTRY_DSN }}",
            },
        ),
        (
            "staging",
            {"replicas": 1, "memory_mb": 512, "cpu": 0.5},
            {"memory_mb": 1024, "storage_mb": 5120, "backups": "daily", "ephemeral": False, "dedicated": False,
             "template_files": []},
            {"name": "Redis", "memory_mb": 256, "persistence": False},
            {
                **SHARED,
                "ENVIRONMENT": "staging",
                "DEBUG": "true",
                "LOG_LEVEL": "info",
                "WORKERS": "2",
                "REDIS_URL": "${{Redis.REDIS_URL}}",
                "SENTRY_DSN": "${{ secrets.SENTRY_DSN_STAGING }}",
            },
        ),
        (
            "pr-123",
            {"replicas": 1, "memory_mb": 512, "cpu": 0.5},
            {"memory_mb": 512, "storage_mb": 1024, "backups": None, "ephemeral": True, "dedicated": False,
             "template_files": ["migrations", "alembic.ini", "manage.py", "db.py"]},
            None,
            {**SHARED, "ENVIRONMENT": "preview", "DEBUG": "true", "LOG_LEVEL": "debug", "WORKERS": "1"},
        ),
    ],
)
def test_example_environments(
    env: str, web: dict, postgres: dict, redis: dict | None, variables: dict[str, str]
) -> None:
    config = load_project(EXAMPLE).environment(env)
    data = config.to_dict()
    assert {k: data["web"][k] for k in web} == web
    assert data["web"]["start_command"] == "uvicorn main:app --host 0.0.0.0 --port $PORT --workers ${WORKERS:-1}"
    assert data["web"]["build_command"] == "pip install -r requirements.txt"
    assert data["web"]["healthcheck_path"] == "/health"
    assert data["web"]["healthcheck_timeout"] == 100
    assert data["web"]["restart_policy_type"] == "ON_FAILURE"
    assert data["postgres"] == {"name": "Postgres", **postgres}
    assert data["redis"] == redis
    assert data["variables"] == variables
    assert config.sources["web.start_command"] == "railway.toml [deploy]"
    assert config.sources["web.build_command"] == "railway.toml [build]"
    json.dumps(data)  # JSON-able


def test_example_pr_environment_identity() -> None:
    config = load_project(EXAMPLE).environment("pr-123")
    assert (config.name, config.production, config.ephemeral, config.branch, config.base) == (
        "pr-123",
        False,
        True,
        None,
        "staging",
    )
    assert config.sources["variables.ENVIRONMENT"] == "branchyard.toml [environments.pr.variables]"
    assert config.sources["postgres.memory_mb"] == "branchyard.toml [environments.pr.services.postgres]"
    assert config.sources["web.memory_mb"] == "branchyard.toml [services.web]"


# --- precedence ------------------------------------------------------------------------------

RAILWAY_BASE = "[deploy]\nhealthcheckTimeout = {v}\n"
PR_LAYERS = [
    ("railway", "[deploy]\nhealthcheckTimeout = 11\n", 11, "railway.toml [deploy]"),
    ("branchyard", "[services.web]\nhealthcheckTimeout = 12\n", 12, "branchyard.toml [services.web]"),
    (
        "railway",
        "[environments.staging.deploy]\nhealthcheckTimeout = 13\n",
        13,
        "railway.toml [environments.staging.deploy]",
    ),
    (
        "branchyard",
        "[environments.staging.services.web]\nhealthcheckTimeout = 14\n",
        14,
        "branchyard.toml [environments.staging.services.web]",
    ),
    ("railway", "[environments.pr.deploy]\nhealthcheckTimeout = 15\n", 15, "railway.toml [environments.pr.deploy]"),
    (
        "branchyard",
        "[environments.pr.services.web]\nhealthcheckTimeout = 16\n",
        16,
        "branchyard.toml [environments.pr.services.web]",
    ),
    (
        "railway",
        "[environments.pr-7.deploy]\nhealthcheckTimeout = 17\n",
        17,
        "railway.toml [environments.pr-7.deploy]",
    ),
]
PR_DECLS = """
[project]
name = "app"
[environments.production]
branch = "main"
[environments.staging]
branch = "develop"
[environments.pr]
base = "staging"
"""


@pytest.mark.parametrize("top", range(len(PR_LAYERS) + 1))
def test_each_layer_wins_over_the_lower_ones_for_a_preview(tmp_path: Path, top: int) -> None:
    layers = PR_LAYERS[:top]
    railway = "".join(text for file, text, _, _ in layers if file == "railway")
    branchyard = PR_DECLS + "".join(text for file, text, _, _ in layers if file == "branchyard")
    project(tmp_path, branchyard_toml=branchyard, railway_toml=railway)
    config = load_project(tmp_path).environment("pr-7")
    value, source = (layers[-1][2], layers[-1][3]) if layers else (300, "default")
    assert config.web.healthcheck_timeout == value
    assert config.sources["web.healthcheck_timeout"] == source


BASE_CHAIN_LAYERS = [
    ("railway", "[deploy]\nnumReplicas = 2\n", 2, "railway.toml [deploy]"),
    ("branchyard", "[services.web]\nreplicas = 3\n", 3, "branchyard.toml [services.web]"),
    (
        "railway",
        "[environments.production.deploy]\nnumReplicas = 4\n",
        4,
        "railway.toml [environments.production.deploy]",
    ),
    (
        "branchyard",
        "[environments.production.services.web]\nreplicas = 5\n",
        5,
        "branchyard.toml [environments.production.services.web]",
    ),
    ("railway", "[environments.qa.deploy]\nnumReplicas = 6\n", 6, "railway.toml [environments.qa.deploy]"),
    (
        "branchyard",
        "[environments.qa.services.web]\nreplicas = 7\n",
        7,
        "branchyard.toml [environments.qa.services.web]",
    ),
]
CHAIN_DECLS = """
[project]
name = "app"
[environments.production]
branch = "main"
[environments.qa]
base = "production"
"""


@pytest.mark.parametrize("top", range(len(BASE_CHAIN_LAYERS) + 1))
def test_each_layer_wins_for_an_environment_with_a_base(tmp_path: Path, top: int) -> None:
    layers = BASE_CHAIN_LAYERS[:top]
    railway = "".join(text for file, text, _, _ in layers if file == "railway")
    branchyard = CHAIN_DECLS + "".join(text for file, text, _, _ in layers if file == "branchyard")
    project(tmp_path, branchyard_toml=branchyard, railway_toml=railway)
    config = load_project(tmp_path).environment("qa")
    value, source = (layers[-1][2], layers[-1][3]) if layers else (1, "default")
    assert config.web.replicas == value
    assert config.sources["web.replicas"] == source


def test_base_of_base_applies_before_the_base(tmp_path: Path) -> None:
    project(
        tmp_path,
        branchyard_toml="""
        [project]
        name = "app"
        [environments.production]
        branch = "main"
        [environments.production.variables]
        A = "production"
        B = "production"
        C = "production"
        [environments.staging]
        base = "production"
        [environments.staging.variables]
        B = "staging"
        C = "staging"
        [environments.qa]
        base = "staging"
        [environments.qa.variables]
        C = "qa"
        """,
    )
    config = load_project(tmp_path).environment("qa")
    assert config.variables == {"A": "production", "B": "staging", "C": "qa"}
    assert config.sources["variables.B"] == "branchyard.toml [environments.staging.variables]"


def test_variables_precedence_and_unset(tmp_path: Path) -> None:
    project(
        tmp_path,
        branchyard_toml="""
        [project]
        name = "app"
        [variables]
        SHARED = "shared"
        LEVEL = "shared"
        DEBUG = false
        WORKERS = 4
        RATIO = 0.5
        [environments.production]
        branch = "main"
        [environments.staging]
        branch = "develop"
        [environments.staging.variables]
        LEVEL = "staging"
        REDIS_URL = "${{Redis.REDIS_URL}}"
        [environments.pr]
        base = "staging"
        unset_variables = ["REDIS_URL", "NOT_SET_ANYWHERE"]
        [environments.pr.variables]
        LEVEL = "pr"
        """,
    )
    spec = load_project(tmp_path)
    assert spec.environment("staging").variables == {
        "SHARED": "shared",
        "LEVEL": "staging",
        "DEBUG": "false",
        "WORKERS": "4",
        "RATIO": "0.5",
        "REDIS_URL": "${{Redis.REDIS_URL}}",
    }
    preview = spec.environment("pr-1")
    assert preview.variables == {"SHARED": "shared", "LEVEL": "pr", "DEBUG": "false", "WORKERS": "4", "RATIO": "0.5"}
    assert preview.sources["variables.LEVEL"] == "branchyard.toml [environments.pr.variables]"
    assert preview.sources["variables.SHARED"] == "branchyard.toml [variables]"
    assert "variables.REDIS_URL" not in preview.sources


def test_services_switch_on_and_off_by_layer(tmp_path: Path) -> None:
    project(
        tmp_path,
        branchyard_toml="""
        [project]
        name = "app"
        [services.db]
        type = "postgres"
        name = "Db"
        memory = "1 GB"
        [environments.production]
        branch = "main"
        [environments.production.services.cache]
        type = "redis"
        [environments.staging]
        [environments.staging.services.db]
        enabled = false
        """,
    )
    spec = load_project(tmp_path)
    production = spec.environment("production")
    assert production.postgres is not None and production.postgres.name == "Db"
    assert production.postgres.memory_mb == 1024
    assert production.sources["postgres.memory_mb"] == "branchyard.toml [services.db]"
    assert production.redis is not None and production.redis.name == "Redis"
    assert production.sources["redis.name"] == "default"
    staging = spec.environment("staging")
    assert staging.postgres is None and staging.redis is None
    assert not any(key.startswith(("postgres.", "redis.")) for key in staging.sources)


# --- railway.toml / railway.json as they come ------------------------------------------------


def test_railway_json_with_comments_trailing_commas_and_schema(tmp_path: Path) -> None:
    project(
        tmp_path,
        branchyard_toml=MINIMAL,
        railway_json="""
        {
          // Railway's config, as exported from the dashboard
          "$schema": "https://railway.com/railway.schema.json",
          "build": {
            "builder": "nixpacks", /* any case */
            "buildCommand": "pip install -r requirements.txt // not a comment",
          },
          "deploy": {
            "startCommand": "gunicorn app:app -b 0.0.0.0:${PORT:-8000}",
            "healthcheckTimeout": "100",
            "restartPolicyType": "on_failure",
            "restartPolicyMaxRetries": "5",
            "preDeployCommand": ["python manage.py migrate", "python manage.py check"],
            "drainingSeconds": 15,
            "deploymentOverlapSeconds": 30.0,
            "sleepApplication": "False",
            "cronSchedule": null,
            "multiRegionConfig": {"us-west2": {"numReplicas": 2}, "europe-west4": {"numReplicas": 1}, "asia": null},
          },
        }
        """,
    )
    spec = load_project(tmp_path)
    assert spec.warnings == ()
    assert spec.files == ("branchyard.toml", "railway.json")
    web = spec.environment("production").web
    assert web.build_command == "pip install -r requirements.txt // not a comment"
    assert web.start_command == "gunicorn app:app -b 0.0.0.0:${PORT:-8000}"
    assert web.healthcheck_timeout == 100
    assert web.restart_policy_type == "ON_FAILURE"
    assert web.restart_policy_max_retries == 5
    assert web.pre_deploy_command == ("python manage.py migrate", "python manage.py check")
    assert (web.draining_seconds, web.overlap_seconds, web.sleep_application) == (15, 30, False)
    assert web.cron_schedule is None
    assert web.replicas == 3
    assert spec.ignored == (
        'railway.json: build.builder = "nixpacks" is ignored (branchyard builds with a virtualenv)',
        "railway.json: deploy.multiRegionConfig: the regions are ignored (branchyard runs on your own machines); "
        "their numReplicas add up to 3 replicas",
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"ON_FAILURE"', "ON_FAILURE"),
        ('"on_failure"', "ON_FAILURE"),
        ('"On_Failure"', "ON_FAILURE"),
        ('"on-failure"', "ON_FAILURE"),
        ('"always"', "ALWAYS"),
        ('" never "', "NEVER"),
    ],
)
def test_restart_policy_in_any_case(tmp_path: Path, value: str, expected: str) -> None:
    project(tmp_path, branchyard_toml=MINIMAL, railway_toml=f"[deploy]\nrestartPolicyType = {value}\n")
    assert load_project(tmp_path).environment("production").web.restart_policy_type == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"python manage.py migrate"', ("python manage.py migrate",)),
        ('["alembic upgrade head", "python seed.py"]', ("alembic upgrade head", "python seed.py")),
        ('""', ()),
        ("[]", ()),
    ],
)
def test_pre_deploy_command_string_or_list(tmp_path: Path, value: str, expected: tuple[str, ...]) -> None:
    project(tmp_path, branchyard_toml=MINIMAL, railway_toml=f"[deploy]\npreDeployCommand = {value}\n")
    assert load_project(tmp_path).environment("production").web.pre_deploy_command == expected


def test_numreplicas_wins_over_multi_region_config_in_the_same_table(tmp_path: Path) -> None:
    project(
        tmp_path,
        branchyard_toml=MINIMAL,
        railway_toml="""
        [deploy]
        numReplicas = 1
        multiRegionConfig = { us-west2 = { numReplicas = 4 } }
        """,
    )
    assert load_project(tmp_path).environment("production").web.replicas == 1


def test_json_null_resets_to_the_default(tmp_path: Path) -> None:
    project(
        tmp_path,
        branchyard_toml=MINIMAL,
        railway_json="""
        {"deploy": {"healthcheckTimeout": 50},
         "environments": {"production": {"deploy": {"healthcheckTimeout": null}}}}
        """,
    )
    config = load_project(tmp_path).environment("production")
    assert config.web.healthcheck_timeout == 300
    assert config.sources["web.healthcheck_timeout"] == "railway.json [environments.production.deploy]"


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"railway.toml": '[deploy]\nstartCommand = "a"\nstartCommand = "b"\n'},
            "railway.toml: invalid TOML: Cannot overwrite a value (at line 3, column 19)",
        ),
        (
            {"railway.toml": "[deploy]\n[deploy]\n"},
            "railway.toml: invalid TOML: Cannot declare ('deploy',) twice (at line 2, column 8)",
        ),
        (
            {"railway.json": '{\n  "deploy": {\n    "startCommand": "a",\n    "startCommand": "b"\n  }\n}\n'},
            'railway.json: invalid JSON: duplicate key "startCommand" (line 4)',
        ),
        (
            {"railway.json": '{\n  "deploy": {"startCommand": "a"}\n  "build": {}\n}\n'},
            "railway.json: invalid JSON: Expecting ',' delimiter (line 3, column 3)",
        ),
        ({"railway.json": "[1, 2]"}, "railway.json: invalid JSON: expected an object at the top level"),
        ({"railway.json": ""}, "railway.json: invalid JSON: Expecting value (line 1, column 1)"),
        (
            {"branchyard.toml": '[project]\nname = "app"\nname = "b"\n'},
            "branchyard.toml: invalid TOML: Cannot overwrite a value (at line 3, column 11)",
        ),
    ],
)
def test_invalid_syntax_and_duplicate_keys(tmp_path: Path, files: dict[str, str], message: str) -> None:
    project(tmp_path, {"branchyard.toml": MINIMAL, **files})
    assert load_error(tmp_path) == message


def test_not_utf8(tmp_path: Path) -> None:
    project(tmp_path, branchyard_toml=MINIMAL)
    (tmp_path / "railway.toml").write_bytes(b"[deploy]\nstartCommand = \"caf\xe9\"\n")
    assert load_error(tmp_path) == "railway.toml: not UTF-8 text"


@pytest.mark.parametrize(
    ("railway_toml", "message"),
    [
        (
            '[build]\nbuilder = "NIXPACKS"\n\n[deploy]\nstartCommand = "x"\nhealthcheckPath = "/health"\nhealthcheckTimeout = "abc"\n',
            'railway.toml: deploy.healthcheckTimeout: expected integer seconds, got "abc" (line 7)',
        ),
        (
            "[deploy]\nhealthcheckTimeout = 0\n",
            "railway.toml: deploy.healthcheckTimeout: expected integer seconds of at least 1, got 0 (line 2)",
        ),
        (
            "[deploy]\nhealthcheckTimeout = 1.5\n",
            "railway.toml: deploy.healthcheckTimeout: expected integer seconds, got 1.5 (line 2)",
        ),
        (
            "[deploy]\nhealthcheckTimeout = true\n",
            "railway.toml: deploy.healthcheckTimeout: expected integer seconds, got true (line 2)",
        ),
        (
            '[deploy]\nrestartPolicyType = "sometimes"\n',
            'railway.toml: deploy.restartPolicyType: expected one of ON_FAILURE, ALWAYS, NEVER, got "sometimes" (line 2)',
        ),
        (
            "[deploy]\nnumReplicas = 0\n",
            "railway.toml: deploy.numReplicas: expected a whole number of at least 1, got 0 (line 2)",
        ),
        (
            '[deploy]\nhealthcheckPath = "health"\n',
            'railway.toml: deploy.healthcheckPath: expected a path starting with "/", got "health" (line 2)',
        ),
        (
            "[deploy]\nstartCommand = 42\n",
            "railway.toml: deploy.startCommand: expected a command string, got 42 (line 2)",
        ),
        (
            "[deploy]\npreDeployCommand = [1, 2]\n",
            "railway.toml: deploy.preDeployCommand: expected a command string or a list of command strings, got [1, 2] (line 2)",
        ),
        (
            '[deploy]\nsleepApplication = "sometimes"\n',
            'railway.toml: deploy.sleepApplication: expected true or false, got "sometimes" (line 2)',
        ),
        (
            '[deploy]\ncronSchedule = "daily"\n',
            'railway.toml: deploy.cronSchedule: expected a cron expression with 5 fields like "0 3 * * *", got "daily" (line 2)',
        ),
        (
            '[build]\nwatchPatterns = "src/**"\nbuildCommand = ["a"]\n',
            'railway.toml: build.buildCommand: expected a command string, got ["a"] (line 3)',
        ),
        ('deploy = "uvicorn"\n', 'railway.toml: deploy: expected a table, got "uvicorn" (line 1)'),
        (
            '[environments.staging.deploy]\nstartCommand = "a"\n[environments.production.deploy]\nhealthcheckTimeout = "soon"\n',
            'railway.toml: environments.production.deploy.healthcheckTimeout: expected integer seconds, got "soon" (line 4)',
        ),
        (
            "[deploy]\nmultiRegionConfig = { us-west2 = { numReplicas = \"two\" } }\n",
            'railway.toml: deploy.multiRegionConfig.us-west2.numReplicas: expected a whole number, got "two" (line 2)',
        ),
        (
            "[deploy]\nmultiRegionConfig = { us-west2 = { } }\n",
            "railway.toml: deploy.multiRegionConfig.us-west2: expected a table with numReplicas (line 2)",
        ),
        (
            "[deploy.multiRegionConfig.us-west2]\nnumReplicas = 0\n",
            "railway.toml: deploy.multiRegionConfig: expected numReplicas adding up to at least 1 over all regions (line 1)",
        ),
    ],
)
def test_railway_value_errors(tmp_path: Path, railway_toml: str, message: str) -> None:
    project(tmp_path, branchyard_toml=MINIMAL, railway_toml=railway_toml)
    assert load_error(tmp_path) == message


def test_railway_json_value_error_has_its_line(tmp_path: Path) -> None:
    project(
        tmp_path,
        branchyard_toml=MINIMAL,
        railway_json="""
        {
          "build": {"buildCommand": "make"},
          "environments": {
            "production": {
              "deploy": {
                "healthcheckTimeout": "abc"
              }
            }
          }
        }
        """,
    )
    assert load_error(tmp_path) == (
        'railway.json: environments.production.deploy.healthcheckTimeout: expected integer seconds, got "abc" (line 6)'
    )


def test_railway_json_lines_survive_comments(tmp_path: Path) -> None:
    project(
        tmp_path,
        branchyard_toml=MINIMAL,
        railway_json="""
        {
          /* a block
             comment */
          "deploy": { // why not
            "numReplicas": "many",
          },
        }
        """,
    )
    assert load_error(tmp_path) == 'railway.json: deploy.numReplicas: expected a whole number, got "many" (line 5)'


RAILWAY_WITH_TYPOS = """
[build]
buildCommand = "pip install -r requirements.txt"
nixpacksPlan = { phases = { setup = { nixPkgs = ["python311", "postgresql", "gcc", "libffi", "openssl"] } } }

[deploy]
healtcheckPath = "/health"
region = "us-west2"

[environments.stagin.deploy]
numReplicas = 1

[environments.production]
deploy = { startCommand = "y" }
"""


def test_unknown_keys_are_warnings_with_did_you_mean(tmp_path: Path) -> None:
    branchyard = MINIMAL + '[environments.production]\nbranch = "main"\n[environments.staging]\n'
    project(tmp_path, branchyard_toml=branchyard, railway_toml=RAILWAY_WITH_TYPOS)
    spec = load_project(tmp_path)
    assert spec.warnings == (
        'railway.toml: deploy.healtcheckPath: unknown key (did you mean "healthcheckPath"?)',
        'railway.toml: environments.stagin: unknown environment (did you mean "staging"?)',
    )
    assert spec.ignored == (
        "railway.toml: build.nixpacksPlan = {...} is ignored (branchyard builds with a virtualenv)",
        'railway.toml: deploy.region = "us-west2" is ignored (branchyard runs on your own machines)',
    )
    assert spec.environment("production").web.start_command == "y"


@pytest.mark.parametrize("how", ["argument", "file"])
def test_strict_turns_the_first_warning_into_an_error(tmp_path: Path, how: str) -> None:
    envs = '[environments.production]\nbranch = "main"\n[environments.staging]\n'
    branchyard = MINIMAL + ("strict = true\n" if how == "file" else "") + envs
    project(tmp_path, branchyard_toml=branchyard, railway_toml=RAILWAY_WITH_TYPOS)
    kwargs = {"strict": True} if how == "argument" else {}
    first = 'railway.toml: deploy.healtcheckPath: unknown key (did you mean "healthcheckPath"?)'
    assert load_error(tmp_path, **kwargs) == first
    assert check(tmp_path, strict=True if how == "argument" else None) == [
        first,
        'railway.toml: environments.stagin: unknown environment (did you mean "staging"?)',
        "staging: no start command: set deploy.startCommand in railway.toml or a web: line in Procfile",
    ]


def test_strict_false_argument_overrides_the_file(tmp_path: Path) -> None:
    project(tmp_path, branchyard_toml=MINIMAL + "strict = true\n", railway_toml="[deploy]\nstartComand = 'x'\n")
    spec = load_project(tmp_path, strict=False)
    assert spec.strict is False
    assert spec.warnings == ('railway.toml: deploy.startComand: unknown key (did you mean "startCommand"?)',)


# An unknown section of a Railway file is an error in every mode: every setting in it would be ignored.
@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"railway.toml": '[deploys]\nstartCommand = "x"\n'},
         "railway.toml: unknown section [deploys] (did you mean [deploy]?) (line 1)"),
        ({"railway.toml": '[deploy]\nstartCommand = "x"\n\n[Build]\nbuildCommand = "y"\n'},
         "railway.toml: unknown section [Build] (did you mean [build]?) (line 4)"),
        ({"railway.toml": '[deploy]\nstartCommand = "x"\n[env]\nFOO = "bar"\n'},
         "railway.toml: unknown section [env] (line 3)"),
        ({"railway.toml": '[enviroments.production.deploy]\nstartCommand = "x"\n'},
         "railway.toml: unknown section [enviroments] (did you mean [environments]?) (line 1)"),
        ({"railway.toml": '[environments.production.deploys]\nnumReplicas = 2\n'},
         "railway.toml: unknown section [environments.production.deploys] "
         "(did you mean [environments.production.deploy]?) (line 1)"),
        ({"railway.toml": '[environments.production]\ndeploy = { startCommand = "y" }\nbiuld = {}\n'},
         "railway.toml: unknown section [environments.production.biuld] "
         "(did you mean [environments.production.build]?) (line 3)"),
        ({"railway.json": '{\n  "build": {},\n  "deploys": {"startCommand": "x"}\n}\n'},
         'railway.json: unknown section "deploys" (did you mean "deploy"?) (line 3)'),
        ({"railway.json": '{"environments": {"production": {\n  "deplyo": {"numReplicas": 2}}}}\n'},
         'railway.json: unknown section "environments.production.deplyo" '
         '(did you mean "environments.production.deploy"?) (line 2)'),
    ],
)
@pytest.mark.parametrize("strict", [None, False, True])
def test_an_unknown_railway_section_is_an_error_naming_it(tmp_path: Path, files: dict[str, str], message: str,
                                                          strict: bool | None) -> None:
    project(tmp_path, files, branchyard_toml=MINIMAL)
    assert load_error(tmp_path, strict=strict) == message
    assert check(tmp_path, strict=strict) == [message]


def test_unknown_top_level_key_that_is_not_a_table(tmp_path: Path) -> None:
    project(tmp_path, branchyard_toml=MINIMAL, railway_toml='startCommand = "x"\n')
    assert load_project(tmp_path).warnings == ("railway.toml: startCommand: unknown key",)


# --- where the railway config lives ------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "files"),
    [
        ("backend/railway.toml", {"backend/railway.toml": '[deploy]\nstartCommand = "from-file"\n'}),
        ("/backend/railway.toml", {"backend/railway.toml": '[deploy]\nstartCommand = "from-file"\n'}),
        ("apps/api/railway.json", {"apps/api/railway.json": '{"deploy": {"startCommand": "from-file"}}'}),
        ("railway.worker.toml", {"railway.worker.toml": '[deploy]\nstartCommand = "from-file"\n'}),
    ],
)
def test_railway_path_in_branchyard_toml(tmp_path: Path, path: str, files: dict[str, str]) -> None:
    project(
        tmp_path,
        files,
        branchyard_toml=MINIMAL + f'railway = "{path}"\n',
        railway_toml='[deploy]\nstartCommand = "not this one"\n',
    )
    spec = load_project(tmp_path)
    config = spec.environment("production")
    assert config.web.start_command == "from-file"
    relative = path.lstrip("/")
    assert spec.files == ("branchyard.toml", relative)
    assert config.sources["web.start_command"] == f"{relative} [deploy]"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("backend/railway.toml", "branchyard.toml: project.railway: no file 'backend/railway.toml' in the project (line 3)"),
        ("../railway.toml", "branchyard.toml: project.railway: path '../railway.toml' climbs out with '..' (line 3)"),
        ("railway.yaml", "branchyard.toml: project.railway: expected a .toml or .json file, got 'railway.yaml' (line 3)"),
    ],
)
def test_railway_path_errors(tmp_path: Path, path: str, message: str) -> None:
    project(tmp_path, branchyard_toml=MINIMAL + f'railway = "{path}"\n')
    assert load_error(tmp_path) == message


def test_both_railway_files_is_an_error(tmp_path: Path) -> None:
    project(tmp_path, branchyard_toml=MINIMAL, railway_toml="", railway_json="{}")
    assert load_error(tmp_path) == (
        'railway.toml and railway.json both exist: keep one, or pick one with [project] railway = "..." '
        "in branchyard.toml"
    )


def test_no_branchyard_toml_uses_the_directory_name_and_production_on_main(tmp_path: Path) -> None:
    root = project(tmp_path / "My_App", railway_toml='[deploy]\nstartCommand = "python app.py"\n')
    spec = load_project(root)
    assert spec.name == "my-app"
    assert spec.environments == {"production": EnvironmentDecl("production", branch="main", production=True,
                                                               protected=True)}
    assert spec.preview is None
    assert spec.files == ("railway.toml",)
    assert spec.environment("production").web.start_command == "python app.py"


def test_missing_directory(tmp_path: Path) -> None:
    assert load_error(tmp_path / "nope") == f"{tmp_path / 'nope'}: no such directory"


# --- Procfile --------------------------------------------------------------------------------


def test_procfile_gives_the_start_command_when_no_layer_does(tmp_path: Path) -> None:
    project(
        tmp_path,
        branchyard_toml=MINIMAL,
        railway_toml='[build]\nbuildCommand = "pip install ."\n',
        Procfile="# processes\nrelease: python migrate.py\nweb: uvicorn main:app --port ${PORT:-8000}\nworker: celery\n",
    )
    spec = load_project(tmp_path)
    config = spec.environment("production")
    assert config.web.start_command == "uvicorn main:app --port ${PORT:-8000}"
    assert config.sources["web.start_command"] == "Procfile"
    assert spec.files == ("branchyard.toml", "railway.toml", "Procfile")


def test_start_command_in_any_layer_beats_the_procfile(tmp_path: Path) -> None:
    project(tmp_path, branchyard_toml=MINIMAL, railway_toml='[deploy]\nstartCommand = "a"\n', Procfile="web: b\n")
    assert load_project(tmp_path).environment("production").web.start_command == "a"


def test_procfile_is_read_in_the_source_root(tmp_path: Path) -> None:
    project(
        tmp_path,
        branchyard_toml=MINIMAL + '[services.web]\nroot = "./backend/"\n',
        Procfile="web: wrong\n",
        files={"backend/Procfile": "web: gunicorn api:app\n"},
    )
    config = load_project(tmp_path).environment("production")
    assert config.web.root_dir == "backend"
    assert config.web.start_command == "gunicorn api:app"
    assert config.sources["web.start_command"] == "backend/Procfile"


def test_no_start_command_is_reported_by_check(tmp_path: Path) -> None:
    project(tmp_path, branchyard_toml=MINIMAL, Procfile="worker: celery\n")
    assert load_project(tmp_path).environment("production").web.start_command is None
    assert check(tmp_path) == [
        "production: no start command: set deploy.startCommand in railway.toml or a web: line in Procfile"
    ]


# --- branchyard.toml -----------------------------------------------------------------------


def test_branchyard_toml_unknown_keys_warn(tmp_path: Path) -> None:
    project(
        tmp_path,
        branchyard_toml="""
        [project]
        name = "app"
        nmae = "x"
        [servces.web]
        [services.web]
        memroy = "1 GB"
        [services.postgres]
        enable = false
        [environments.production]
        brnch = "main"
        [environments.production.variables]
        A = "1"
        """,
    )
    assert load_project(tmp_path).warnings == (
        "branchyard.toml: unknown section [servces] (did you mean [services]?)",
        'branchyard.toml: project.nmae: unknown key (did you mean "name"?)',
        'branchyard.toml: services.web.memroy: unknown key (did you mean "memory"?)',
        'branchyard.toml: services.postgres.enable: unknown key (did you mean "enabled"?)',
        'branchyard.toml: environments.production.brnch: unknown key (did you mean "branch"?)',
    )


PROD = '[environments.production]\nbranch = "main"\n'


@pytest.mark.parametrize(
    ("branchyard", "message"),
    [
        ("[project]\n", 'branchyard.toml: project: missing name (add name = "myapp" under [project]) (line 1)'),
        (
            '[project]\nname = "Yoto App"\n',
            "branchyard.toml: project.name: project name 'Yoto App' is not allowed: use 1-40 lowercase letters, "
            "digits and dashes, starting and ending with a letter or digit (line 2)",
        ),
        ('[project]\nname = 5\n', "branchyard.toml: project.name: expected a string, got 5 (line 2)"),
        (
            MINIMAL + 'domain = "exa mple.com"\n',
            "branchyard.toml: project.domain: domain 'exa mple.com' is not a valid domain name (line 3)",
        ),
        (MINIMAL + 'strict = "yes"\n', 'branchyard.toml: project.strict: expected true or false, got "yes" (line 3)'),
        (
            MINIMAL + '[github]\nrepository = "yoto"\n',
            'branchyard.toml: github.repository: expected "owner/name", got "yoto" (line 4)',
        ),
        (
            MINIMAL + "[environments.staging]\n",
            'branchyard.toml: environments: expected exactly one production environment: name one "production" '
            "or set production = true (line 3)",
        ),
        (
            MINIMAL + PROD + "[environments.live]\nproduction = true\n",
            'branchyard.toml: environments: expected exactly one production environment (found: production, live): '
            'name one "production" or set production = true (line 3)',
        ),
        (
            MINIMAL + "[environments.Prod]\nproduction = true\n",
            "branchyard.toml: environments.Prod: environment name 'Prod' is not allowed: use 1-40 lowercase "
            "letters, digits and dashes, starting and ending with a letter or digit (line 3)",
        ),
        (
            MINIMAL + PROD + "[environments.pr-5]\n",
            "branchyard.toml: environments.pr-5: names like pr-<number> are kept for preview environments (line 5)",
        ),
        (
            MINIMAL + PROD + '[environments.pr]\nbase = "stagin"\n',
            "branchyard.toml: environments.pr.base: no environment 'stagin' to use as a base (declared: production) (line 6)",
        ),
        (
            MINIMAL + PROD + '[environments.qa]\nbase = "pr"\n[environments.pr]\n',
            "branchyard.toml: environments.qa.base: no environment 'pr' to use as a base (declared: production, qa) (line 6)",
        ),
        (
            MINIMAL + PROD + '[environments.a]\nbase = "b"\n[environments.b]\nbase = "a"\n',
            "branchyard.toml: environments.a.base: base environments form a cycle: a -> b -> a (line 6)",
        ),
        (
            MINIMAL + PROD + '[environments.staging]\nbranch = "main"\n',
            "branchyard.toml: environments.staging.branch: branch 'main' already deploys environment 'production' (line 6)",
        ),
        (
            MINIMAL + '[environments.production]\nbranch = "a..b"\n',
            'branchyard.toml: environments.production.branch: "a..b" is not a valid git branch name (line 4)',
        ),
        (
            MINIMAL + PROD + '[environments.staging]\nbranches = ["develop"]\n',
            'branchyard.toml: environments.staging.branches: only the pr template takes branch patterns '
            '(use branch = "...") (line 6)',
        ),
        (
            MINIMAL + PROD + '[environments.staging]\ntrigger = "branch"\n',
            "branchyard.toml: environments.staging.trigger: only the pr template takes a trigger (line 6)",
        ),
        (
            MINIMAL + PROD + '[environments.pr]\nbranch = "feature/x"\n',
            'branchyard.toml: environments.pr.branch: the pr template takes branches = ["pattern", ...], '
            "not branch (line 6)",
        ),
        (
            MINIMAL + PROD + '[environments.pr]\ntrigger = "push"\n',
            'branchyard.toml: environments.pr.trigger: expected one of pr, branch, got "push" (line 6)',
        ),
        (
            MINIMAL + PROD + '[environments.staging]\nforks = "always"\n',
            "branchyard.toml: environments.staging.forks: only the pr template takes forks (line 6)",
        ),
        (
            MINIMAL + PROD + '[environments.pr]\nforks = "sometimes"\n',
            'branchyard.toml: environments.pr.forks: expected one of approve, never, always, got "sometimes" (line 6)',
        ),
        (
            MINIMAL + PROD + '[environments.pr]\nbots = "yes"\n',
            'branchyard.toml: environments.pr.bots: expected true or false, got "yes" (line 6)',
        ),
        (
            MINIMAL + PROD + '[environments.pr]\nmaxPreviews = 0\n',
            "branchyard.toml: environments.pr.maxPreviews: expected a whole number of at least 1, got 0 (line 6)",
        ),
        (
            MINIMAL + PROD + '[environments.pr]\nexpireAfterDays = -1\n',
            "branchyard.toml: environments.pr.expireAfterDays: expected a number of days above 0, got -1 (line 6)",
        ),
        (
            MINIMAL + PROD + '[environments.pr]\nevict = "newest"\n',
            'branchyard.toml: environments.pr.evict: expected one of refuse, oldest, got "newest" (line 6)',
        ),
        (
            MINIMAL + '[environments.production]\nephemeral = true\n',
            "branchyard.toml: environments.production.ephemeral: the production environment cannot be ephemeral (line 4)",
        ),
        (
            MINIMAL + '[environments.pr]\nproduction = true\n',
            "branchyard.toml: environments.pr.production: the pr template cannot be production (line 4)",
        ),
        (
            MINIMAL + PROD + '[environments.production.services.web]\nmemory = "lots"\n',
            'branchyard.toml: environments.production.services.web.memory: expected a size like "512 MB" or "2 GB", '
            'got "lots" (line 6)',
        ),
        (
            MINIMAL + '[services.web]\ncpu = "fast"\n',
            'branchyard.toml: services.web.cpu: expected a number of vCPUs like 0.5 or 2, got "fast" (line 4)',
        ),
        (
            MINIMAL + '[services.postgres]\nbackups = "weekly"\n',
            'branchyard.toml: services.postgres.backups: expected one of daily, none, got "weekly" (line 4)',
        ),
        (
            MINIMAL + '[services.postgres]\nname = "my db"\n',
            'branchyard.toml: services.postgres.name: expected a service name of letters, digits, "-" and "_" '
            'like "Postgres", got "my db" (line 4)',
        ),
        (
            MINIMAL + "[services.worker]\n",
            'branchyard.toml: services.worker: unknown service: name the table web, postgres or redis, '
            'or set type = "..." (line 3)',
        ),
        (
            MINIMAL + '[services.db]\ntype = "mysql"\n',
            'branchyard.toml: services.db.type: expected one of web, postgres, redis, got "mysql" (line 4)',
        ),
        (
            MINIMAL + '[services.postgres]\n[services.db]\ntype = "postgres"\n',
            "branchyard.toml: services.postgres: only one postgres service is supported (also declared: db) (line 3)",
        ),
        (
            MINIMAL + '[services.web]\nroot = "../other"\n',
            'branchyard.toml: services.web.root: expected a directory inside the repository, got "../other" (line 4)',
        ),
        (
            MINIMAL + '[services.web]\nhealthcheckInterval = 0\n',
            "branchyard.toml: services.web.healthcheckInterval: expected integer seconds of at least 1, got 0 (line 4)",
        ),
        (
            MINIMAL + PROD + '[environments.production.services.web]\nhealthcheckFailures = 0\n',
            "branchyard.toml: environments.production.services.web.healthcheckFailures: expected a whole number of at "
            "least 1, got 0 (line 6)",
        ),
        (
            MINIMAL + '[services.web]\nhealthcheckFailures = "three"\n',
            'branchyard.toml: services.web.healthcheckFailures: expected a whole number, got "three" (line 4)',
        ),
        (
            MINIMAL + '[variables]\n1BAD = "x"\n',
            'branchyard.toml: variables.1BAD: "1BAD" is not a variable name (use letters, digits and _, not starting '
            "with a digit) (line 4)",
        ),
        (
            MINIMAL + PROD + '[environments.pr]\nunset_variables = ["OK", "NOT-OK"]\n',
            'branchyard.toml: environments.pr.unset_variables: "NOT-OK" is not a variable name (use letters, digits '
            "and _, not starting with a digit) (line 6)",
        ),
        (
            MINIMAL + '[variables]\nHOSTS = ["a", "b"]\n',
            'branchyard.toml: variables.HOSTS: expected a string, number or boolean, got ["a", "b"] (line 4)',
        ),
        (
            MINIMAL + PROD + '[environments.pr]\nunset_variables = "REDIS_URL"\nbranches = 5\n',
            "branchyard.toml: environments.pr.branches: expected a list of strings, got 5 (line 7)",
        ),
        (
            "environments = 5\n" + MINIMAL,
            "branchyard.toml: environments: expected a table, got 5 (line 1)",
        ),
    ],
)
def test_branchyard_toml_errors(tmp_path: Path, branchyard: str, message: str) -> None:
    project(tmp_path, branchyard_toml=branchyard)
    assert load_error(tmp_path) == message


@pytest.mark.parametrize(
    ("branchyard", "interval", "failures"),
    [
        (MINIMAL + PROD, 5, 3),
        (MINIMAL + PROD + "[services.web]\nhealthcheckInterval = 2\nhealthcheckFailures = 4\n", 2, 4),
        (MINIMAL + "[services.web]\nhealthcheckInterval = 2\n" + PROD
         + "[environments.production.services.web]\nhealthcheckFailures = 1\n", 2, 1),
        (MINIMAL + "[services.web]\nhealthcheckInterval = 2\n" + PROD
         + "[environments.production.services.web]\nhealthcheckInterval = 10\n", 10, 3),
    ],
)
def test_liveness_keys_of_the_web_service(tmp_path: Path, branchyard: str, interval: int, failures: int) -> None:
    project(tmp_path, branchyard_toml=branchyard)
    web = load_project(tmp_path).environment("production").web
    assert (web.healthcheck_interval, web.healthcheck_failures) == (interval, failures)


# --- environments, branches, previews -------------------------------------------------------


def test_environment_lookup() -> None:
    spec = load_project(EXAMPLE)
    with pytest.raises(NotFound) as err:
        spec.environment("qa")
    assert str(err.value) == "unknown environment 'qa' (declared: production, staging, pr-*)"
    for name in ("pr-0", "pr-x", "feature-x", "PR-1"):
        with pytest.raises(NotFound):
            spec.environment(name)
    assert spec.environment("pr").name == "pr"
    assert spec.environment("pr-99").base == "staging"


def test_environment_for_branch_and_preview_matches() -> None:
    spec = load_project(EXAMPLE)
    assert spec.environment_for_branch("main") == "production"
    assert spec.environment_for_branch("develop") == "staging"
    assert spec.environment_for_branch("feature/add-mqtt") is None
    assert [spec.preview_matches(b) for b in ("feature/add-mqtt", "fix/auth-bug", "chore/x", "docs/x", "main")] == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_branch_triggered_previews(tmp_path: Path) -> None:
    project(tmp_path, branchyard_toml=MINIMAL + PROD + '[environments.pr]\ntrigger = "branch"\n')
    spec = load_project(tmp_path)
    assert spec.preview == PreviewDecl(patterns=("*",), base=None, trigger="branch")
    assert spec.preview_matches("anything/at-all") is True
    assert spec.preview_matches("main") is False  # production owns it
    assert spec.environment("feature-add-mqtt").ephemeral is True
    with pytest.raises(NotFound):
        spec.environment("Not Valid")


def test_preview_admission_settings(tmp_path: Path) -> None:
    project(tmp_path, branchyard_toml=MINIMAL + PROD + '[environments.pr]\nforks = "never"\nbots = true\n'
            'drafts = true\nmaxPreviews = 3\nexpireAfterDays = 0.5\nevict = "oldest"\n')
    spec = load_project(tmp_path)
    assert spec.preview == PreviewDecl(patterns=("*",), base=None, trigger="pr", forks="never", bots=True, drafts=True,
                                       max_previews=3, expire_after_days=0.5, evict="oldest")
    project(tmp_path, branchyard_toml=MINIMAL + PROD + "[environments.pr]\n")
    default = load_project(tmp_path).preview
    assert (default.forks, default.bots, default.drafts, default.max_previews, default.expire_after_days,
            default.evict) == ("approve", False, False, None, None, "refuse")


def test_no_preview_template(tmp_path: Path) -> None:
    project(tmp_path, branchyard_toml=MINIMAL + PROD, railway_toml="[environments.pr.deploy]\nnumReplicas = 1\n")
    spec = load_project(tmp_path)
    assert spec.preview is None
    assert spec.preview_matches("feature/x") is False
    assert spec.warnings == ("railway.toml: environments.pr: unknown environment",)
    with pytest.raises(NotFound) as err:
        spec.environment("pr-1")
    assert str(err.value) == "unknown environment 'pr-1' (declared: production)"


def test_spec_is_frozen() -> None:
    spec = load_project(EXAMPLE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.environment("production").web.replicas = 9  # type: ignore[misc]


# --- config check / show helpers --------------------------------------------------------------


def test_check_reports_references_to_services_an_environment_lacks(tmp_path: Path) -> None:
    project(
        tmp_path,
        branchyard_toml="""
        [project]
        name = "app"
        [variables]
        REDIS_URL = "${{Redis.REDIS_URL}}"
        DATABASE_URL = "${{ Postgres.DATABASE_URL }}"
        SECRET = "${{ secrets.X }}"
        [environments.production]
        branch = "main"
        [environments.production.services.redis]
        [environments.production.services.postgres]
        [environments.pr]
        """,
        railway_toml='[deploy]\nstartCommand = "run"\n',
    )
    assert check(tmp_path) == [
        "pr-*: variables.REDIS_URL refers to ${{Redis.REDIS_URL}}, but this environment has no Redis service",
        "pr-*: variables.DATABASE_URL refers to ${{ Postgres.DATABASE_URL }}, but this environment has no "
        "Postgres service",
    ]


def test_check_returns_a_load_error_as_its_only_problem(tmp_path: Path) -> None:
    project(tmp_path, branchyard_toml=MINIMAL, railway_toml="[deploy]\nnumReplicas = -1\n")
    assert check(tmp_path) == [
        "railway.toml: deploy.numReplicas: expected a whole number of at least 1, got -1 (line 2)"
    ]


def test_explain_lists_every_value_with_its_source() -> None:
    rows = explain(load_project(EXAMPLE).environment("pr-1"))
    as_dict = {key: (value, source) for key, value, source in rows}
    assert as_dict["web.start_command"] == ("uvicorn main:app --host 0.0.0.0 --port $PORT --workers ${WORKERS:-1}", "railway.toml [deploy]")
    assert as_dict["web.healthcheck_timeout"] == (100, "railway.toml [deploy]")
    assert as_dict["web.restart_policy_max_retries"] == (10, "default")
    assert as_dict["postgres.storage_mb"] == (1024, "branchyard.toml [environments.pr.services.postgres]")
    assert as_dict["variables.LOG_LEVEL"] == ("debug", "branchyard.toml [environments.pr.variables]")
    assert not any(key.startswith("redis.") for key in as_dict)
    assert as_dict["postgres.template_files"] == (("migrations", "alembic.ini", "manage.py", "db.py"),
                                                  "branchyard.toml [environments.pr.services.postgres]")
    assert rows[0][0] == "web.start_command"
    assert len(rows) == 20 + 7 + 8  # web (with healthcheckInterval, healthcheckFailures), postgres, variables
