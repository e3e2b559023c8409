"""Delivery ids are kept (migration 0006) and pruned after the replay window; pending ones are never pruned."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from branchyard.controller.webhooks import KEEP_DELIVERIES_DAYS, Webhooks
from branchyard.store import models as m
from branchyard.store.db import Store


def test_prune_forgets_only_old_deliveries_acted_on(tmp_path) -> None:
    store = Store(tmp_path / "state.db")
    old = m.utcnow() - dt.timedelta(days=KEEP_DELIVERIES_DAYS + 1)
    with store.session() as s:
        s.add(m.WebhookDelivery(id="old-done", event="pull_request", state="done", received_at=old))
        s.add(m.WebhookDelivery(id="old-pending", event="push", state="pending", received_at=old))
        s.add(m.WebhookDelivery(id="recent", event="push", state="done"))
    assert Webhooks(None, store, box=None, pushes=None, previews=None).prune(  # type: ignore[arg-type]
        m.utcnow()) == 1
    with store.session() as s:
        assert sorted(s.scalars(select(m.WebhookDelivery.id))) == ["old-pending", "recent"]
    store.close()
