#!/usr/bin/env python
"""Database chores for yoto-smart-stream, as the architecture guide runs them:

    python manage.py migrate              # alembic upgrade head (railway.toml preDeployCommand)
    python manage.py seed_data --test     # a handful of fake users/streams/cards (PR environments)
    python manage.py seed_data --staging  # a larger synthetic set (staging)
    python manage.py smoke --environment staging   # GET $BRANCHYARD_TARGET_URL/health (promotion smoke test)

Both read DATABASE_URL (postgresql://user:pass@host:port/db) and exit 1 with a one-line error without it.
Seeding brings the schema to head first, then inserts only what is missing: running it twice changes nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent
SEED_LOCK = 0x796F746F  # pg_advisory_xact_lock key ("yoto"): concurrent seeders wait instead of duplicating

FIRST = ["Ada", "Alan", "Grace", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances", "Edsger",
         "Radia", "Donald", "Hedy", "John", "Katherine", "Tim", "Sophie", "Guido", "Annie", "Niklaus"]
LAST = ["Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Thompson", "Allen",
        "Dijkstra", "Perlman", "Knuth", "Lamarr", "McCarthy", "Johnson", "Berners-Lee", "Wilson", "Rossum",
        "Easley", "Wirth"]
TOPICS = ["Bedtime Stories", "Morning Songs", "Road Trip Mix", "Science Facts", "Rainy Day Radio",
          "Dinosaur Club", "Space Adventures", "Quiet Time", "Animal Sounds", "Counting Games"]
ICONS = ["yoto:#star", "yoto:#moon", "yoto:#rocket", "yoto:#music", "yoto:#book", "yoto:#dino", "yoto:#sun",
         "yoto:#cloud", "yoto:#heart", "yoto:#tree"]


def fail(message: str) -> None:
    print(f"manage.py: {message}", file=sys.stderr)
    raise SystemExit(1)


def database_url() -> str:
    raw = os.environ.get("DATABASE_URL", "").strip()
    if not raw:
        fail("DATABASE_URL is not set (expected postgresql://user:pass@host:port/db)")
    return raw


# --- migrate ------------------------------------------------------------------------------------------


def migrate() -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(APP / "alembic.ini"))
    cfg.set_main_option("script_location", str(APP / "migrations"))  # works from any working directory
    command.upgrade(cfg, "head")


# --- seed_data ----------------------------------------------------------------------------------------


def dataset(kind: str) -> list[dict]:
    """Deterministic fake data: the same call always describes the same rows (that is what makes seeding idempotent)."""
    if kind == "test":
        n_users, n_streams, n_cards, domain, tag = 5, 2, 3, "example.com", "test-user"
    else:
        n_users, n_streams, n_cards, domain, tag = 200, 3, 4, "example.org", "staging-user"
    users = []
    for i in range(n_users):
        name = f"{FIRST[i % len(FIRST)]} {LAST[(i * 7 + i // len(FIRST)) % len(LAST)]}"
        streams = []
        for j in range(n_streams):
            topic = TOPICS[(i + j) % len(TOPICS)]
            title = f"{topic} #{j + 1}"
            cards = [(f"{topic} – track {k + 1}", ICONS[(i + j + k) % len(ICONS)]) for k in range(n_cards)]
            streams.append({"title": title, "url": f"https://streams.{domain}/{tag}-{i + 1:04d}/{j + 1}", "cards": cards})
        users.append({"email": f"{tag}-{i + 1:04d}@{domain}", "name": name, "streams": streams})
    return users


def seed(raw_url: str, kind: str) -> dict[str, tuple[int, int]]:
    """Insert what of `dataset(kind)` is missing; returns table → (created, already present)."""
    import db
    from sqlalchemy import func, select

    data = dataset(kind)
    counts: dict[str, tuple[int, int]] = {}
    with db.session_factory(raw_url)() as session, session.begin():
        session.execute(select(func.pg_advisory_xact_lock(SEED_LOCK)))

        # users, by email
        emails = [u["email"] for u in data]
        user_ids = dict(session.execute(select(db.User.email, db.User.id).where(db.User.email.in_(emails))).all())
        new_users = [db.User(email=u["email"], name=u["name"]) for u in data if u["email"] not in user_ids]
        session.add_all(new_users)
        session.flush()
        user_ids.update({u.email: u.id for u in new_users})
        counts["users"] = (len(new_users), len(data) - len(new_users))

        # streams, by (user, title)
        wanted_streams = [(user_ids[u["email"]], s) for u in data for s in u["streams"]]
        stream_ids = {
            (uid, title): sid
            for sid, uid, title in session.execute(
                select(db.Stream.id, db.Stream.user_id, db.Stream.title).where(db.Stream.user_id.in_(set(user_ids.values())))
            )
        }
        new_streams = [
            db.Stream(user_id=uid, title=s["title"], url=s["url"]) for uid, s in wanted_streams if (uid, s["title"]) not in stream_ids
        ]
        session.add_all(new_streams)
        session.flush()
        stream_ids.update({(s.user_id, s.title): s.id for s in new_streams})
        counts["streams"] = (len(new_streams), len(wanted_streams) - len(new_streams))

        # cards, by (stream, title)
        wanted_cards = [(stream_ids[(uid, s["title"])], title, icon) for uid, s in wanted_streams for title, icon in s["cards"]]
        ids = {sid for sid, _, _ in wanted_cards}
        have = set(session.execute(select(db.Card.stream_id, db.Card.title).where(db.Card.stream_id.in_(ids))).all())
        new_cards = [db.Card(stream_id=sid, title=title, icon=icon) for sid, title, icon in wanted_cards if (sid, title) not in have]
        session.add_all(new_cards)
        counts["cards"] = (len(new_cards), len(wanted_cards) - len(new_cards))
    return counts


# --- smoke -------------------------------------------------------------------------------------------


def smoke(environment: str | None) -> int:
    """GET $BRANCHYARD_TARGET_URL/health: 0 when it answers 200 with status "ok", else 1 with the reason.

    *.localhost is reached on 127.0.0.1 with the Host header, as browsers do."""
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    base = os.environ.get("BRANCHYARD_TARGET_URL", "").strip().rstrip("/")
    if not base:
        fail("smoke: BRANCHYARD_TARGET_URL is not set (the URL of the environment under test)")
    url = urllib.parse.urlsplit(base + "/health")
    target = url._replace(netloc=f"127.0.0.1:{url.port or 80}") if (url.hostname or "").endswith("localhost") else url
    request = urllib.request.Request(urllib.parse.urlunsplit(target), headers={"Host": url.netloc})
    label = environment or url.netloc
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            status, body = resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        fail(f"smoke {label}: GET {base}/health: {getattr(exc, 'reason', exc)}")
    try:
        state = json.loads(body).get("status")
    except (ValueError, AttributeError):
        state = None
    if status != 200 or state != "ok":
        fail(f"smoke {label}: GET {base}/health answered {status} (status {state!r})")
    print(f"smoke {label}: GET {base}/health → 200 ok")
    return 0


# --- command line -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="manage.py", description="Database chores for yoto-smart-stream.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="bring the schema to the latest migration (alembic upgrade head)")
    seeder = commands.add_parser("seed_data", help="insert fake data (idempotent)")
    which = seeder.add_mutually_exclusive_group(required=True)
    which.add_argument("--test", dest="kind", action="store_const", const="test", help="a handful of rows (PR environments)")
    which.add_argument("--staging", dest="kind", action="store_const", const="staging", help="a larger synthetic set (staging)")
    smoker = commands.add_parser("smoke", help="GET $BRANCHYARD_TARGET_URL/health (exit 0 when 200 and status ok)")
    smoker.add_argument("--environment", default=None, help="the environment under test (for messages)")
    args = parser.parse_args(argv)
    if args.command == "smoke":
        return smoke(args.environment)

    raw_url = database_url()  # before importing SQLAlchemy/Alembic: a missing variable fails fast
    sys.path.insert(0, str(APP))
    import db
    from sqlalchemy.exc import SQLAlchemyError

    try:
        db.sqlalchemy_url(raw_url)
        migrate()
        if args.command == "seed_data":
            counts = seed(raw_url, args.kind)
            summary = ", ".join(f"{table}: {new} created, {old} already present" for table, (new, old) in counts.items())
            print(f"seed_data --{args.kind}: {summary}")
        else:
            print("migrate: schema is at the latest revision")
    except db.BadDatabaseURL as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        fail(f"{args.command} failed: {db.short_reason(exc)}")
    finally:
        db.dispose_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
