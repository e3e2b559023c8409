"""controller/podlogs.py: pods' lines appended once each to their deployment's raw files, a slot per pod."""

from __future__ import annotations

from branchyard.backends.ports import PodLogLine
from branchyard.controller.podlogs import _append


def line(pod: str, time: str, text: str, service: str = "web") -> PodLogLine:
    return PodLogLine(pod=pod, service=service, release="d1", time=time, text=text)


def test_each_pod_gets_a_slot_and_each_line_is_written_once(tmp_path):
    first = [line("web-a", "2026-12-04T10:00:01.000000000Z", "a1"), line("web-b", "2026-12-04T10:00:02.000000000Z", "b1"),
             line("pg-0", "2026-12-04T10:00:00.500000000Z", "ready", service="postgres")]
    assert _append(tmp_path, first) == 3
    again = first + [line("web-a", "2026-12-04T10:00:03.000000000Z", "a2"),
                     line("web-c", "2026-12-04T10:00:04.000000000Z", "c1")]  # a replacement pod: a new slot
    assert _append(tmp_path, again) == 2
    assert (tmp_path / "web.0.log").read_text() == "a1\na2\n"
    assert (tmp_path / "web.1.log").read_text() == "b1\n"
    assert (tmp_path / "web.2.log").read_text() == "c1\n"
    assert (tmp_path / "postgres.0.log").read_text() == "ready\n"


def test_a_procfile_services_lines_say_its_type(tmp_path):
    _append(tmp_path, [line("worker-clock-x", "2026-12-04T10:00:01.000000000Z", "tick", service="worker-clock")])
    assert (tmp_path / "clock.0.log").read_text() == "tick\n"
