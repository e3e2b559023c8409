"""Reference variables: ${{Service.VAR}}, ${{shared.X}}, ${{PORT}}, ${{NAME}}, errors with exact texts."""

import pytest

from branchyard.errors import BadInput
from branchyard.variables import (
    after_set,
    attached_variables,
    environment_variables,
    resolve,
    variable_sources,
)

PG = {"Postgres": {"DATABASE_URL": "postgresql://u:p@127.0.0.1:5432/db", "PGPORT": "5432"}}


def test_plain_values_pass_through():
    assert resolve({"A": "1", "B": "x y"}, namespaces={}).values == {"A": "1", "B": "x y"}


def test_service_reference_with_and_without_spaces():
    got = resolve({"DATABASE_URL": "${{Postgres.DATABASE_URL}}", "P": "${{ Postgres.PGPORT }}"}, namespaces=PG).values
    assert got == {"DATABASE_URL": "postgresql://u:p@127.0.0.1:5432/db", "P": "5432"}


def test_several_references_in_one_value_and_same_service_names():
    got = resolve(
        {"HOST": "db.local", "URL": "http://${{HOST}}:${{PORT}}/x?p=${{Postgres.PGPORT}}"}, namespaces=PG, port=8001
    ).values
    assert got["URL"] == "http://db.local:8001/x?p=5432"


def test_port_is_pending_without_a_replica():
    res = resolve({"PORT": "${{PORT}}"}, namespaces={})
    assert res.values == {} and res.pending == {"PORT": "PORT is only known per replica"}


def test_pending_namespace_leaves_variable_out_with_reason():
    res = resolve({"R": "${{Redis.REDIS_URL}}", "A": "1"}, namespaces={}, pending_namespaces={"Redis": "not yet"})
    assert res.values == {"A": "1"} and res.pending == {"R": "not yet"}


def test_namespaces_match_case_insensitively():
    assert resolve({"U": "${{postgres.PGPORT}}"}, namespaces=PG).values == {"U": "5432"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"U": "${{Mongo.URL}}"}, "variables.U: ${{Mongo.URL}} refers to an unknown service 'Mongo' (known: Postgres)"),
        ({"U": "${{Postgres.NOPE}}"}, "variables.U: ${{Postgres.NOPE}}: Postgres has no variable 'NOPE'"),
        ({"U": "${{MISSING}}"}, "variables.U: ${{MISSING}} refers to an undefined variable 'MISSING'"),
        ({"A": "${{B}}", "B": "${{A}}"}, "variables.A: reference cycle A → B → A"),
        ({"A": "x${{A}}"}, "variables.A: reference cycle A → A"),
    ],
)
def test_errors_name_the_variable_and_the_reference(raw, message):
    with pytest.raises(BadInput) as err:
        resolve(raw, namespaces=PG)
    assert str(err.value) == message


def test_lenient_resolution_leaves_out_only_the_variables_with_bad_references():
    raw = {"A": "${{ Nope.X }}", "B": "${{A}}-b", "C": "plain", "D": "${{ Postgres.DATABASE_URL }}"}
    with pytest.raises(BadInput):
        resolve(raw, namespaces=PG)
    got = resolve(raw, namespaces=PG, lenient=True)
    assert got.values == {"C": "plain", "D": "postgresql://u:p@127.0.0.1:5432/db"}
    assert set(got.pending) == {"A", "B"} and "unknown service 'Nope'" in got.pending["A"]


@pytest.mark.parametrize(
    ("plain", "secrets", "pairs", "secret", "expected"),
    [
        ({"A": "1"}, {}, {"B": "2"}, False, ({"A": "1", "B": "2"}, {})),
        ({"A": "1"}, {"S": "x"}, {"A": "9"}, False, ({"A": "9"}, {"S": "x"})),
        ({"A": "1"}, {}, {"A": "9"}, True, ({}, {"A": "9"})),  # a variable set again as a secret becomes one
        ({}, {"S": "x"}, {"S": "y"}, False, ({"S": "y"}, {})),
    ],
)
def test_after_set(plain, secrets, pairs, secret, expected):
    assert after_set(plain, secrets, pairs, secret=secret) == expected


def test_environment_variables_layer_spec_then_stored_then_secrets():
    raw, spaces = environment_variables({"A": "spec", "B": "spec"}, {"B": "set"}, {"S": "hidden"}, PG)
    assert raw == {"A": "spec", "B": "set", "S": "${{ secrets.S }}"}
    assert spaces["secrets"] == {"S": "hidden"} and "Postgres" in spaces and "shared" not in spaces
    assert resolve(raw, namespaces=spaces).values == {"A": "spec", "B": "set", "S": "hidden"}


def test_shared_reference_to_a_secret_resolves_to_its_value_everywhere():
    """The layering once disagreed: a deploy refused `${{shared.K}}` for a secret K while `variables list` showed
    the literal `${{ secrets.K }}`. Now every reader layers with environment_variables and gets the value."""
    raw, spaces = environment_variables({"X": "${{shared.K}}", "Y": "${{ shared.A }}-${{Shared.K}}"}, {"A": "a"},
                                        {"K": "s3cret"}, {})
    assert resolve(raw, namespaces=spaces).values == {"X": "s3cret", "Y": "a-s3cret", "A": "a", "K": "s3cret"}
    assert resolve(raw, namespaces=spaces, lenient=True).values["X"] == "s3cret"


def test_shared_reference_to_an_unknown_variable_names_it():
    with pytest.raises(BadInput) as err:
        resolve({"X": "${{shared.NOPE}}"}, namespaces={})
    assert str(err.value) == "variables.X: ${{shared.NOPE}}: shared has no variable 'NOPE'"


def test_shared_reference_cycle_is_refused():
    with pytest.raises(BadInput) as err:
        resolve({"A": "${{shared.B}}", "B": "${{shared.A}}"}, namespaces={})
    assert str(err.value) == "variables.A: reference cycle A → B → A"


PG_ATTACHED = {n: f"${{{{Postgres.{n}}}}}" for n in ("DATABASE_URL", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD",
                                                       "PGDATABASE")}
REDIS_ATTACHED = {n: f"${{{{Cache.{n}}}}}" for n in ("REDIS_URL", "REDISHOST", "REDISPORT", "REDISUSER",
                                                     "REDISPASSWORD")}


@pytest.mark.parametrize(
    ("defined", "services", "expected"),
    [
        ([], {}, {}),  # no service: nothing attached
        ([], {"postgres": "Postgres"}, PG_ATTACHED),
        (["APP_MODE"], {"postgres": "Postgres", "redis": "Cache"}, PG_ATTACHED | REDIS_ATTACHED),
        (["DATABASE_URL"], {"postgres": "Postgres"}, {}),  # the user wires it: all or nothing
        (["PGSSLMODE"], {"postgres": "Postgres"}, {}),  # any PG* name is libpq's: the user wires it
        (["PGHOST"], {"postgres": "Postgres", "redis": "Cache"}, REDIS_ATTACHED),
        (["REDIS_URL"], {"postgres": "Postgres", "redis": "Cache"}, PG_ATTACHED),
        (["REDISPASSWORD"], {"redis": "Cache"}, {}),
        (["REDIS_KEY_PREFIX"], {"redis": "Cache"}, REDIS_ATTACHED),  # an app's own REDIS_* setting is not wiring
        (["DATABASE_URL_REPLICA", "XPGHOST"], {"postgres": "Postgres"}, PG_ATTACHED),
        ([], {"mongo": "Mongo"}, {}),  # kinds without attach rules
    ],
)
def test_attached_variables(defined, services, expected):
    assert attached_variables(defined, services) == expected


def test_attached_variables_are_the_lowest_layer_and_resolve_in_their_service():
    services = {"Postgres": {n: f"pg-{n}" for n in PG_ATTACHED}}
    raw, spaces = environment_variables({"A": "spec"}, {}, {}, services, {"postgres": "Postgres"})
    assert raw == PG_ATTACHED | {"A": "spec"}
    assert resolve(raw, namespaces=spaces).values == {n: f"pg-{n}" for n in PG_ATTACHED} | {"A": "spec"}


@pytest.mark.parametrize(
    ("spec", "plain", "secrets"),
    [
        ({"DATABASE_URL": "postgresql://own"}, {}, {}),
        ({}, {"PGHOST": "db.example"}, {}),
        ({}, {}, {"PGPASSWORD": "x"}),  # a secret claims it too
    ],
)
def test_any_user_layer_that_defines_a_postgres_name_turns_the_attach_off(spec, plain, secrets):
    raw, _ = environment_variables(spec, plain, secrets, {}, {"postgres": "Postgres"})
    assert not set(raw) & (set(PG_ATTACHED) - set(spec) - set(plain) - set(secrets))


def test_variable_sources_follow_the_layers():
    got = variable_sources({"A": "1", "B": "1"}, {"B": "2", "C": "2"}, {"C": "3"}, {"postgres": "DB", "redis": "Cache"})
    assert got == {"A": "spec", "B": "set", "C": "secret"} | dict.fromkeys(PG_ATTACHED, "DB") | dict.fromkeys(
        REDIS_ATTACHED, "Cache")
    raw, _ = environment_variables({"A": "1", "B": "1"}, {"B": "2", "C": "2"}, {"C": "3"}, {}, {"postgres": "DB"})
    assert set(variable_sources({"A": "1", "B": "1"}, {"B": "2", "C": "2"}, {"C": "3"}, {"postgres": "DB"})) == set(raw)
    assert variable_sources({"PGHOST": "h"}, {}, {}, {"postgres": "DB"}) == {"PGHOST": "spec"}
