"""cost.py (pure): the example app's three tiers priced by hand with the default table, the price table's parsing
and its one-line errors, the allocation read from a snapshot, and measured usage's interval rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from branchyard import cost
from branchyard.errors import BadInput
from branchyard.spec import load_project

APP = Path(__file__).resolve().parents[2] / "examples" / "yoto-smart-stream"

# Railway's default rates: $10 / GB of RAM / month, $20 / vCPU / month, $0.15 / GB of volume / month.
# examples/yoto-smart-stream/branchyard.toml, priced by hand:
#
# production: web 2 replicas × (1 GB, 1 vCPU); postgres 2 GB RAM, 10 GB storage; redis 512 MB
PRODUCTION = (
    2 * 1 * 10  # web RAM: 2 × 1 GB × $10 = $20
    + 2 * 1 * 20  # web vCPU: 2 × 1 vCPU × $20 = $40
    + 2 * 10  # postgres RAM: 2 GB × $10 = $20
    + 10 * 0.15  # postgres volume: 10 GB × $0.15 = $1.50
    + 0.5 * 10  # redis RAM: 512 MB = 0.5 GB × $10 = $5
)  # = $86.50
# staging: web 1 replica × (512 MB, 0.5 vCPU) from [services.web]; postgres 1 GB / 5 GB; redis 256 MB
STAGING = (
    1 * 0.5 * 10  # web RAM: 0.5 GB × $10 = $5
    + 1 * 0.5 * 20  # web vCPU: 0.5 vCPU × $20 = $10
    + 1 * 10  # postgres RAM: 1 GB × $10 = $10
    + 5 * 0.15  # postgres volume: 5 GB × $0.15 = $0.75
    + 0.25 * 10  # redis RAM: 256 MB = 0.25 GB × $10 = $2.50
)  # = $28.25
# a preview (pr-7): staging's web (512 MB, 0.5 vCPU); postgres 512 MB / 1 GB; no Redis (enabled = false)
PREVIEW = (
    1 * 0.5 * 10  # web RAM: $5
    + 1 * 0.5 * 20  # web vCPU: $10
    + 0.5 * 10  # postgres RAM: 512 MB = 0.5 GB × $10 = $5
    + 1 * 0.15  # postgres volume: 1 GB × $0.15 = $0.15
)  # = $20.15
HAND = {"production": PRODUCTION, "staging": STAGING, "pr-7": PREVIEW}


@pytest.mark.parametrize("environment", sorted(HAND))
def test_the_example_app_tiers_cost_what_a_hand_computation_says(environment: str) -> None:
    snapshot = load_project(APP).environment(environment).to_dict()  # what a deployment stores (config_json)
    monthly = cost.monthly(cost.allocation(snapshot), cost.Prices())
    assert monthly.total == pytest.approx(HAND[environment])
    assert cost.money(monthly.total) == {"production": "$86.50", "staging": "$28.25", "pr-7": "$20.15"}[environment]


def test_the_breakdown_names_each_service_and_resource() -> None:
    snapshot = load_project(APP).environment("production").to_dict()
    items = {(i.service, i.resource): (i.quantity, i.monthly, i.note) for i in
             cost.monthly(cost.allocation(snapshot), cost.Prices()).items}
    assert items == {
        ("web", "memory"): (2.0, 20.0, "2 × 1 GB"),
        ("web", "vcpu"): (2.0, 40.0, "2 × 1 vCPU"),
        ("postgres", "memory"): (2.0, 20.0, "2 GB"),
        ("postgres", "storage"): (10.0, pytest.approx(1.5), "10 GB"),
        ("redis", "memory"): (0.5, 5.0, "512 MB"),
    }


def test_scale_overrides_the_replicas_and_undeclared_sizes_count_zero_with_a_note() -> None:
    snapshot = {"web": {"replicas": 1, "memory_mb": 512, "cpu": None}, "postgres": {"memory_mb": None, "storage_mb": None},
                "redis": {"memory_mb": None}}
    services = cost.allocation(snapshot, replicas_override=3)
    assert services[0] == cost.Service("web", "app", replicas=3, memory_mb=512, cpu=None)
    m = cost.monthly(services, cost.Prices())
    assert m.total == pytest.approx(3 * 0.5 * 10)  # RAM only: 3 × 0.5 GB × $10
    notes = {(i.service, i.resource): i.note for i in m.items if i.monthly == 0}
    assert notes == {("web", "vcpu"): "not sized: no cpu declared",
                     ("postgres", "memory"): "not sized: no memory declared (the server's own settings)",
                     ("postgres", "storage"): "not sized: no storage declared",
                     ("redis", "memory"): "not sized: no memory declared (maxmemory 0 (unbounded))"}
    assert cost.summary(services) == "web 3×512 MB/? vCPU · postgres ?/? · redis ?"


def test_procfile_workers_are_priced_like_web() -> None:
    # the snapshot's Procfile process types (EnvironmentConfig.to_dict()'s "processes"), each replica sized as web's
    snapshot = {"web": {"replicas": 1, "memory_mb": 1024, "cpu": 1},
                "processes": {"worker": {"command": "python worker.py", "replicas": 1}}}
    m = cost.monthly(cost.allocation(snapshot), cost.Prices())
    assert m.total == pytest.approx(10 + 20 + 1 * (10 + 20))  # web $30; one worker replica of 1 GB / 1 vCPU $30
    # `scale worker=3` (the environment's services_scale) and `scale web=2`
    m = cost.monthly(cost.allocation(snapshot, 2, {"worker": 3}), cost.Prices())
    assert m.total == pytest.approx(2 * 30 + 3 * 30)
    # `scale worker=0`: it runs none and costs nothing
    assert cost.monthly(cost.allocation(snapshot, None, {"worker": 0}), cost.Prices()).total == pytest.approx(30)


def test_a_cron_service_runs_no_replica_between_runs_and_its_data_services_are_priced() -> None:
    snapshot = {"web": {"replicas": 2, "memory_mb": 1024, "cpu": 1, "cron_schedule": "*/5 * * * *"},
                "postgres": {"memory_mb": 1024, "storage_mb": 1024}}
    services = cost.allocation(snapshot, replicas_override=3)  # `scale web=N` is refused on a cron service anyway
    assert services[0] == cost.Service("web", "app", replicas=0, memory_mb=1024, cpu=1, cron="*/5 * * * *")
    m = cost.monthly(services, cost.Prices())
    assert m.total == pytest.approx(10 + 0.15)  # PostgreSQL's 1 GB RAM and 1 GB volume only
    web = [i for i in m.items if i.service == "web"]
    assert [(i.resource, i.monthly) for i in web] == [("memory", 0.0), ("vcpu", 0.0)]
    assert web[0].note == 'cron service ("*/5 * * * *"): no replica runs between its runs; run time is not priced'
    assert cost.rates(services) == cost.Rates(memory_gb=1.0, vcpu=0.0, storage_gb=1.0)  # what measured cost counts
    assert cost.summary(services) == "web cron */5 * * * * · postgres 1 GB/1 GB"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, cost.Prices()),
        ("", cost.Prices()),
        ("memory_gb_month=5", cost.Prices(memory_gb_month=5.0)),
        (" memory_gb_month = 12.5 , vcpu_month=0 ,storage_gb_month=1,egress_gb=0.1 ,",
         cost.Prices(memory_gb_month=12.5, vcpu_month=0.0, storage_gb_month=1.0, egress_gb=0.1)),
    ],
)
def test_the_price_table_inline(raw: str | None, expected: cost.Prices) -> None:
    assert cost.parse_prices(raw) == expected


def test_the_price_table_from_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text("memory_gb_month = 8\nvcpu_month = 16.5\n")
    assert cost.parse_prices(str(path)) == cost.Prices(memory_gb_month=8.0, vcpu_month=16.5)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("ram=10", "BRANCHYARD_PRICES: unknown price 'ram' (expected memory_gb_month, vcpu_month, storage_gb_month, "
                   "egress_gb)"),
        ("memory_gb_month=ten", "BRANCHYARD_PRICES: memory_gb_month must be a number of dollars, 0 or more, got 'ten'"),
        ("vcpu_month=-1", "BRANCHYARD_PRICES: vcpu_month must be a number of dollars, 0 or more, got '-1'"),
        ("vcpu_month=nan", "BRANCHYARD_PRICES: vcpu_month must be a number of dollars, 0 or more, got 'nan'"),
        ("memory_gb_month=10,vcpu_month", "BRANCHYARD_PRICES: expected key=value, got 'vcpu_month'"),
        ("/nonexistent/prices.toml", "BRANCHYARD_PRICES: cannot read the price file '/nonexistent/prices.toml': "
                                     "No such file or directory"),
    ],
)
def test_bad_price_tables_are_refused_in_one_line_naming_key_and_value(raw: str, message: str) -> None:
    with pytest.raises(BadInput) as err:
        cost.parse_prices(raw)
    assert str(err.value) == message and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('vcpu_month = "cheap"\n', "BRANCHYARD_PRICES ({path}): vcpu_month must be a number of dollars, 0 or more, "
                                   "got 'cheap'"),
        ("disk = 1\n", "BRANCHYARD_PRICES ({path}): unknown price 'disk' (expected memory_gb_month, vcpu_month, "
                       "storage_gb_month, egress_gb)"),
        ("vcpu_month = true\n", "BRANCHYARD_PRICES ({path}): vcpu_month must be a number of dollars, 0 or more, got True"),
    ],
)
def test_bad_price_files_name_the_file_key_and_value(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(text)
    with pytest.raises(BadInput) as err:
        cost.parse_prices(str(path))
    assert str(err.value) == message.format(path=path)


def test_a_price_file_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text("memory_gb_month = \n")
    with pytest.raises(BadInput, match=r"^BRANCHYARD_PRICES: .*prices.toml: not valid TOML: "):
        cost.parse_prices(str(path))


def test_settings_read_the_price_table() -> None:
    from branchyard import settings

    assert settings.load({"BRANCHYARD_HOME": "/tmp/x", "BRANCHYARD_PRICES": "vcpu_month=25"}).prices.vcpu_month == 25.0
    with pytest.raises(BadInput, match="^BRANCHYARD_PRICES: unknown price 'cpu'"):
        settings.load({"BRANCHYARD_HOME": "/tmp/x", "BRANCHYARD_PRICES": "cpu=25"})


R = cost.Rates(memory_gb=2.0, vcpu=1.0, storage_gb=10.0)
HOUR = 3600.0


@pytest.mark.parametrize(
    ("was_running", "running", "transition", "counted"),
    [
        (True, True, False, True),  # ran at both ticks (a control plane restart in between too)
        (True, False, False, False),  # stopped between two ticks: not counted (at most one tick lost)
        (False, True, False, False),  # started between two ticks: not counted
        (False, False, False, False),  # sleeping all along
        (True, False, True, True),  # `down` just now: it ran until this event
        (False, True, True, False),  # a deployment went live after a sleep: nothing ran before it
    ],
)
def test_an_interval_counts_when_the_environment_ran_through_it(was_running, running, transition, counted) -> None:
    used = cost.advance(cost.Usage(), was_running=was_running, running=running, since=1000.0, now=1000.0 + HOUR,
                        r=R, transition=transition)
    assert used == (cost.Usage(HOUR, 2 * HOUR, HOUR, 10 * HOUR) if counted else cost.Usage())


def test_measured_dollars_are_the_monthly_rate_times_the_fraction_of_a_month() -> None:
    used = cost.Usage().plus(R, 73 * HOUR)  # a tenth of a 730-hour month
    # (2 GB × $10 + 1 vCPU × $20 + 10 GB × $0.15) / 10 = $4.15
    assert used.dollars(cost.Prices()) == pytest.approx((2 * 10 + 1 * 20 + 10 * 0.15) / 10)
    assert cost.advance(used, was_running=True, running=True, since=5.0, now=5.0, r=R) == used  # no time, no cost
