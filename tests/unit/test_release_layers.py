"""Release layers (an app's own install, `<cache>/layers/<deployment>`) are deleted once no kept release uses them."""

from __future__ import annotations

from pathlib import Path

from branchyard.build import release


def _layers(root: Path, *names: str) -> list[Path]:
    for name in names:
        (root / name / "bin").mkdir(parents=True)
    return release.release_layers(root)


def test_only_layers_no_release_uses_and_no_build_is_making_are_deleted(tmp_path: Path) -> None:
    root = tmp_path / "layers"
    layers = _layers(root, "dep-current", "dep-promoted-from", "dep-building", "dep-pruned", "dep-failed")
    removed = release.remove_unused_layers(
        layers,
        in_use=[root / "dep-current", root / "dep-promoted-from"],  # a promoted copy's marker names its source's layer
        building={"dep-building"},  # its marker is not written yet
    )
    assert [p.name for p in removed] == ["dep-failed", "dep-pruned"]
    assert sorted(p.name for p in root.iterdir()) == ["dep-building", "dep-current", "dep-promoted-from"]


def test_a_layer_made_after_the_listing_is_not_touched(tmp_path: Path) -> None:
    root = tmp_path / "layers"
    listed = _layers(root, "old")
    _layers(root, "made-meanwhile")  # a build that started after the listing: unknown to `building`
    assert release.remove_unused_layers(listed, in_use=[], building=set()) == [root / "old"]
    assert [p.name for p in root.iterdir()] == ["made-meanwhile"]


def test_a_marker_path_written_differently_still_counts_as_in_use(tmp_path: Path) -> None:
    root = tmp_path / "layers"
    layers = _layers(root, "dep-a")
    assert release.remove_unused_layers(layers, in_use=[root / "x" / ".." / "dep-a"], building=set()) == []
    assert release.release_layers(tmp_path / "missing") == []


def test_unused_virtualenvs_are_deleted_under_their_lock_while_no_build_started(tmp_path: Path) -> None:
    import fcntl
    import os

    root = tmp_path / "venvs"
    for name in ("used", "unused-a", "unused-b", "locked"):
        (root / name / "bin").mkdir(parents=True)
    venvs = release.shared_virtualenvs(root)
    fd = os.open(root / "locked.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a build holding it
    try:
        removed = release.remove_unused_virtualenvs(venvs, in_use=[root / "used"], still_idle=lambda: True)
    finally:
        os.close(fd)
    assert [p.name for p in removed] == ["unused-a", "unused-b"]
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["locked", "used"]
    assert (root / "unused-a.lock").exists()  # lock files stay

    # A build started meanwhile: stop at once.
    calls = []
    venvs = release.shared_virtualenvs(root)
    assert release.remove_unused_virtualenvs(venvs, in_use=[], still_idle=lambda: calls.append(1) and False) == []
    assert calls == [1] and sorted(p.name for p in root.iterdir() if p.is_dir()) == ["locked", "used"]
    assert release.shared_virtualenvs(tmp_path / "missing") == []


def test_a_layer_being_relocated_belongs_to_its_build(tmp_path: Path) -> None:
    root = tmp_path / "layers"
    layers = _layers(root, ".dep-new.relocating", ".dep-gone.relocating")
    removed = release.remove_unused_layers(layers, in_use=[], building={"dep-new"})
    assert [p.name for p in removed] == [".dep-gone.relocating"]
