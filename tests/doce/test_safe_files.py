"""doce.safe_files: nothing outside the folder is ever opened, nothing blocks, nothing
unbounded is read; with openat2 and with the component-by-component fallback."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time

import pytest

from doce import safe_files

MAX = 50 * 1024 * 1024


@pytest.fixture(params=["openat2", "walk"])
def resolver(request, monkeypatch):
    """Each test runs against both ways of resolving: the kernel's openat2 and the
    O_NOFOLLOW walk used where openat2 is missing."""
    if request.param == "walk":
        monkeypatch.setattr(safe_files, "_openat2_works", False)
    else:
        monkeypatch.setattr(safe_files, "_openat2_works", None)
    return request.param


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "workspace"
    (root / "css").mkdir(parents=True)
    (root / "index.html").write_text("<h1>Bakery</h1>")
    (root / "css" / "site.css").write_text("h1{}")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("SECRET")
    return root


def opened_text(root, parts, **kwargs) -> str:
    with safe_files.open_file(root, parts, max_size=MAX, **kwargs) as opened:
        return opened.read_all().decode()


def test_serves_files_and_folder_index(site, resolver):
    assert opened_text(site, ["index.html"]) == "<h1>Bakery</h1>"
    assert opened_text(site, ["css", "site.css"]) == "h1{}"
    assert opened_text(site, [""], index="index.html") == "<h1>Bakery</h1>"
    with pytest.raises(safe_files.IsFolder):
        safe_files.open_file(site, ["css"], max_size=MAX)


def test_openat2_is_used_on_this_kernel(site, monkeypatch):
    monkeypatch.setattr(safe_files, "_openat2_works", None)
    opened_text(site, ["index.html"])
    assert safe_files._openat2_works is True


def test_a_symlink_to_etc_passwd_is_refused(site, resolver):
    (site / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(safe_files.Unsafe):
        safe_files.open_file(site, ["passwd"], max_size=MAX)


def test_a_symlink_to_a_folder_outside_is_refused(site, resolver):
    (site / "out").symlink_to(site.parent / "outside")
    with pytest.raises(safe_files.Unsafe):
        safe_files.open_file(site, ["out", "secret.txt"], max_size=MAX)
    with pytest.raises(safe_files.Unsafe):
        safe_files.open_file(site, ["out", ""], max_size=MAX, index="secret.txt")


def test_a_symlink_inside_the_workspace_is_refused_too(site, resolver):
    (site / "alias.html").symlink_to(site / "index.html")
    with pytest.raises(safe_files.Unsafe):
        safe_files.open_file(site, ["alias.html"], max_size=MAX)


def test_the_workspace_itself_as_a_symlink_is_refused(site, resolver, tmp_path):
    (tmp_path / "linked").symlink_to(site.parent / "outside")
    with pytest.raises(safe_files.Unsafe):
        safe_files.open_file(tmp_path / "linked", ["secret.txt"], max_size=MAX)


@pytest.mark.parametrize(
    "parts",
    [
        ["..", "outside", "secret.txt"],
        ["css", "..", "..", "outside", "secret.txt"],
        [".", "index.html"],
        ["../outside/secret.txt"],  # an encoded slash, decoded into one component
        ["..%2foutside"],
        ["index.html\x00.png"],
        ["css\\..\\index.html"],
    ],
)
def test_dot_segments_slashes_and_nul_are_refused(site, resolver, parts):
    with pytest.raises(safe_files.Unsafe):
        safe_files.open_file(site, parts, max_size=MAX)


def test_an_absolute_path_never_escapes(site, resolver):
    with pytest.raises(safe_files.Unsafe):
        safe_files.open_file(site, ["/etc/passwd"], max_size=MAX)


def _within(seconds: float, action):
    """Run ``action`` in a thread and fail if it has not returned within ``seconds``."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = action()
        except BaseException as exc:  # handed back to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def test_a_fifo_is_refused_without_blocking(site, resolver):
    os.mkfifo(site / "pipe")
    with pytest.raises(safe_files.Unsafe, match="regular"):
        _within(5, lambda: safe_files.open_file(site, ["pipe"], max_size=MAX))
    os.mkfifo(site / "css" / "index.html")
    with pytest.raises(safe_files.Unsafe):
        _within(
            5, lambda: safe_files.open_file(site, ["css", ""], max_size=MAX, index="index.html")
        )


def test_a_socket_is_refused(site, resolver):
    path = site / "sock"
    with socket.socket(socket.AF_UNIX) as server:
        try:
            server.bind(str(path))
        except OSError as exc:  # a path too long for AF_UNIX on this machine
            pytest.fail(f"cannot bind a unix socket in the temp folder: {exc}")
        with pytest.raises(safe_files.Unsafe):
            _within(5, lambda: safe_files.open_file(site, ["sock"], max_size=MAX))


def test_a_device_file_is_refused(site, resolver):
    try:
        os.mknod(site / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        # Unprivileged: the agent cannot make one either; a bind of /dev/null stands in.
        (site / "null").symlink_to("/dev/null")
    with pytest.raises(safe_files.Unsafe):
        _within(5, lambda: safe_files.open_file(site, ["null"], max_size=MAX))


def test_a_2gb_sparse_file_is_refused_at_once(site, resolver):
    with open(site / "huge.bin", "wb") as handle:
        handle.truncate(2 * 1024**3)
    started = time.monotonic()
    with pytest.raises(safe_files.TooLarge):
        safe_files.open_file(site, ["huge.bin"], max_size=MAX)
    assert time.monotonic() - started < 1


def test_no_more_than_fstat_announced_is_read(site, resolver):
    opened = safe_files.open_file(site, ["index.html"], max_size=MAX)
    with open(site / "index.html", "a") as handle:  # the agent appends meanwhile
        handle.write("x" * 100_000)
    with opened:
        assert opened.read_all() == b"<h1>Bakery</h1>"


def test_walk_lists_regular_files_only_and_never_follows_links(site, tmp_path):
    (site / "out").symlink_to(site.parent / "outside")
    (site / "passwd").symlink_to("/etc/passwd")
    os.mkfifo(site / "pipe")
    (site / "node_modules" / "x").mkdir(parents=True)
    (site / "node_modules" / "x" / "index.js").write_text("")
    entries, more = safe_files.walk_files(site, limit=100)
    assert [entry.path for entry in entries] == ["css/site.css", "index.html"]
    assert not more
    assert entries[1].size == len("<h1>Bakery</h1>")


def test_walk_is_bounded(site):
    for number in range(20):
        (site / f"page{number}.html").write_text("")
    entries, more = safe_files.walk_files(site, limit=5)
    assert len(entries) == 5 and more
