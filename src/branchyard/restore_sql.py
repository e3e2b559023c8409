"""The SQL around a restore: what psql runs before and after pg_restore's output so that a database's content is
replaced whole, in one transaction, owned by the environment's role. One text for both backends: the local one pipes
it into psql itself (backends/local/postgres.py), a Kubernetes data job runs it in the environment's namespace
(backends/kubernetes/data_jobs.py). Pure.

Everything in the database's schemas is dropped first (pg_restore --clean alone would keep objects the dump lacks),
then the dump comes in with --no-owner --no-privileges as the owner (grants naming another environment's role never
come across); COMMIT is in the epilogue, which is sent only once pg_restore has read the whole archive."""

from __future__ import annotations

from .names import check_name


def restore_prelude(owner: str) -> str:
    role = f'"{check_name(owner, "role")}"'  # a checked name: quoting is all it needs
    return f"""\
\\set ON_ERROR_STOP on
SET client_min_messages = warning;
BEGIN;
DO $branchyard$
DECLARE s text;
BEGIN
  FOR s IN SELECT nspname FROM pg_namespace
           WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\\_%'
  LOOP
    EXECUTE format('DROP SCHEMA %I CASCADE', s);
  END LOOP;
END $branchyard$;
SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata;
CREATE SCHEMA public AUTHORIZATION {role};
REVOKE ALL ON SCHEMA public FROM PUBLIC;
"""


def restore_epilogue(owner: str) -> str:
    role = f'"{check_name(owner, "role")}"'
    return f"""
RESET ROLE;
ALTER SCHEMA public OWNER TO {role};
REVOKE ALL ON SCHEMA public FROM PUBLIC;
COMMIT;
"""
