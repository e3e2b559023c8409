"""Reference variables: ${{Service.VAR}}, ${{shared.X}}, ${{PORT}}, ${{NAME}}, errors with exact texts."""

import pytest

from branchyard.controller.variables import resolve
from branchyard.errors import BadInput

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
