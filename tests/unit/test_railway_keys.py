"""Every key Railway's config-as-code accepts is either honoured or named by `config check` with its reason (issue 17);
`cronSchedule` and `watchPatterns` are checked when the spec loads. Exact texts."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from branchyard.errors import SpecError
from branchyard.spec import load_project
from branchyard.spec.railway import BUILD_KEYS, DEPLOY_KEYS, IGNORED_BUILD, IGNORED_DEPLOY, MULTI_REGION

MINIMAL = '[project]\nname = "app"\n[environments.production]\nbranch = "main"\n'

# Railway's config-as-code reference (docs.railway.com/reference/config-as-code and railway.schema.json), by section.
RAILWAY_BUILD = {"builder", "watchPatterns", "buildCommand", "dockerfilePath", "nixpacksConfigPath", "nixpacksPlan",
                 "nixpacksVersion", "railpackVersion", "buildEnvironment"}
RAILWAY_DEPLOY = {"startCommand", "preDeployCommand", "numReplicas", "multiRegionConfig", "healthcheckPath",
                  "healthcheckTimeout", "restartPolicyType", "restartPolicyMaxRetries", "cronSchedule", "sleepApplication",
                  "overlapSeconds", "drainingSeconds", "region", "runtime", "useLegacyStacker", "ipv6EgressEnabled",
                  "limitOverride", "requiredMountPath"}


def _project(root: Path, railway_toml: str) -> Path:
    (root / "branchyard.toml").write_text(MINIMAL)
    (root / "railway.toml").write_text(textwrap.dedent(railway_toml).lstrip("\n"))
    return root


def test_every_railway_key_is_honoured_or_named():
    assert RAILWAY_BUILD <= set(BUILD_KEYS) | set(IGNORED_BUILD)
    assert RAILWAY_DEPLOY <= set(DEPLOY_KEYS) | set(IGNORED_DEPLOY) | {MULTI_REGION}
    assert not set(BUILD_KEYS) & set(IGNORED_BUILD) and not set(DEPLOY_KEYS) & set(IGNORED_DEPLOY)


def test_config_check_names_each_ignored_key_with_its_reason(tmp_path: Path):
    spec = load_project(_project(tmp_path, """
        [build]
        builder = "RAILPACK"
        dockerfilePath = "Dockerfile.web"
        nixpacksConfigPath = "nixpacks.toml"
        nixpacksPlan = { providers = ["python"] }
        nixpacksVersion = "1.29.1"
        railpackVersion = "0.2.2"
        buildEnvironment = "V3"
        watchPatterns = ["/app/**", "requirements.txt"]

        [deploy]
        startCommand = "python job.py"
        cronSchedule = "*/15 * * * *"
        region = "us-west2"
        runtime = "V2"
        useLegacyStacker = false
        ipv6EgressEnabled = true
        limitOverride = { containers = { cpu = 2 } }
        requiredMountPath = "/data"

        [deploy.multiRegionConfig.us-west2]
        numReplicas = 2
        [deploy.multiRegionConfig.europe-west4-drams3a]
        numReplicas = 1
        """))
    assert spec.warnings == ()
    virtualenv, one_host = "branchyard builds with a virtualenv", "branchyard runs on your own machines"
    assert spec.ignored == (
        f'railway.toml: build.builder = "RAILPACK" is ignored ({virtualenv})',
        f'railway.toml: build.dockerfilePath = "Dockerfile.web" is ignored ({virtualenv})',
        f'railway.toml: build.nixpacksConfigPath = "nixpacks.toml" is ignored ({virtualenv})',
        f'railway.toml: build.nixpacksPlan = {{"providers": ["python"]}} is ignored ({virtualenv})',
        f'railway.toml: build.nixpacksVersion = "1.29.1" is ignored ({virtualenv})',
        f'railway.toml: build.railpackVersion = "0.2.2" is ignored ({virtualenv})',
        f'railway.toml: build.buildEnvironment = "V3" is ignored ({virtualenv})',
        f'railway.toml: deploy.region = "us-west2" is ignored ({one_host})',
        f'railway.toml: deploy.runtime = "V2" is ignored ({one_host})',
        f"railway.toml: deploy.useLegacyStacker = false is ignored ({one_host})",
        f"railway.toml: deploy.ipv6EgressEnabled = true is ignored ({one_host})",
        'railway.toml: deploy.limitOverride = {"containers": {"cpu": 2}} is ignored (set memory and cpu in '
        "branchyard.toml [services.web])",
        'railway.toml: deploy.requiredMountPath = "/data" is ignored (volumes are not supported yet)',
        f"railway.toml: deploy.multiRegionConfig: the regions are ignored ({one_host}); their numReplicas add up to 3 "
        "replicas",
    )
    web = spec.environment("production").web
    assert (web.cron_schedule, web.watch_patterns, web.replicas) == ("*/15 * * * *", ("/app/**", "requirements.txt"), 3)


def test_multi_region_beside_num_replicas():
    root = Path(__import__("tempfile").mkdtemp())
    spec = load_project(_project(root, """
        [deploy]
        numReplicas = 4
        multiRegionConfig = { us-west2 = { numReplicas = 2 } }
        """))
    assert spec.ignored == ("railway.toml: deploy.multiRegionConfig: the regions are ignored (branchyard runs on your "
                            "own machines); numReplicas beside it is used instead",)
    assert spec.environment("production").web.replicas == 4


def test_honoured_keys_are_not_named(tmp_path: Path):
    spec = load_project(_project(tmp_path, """
        [build]
        buildCommand = "make"
        watchPatterns = "src/**"
        [deploy]
        startCommand = "python job.py"
        cronSchedule = " 0  3 * * * "
        """))
    assert spec.ignored == () and spec.warnings == ()
    web = spec.environment("production").web
    assert (web.cron_schedule, web.watch_patterns) == ("0 3 * * *", ("src/**",))


@pytest.mark.parametrize(
    ("railway_toml", "message"),
    [
        ('[deploy]\ncronSchedule = "61 * * * *"\n',
         'railway.toml: deploy.cronSchedule: expected a valid cron expression (minute hour day-of-month month '
         'day-of-week, UTC) like "0 3 * * *", got "61 * * * *" (line 2)'),
        ('[deploy]\ncronSchedule = "0 3 * * mon-fry"\n',
         'railway.toml: deploy.cronSchedule: expected a valid cron expression (minute hour day-of-month month '
         'day-of-week, UTC) like "0 3 * * *", got "0 3 * * mon-fry" (line 2)'),
        ('[deploy]\ncronSchedule = "0 0 3 * * *"\n',
         'railway.toml: deploy.cronSchedule: expected a cron expression with 5 fields like "0 3 * * *", '
         'got "0 0 3 * * *" (line 2)'),
        ('[environments.production.deploy]\ncronSchedule = 5\n',
         'railway.toml: environments.production.deploy.cronSchedule: expected a cron expression with 5 fields like '
         '"0 3 * * *", got 5 (line 2)'),
        ('[build]\nwatchPatterns = ["/app/**", "!"]\n',
         'railway.toml: build.watchPatterns: expected gitignore-style patterns like "/app/**" or "**/*.py", '
         'got "!" (line 2)'),
        ('[build]\nwatchPatterns = [3]\n',
         'railway.toml: build.watchPatterns: expected a list of strings, got [3] (line 2)'),
    ],
)
def test_cron_and_watch_pattern_errors(tmp_path: Path, railway_toml: str, message: str):
    _project(tmp_path, railway_toml)
    with pytest.raises(SpecError) as err:
        load_project(tmp_path)
    assert str(err.value) == message


def test_branchyard_toml_takes_them_too(tmp_path: Path):
    (tmp_path / "branchyard.toml").write_text(MINIMAL + '[services.web]\ncronSchedule = "*/5 * * * *"\n'
                                              'watchPatterns = ["app/**"]\n')
    web = load_project(tmp_path).environment("production").web
    assert (web.cron_schedule, web.watch_patterns) == ("*/5 * * * *", ("app/**",))
    (tmp_path / "branchyard.toml").write_text(MINIMAL + '[services.web]\ncronSchedule = "*/5 * * 13 *"\n')
    with pytest.raises(SpecError) as err:
        load_project(tmp_path)
    assert str(err.value).startswith("branchyard.toml: services.web.cronSchedule: expected a valid cron expression")
