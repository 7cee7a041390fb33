"""The supervisor's bounds helpers (sandbox_bounds.py) on fake cgroup trees: which
hierarchy is found, what a server's group gets written, the OOM count, removal, the
disk measurement and the record of why a bound stopped a server."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from doce.opencode.runtimes import sandbox_bounds
from doce.opencode.runtimes.sandbox_bounds import (
    LEAF,
    PARENT,
    Bounds,
    Hierarchy,
    ServerGroup,
    hierarchies,
    human_bytes,
)

GIB = 1024**3

MOUNTINFO_HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
SELF_HYBRID = """\
9:name=systemd:/
8:pids:/
4:memory:/process_api/abc
1:cpu:/
0::/
"""
MOUNTINFO_V2 = "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
SELF_V2 = "0::/system.slice/doce.service\n"


def test_a_hybrid_machine_uses_its_v1_hierarchies_inside_doces_own_groups():
    version, found = hierarchies(MOUNTINFO_HYBRID, SELF_HYBRID)
    assert version == 1
    assert {h.controllers: h.own for h in found} == {
        frozenset({"cpu"}): Path("/sys/fs/cgroup/cpu"),
        frozenset({"memory"}): Path("/sys/fs/cgroup/memory/process_api/abc"),
        frozenset({"pids"}): Path("/sys/fs/cgroup/pids"),
    }


def test_a_v2_machine_uses_the_unified_hierarchy():
    version, found = hierarchies(MOUNTINFO_V2, SELF_V2)
    assert version == 2
    assert found[0].own == Path("/sys/fs/cgroup/system.slice/doce.service")


def test_a_mount_of_a_subtree_maps_the_path_inside_it():
    mountinfo = "29 23 0:26 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n"
    assert hierarchies(mountinfo, "0::/docker/abc/sub\n")[1][0].own == Path("/sys/fs/cgroup/sub")
    assert hierarchies(mountinfo, "0::/elsewhere\n") == (0, [])


def test_no_cgroups_at_all():
    assert hierarchies("", "") == (0, [])


def _v1_tree(tmp_path: Path) -> list[Hierarchy]:
    found = []
    for controller in ("memory", "pids", "cpu"):
        own = tmp_path / controller / "doce"
        own.mkdir(parents=True)
        found.append(Hierarchy(1, frozenset({controller}), own))
    return found


def _fake_kernel(monkeypatch):
    """mkdir in a cgroupfs makes the control files: here, empty files on demand."""
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        real_mkdir(self, *args, **kwargs)
        for name in ("cgroup.procs", "cgroup.controllers", "cgroup.subtree_control"):
            (self / name).touch()

    monkeypatch.setattr(Path, "mkdir", mkdir)

    def rmdir(self):  # a cgroup folder goes with its control files
        for child in self.iterdir():
            child.unlink()
        Path.rmdir.__wrapped__(self)

    rmdir.__wrapped__ = Path.rmdir
    monkeypatch.setattr(Path, "rmdir", rmdir)


def test_v1_a_server_group_gets_every_bound_and_goes_away(tmp_path, monkeypatch):
    _fake_kernel(monkeypatch)
    bounds = Bounds(memory_bytes=2 * GIB, pids=512, cpus=1.0)
    group = ServerGroup("42", bounds, found=(1, _v1_tree(tmp_path)), cpu_count=2)
    group.create()
    assert group.problems == []
    memory = group.folders["memory"]
    assert memory.parent == tmp_path / "memory" / "doce" / PARENT
    assert (memory / "memory.limit_in_bytes").read_text() == str(2 * GIB)
    assert (group.folders["pids"] / "pids.max").read_text() == "512"
    assert (group.folders["cpu"] / "cpu.shares").read_text() == "1024"
    assert (group.folders["cpu"] / "cpu.cfs_quota_us").read_text() == "100000"  # 1 of 2 cores
    group.add(1234)
    assert (memory / "cgroup.procs").read_text() == "1234"
    (memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    assert group.oom_kills() == 1
    group.remove()
    assert not memory.exists() and memory.parent.exists()


def test_no_cpu_quota_when_every_core_is_allowed(tmp_path, monkeypatch):
    _fake_kernel(monkeypatch)
    group = ServerGroup("7", Bounds(cpus=2.0), found=(1, _v1_tree(tmp_path)), cpu_count=2)
    group.create()
    assert not (group.folders["cpu"] / "cpu.cfs_quota_us").exists()


def test_a_group_left_by_a_dead_supervisor_is_removed(tmp_path, monkeypatch):
    _fake_kernel(monkeypatch)
    found = _v1_tree(tmp_path)
    stale = found[1].own / PARENT / f"9-{2**22 + 7}"  # no process has that pid
    stale.mkdir(parents=True)
    ServerGroup("9", Bounds(pids=10), found=(1, found)).create()
    assert not stale.exists()


def test_an_unwritable_hierarchy_is_a_problem_named_per_bound(tmp_path, monkeypatch):
    found = _v1_tree(tmp_path)

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(sandbox_bounds, "_fresh_group", denied)
    group = ServerGroup("1", Bounds(memory_bytes=GIB, pids=10), found=(1, found))
    group.create()
    assert len(group.problems) == 2
    assert group.problems[0].startswith("memory: cgroup v1")
    assert "not writable by doce" in group.problems[0]
    assert group.folders == {}


def test_no_hierarchy_means_every_bound_is_a_problem():
    group = ServerGroup("1", Bounds(memory_bytes=GIB, pids=10, cpus=1), found=(0, []))
    group.create()
    assert [p.split(":")[0] for p in group.problems] == ["memory", "processes", "CPU"]


def _v2_tree(tmp_path: Path, controllers: str = "cpu memory pids") -> Path:
    own = tmp_path / "doce.service"
    own.mkdir()
    for name in ("cgroup.procs", "cgroup.subtree_control"):
        (own / name).touch()
    (own / "cgroup.controllers").write_text(controllers + "\n")
    return own


def test_v2_doces_processes_move_to_a_leaf_and_the_server_gets_its_bounds(tmp_path, monkeypatch):
    _fake_kernel(monkeypatch)
    own = _v2_tree(tmp_path)
    (own / "cgroup.procs").write_text("100\n101\n")
    enabling = {"tries": 0}
    real_write = sandbox_bounds._write

    def write(path: Path, value: str) -> None:
        # The kernel refuses to delegate while the group has processes of its own.
        if path == own / "cgroup.subtree_control":
            enabling["tries"] += 1
            if enabling["tries"] == 1:
                raise OSError(errno.EBUSY, "Device or resource busy")
            (own / "cgroup.procs").write_text("")
        real_write(path, value)

    monkeypatch.setattr(sandbox_bounds, "_write", write)
    bounds = Bounds(memory_bytes=GIB, pids=100, cpus=0.5)
    group = ServerGroup("5", bounds, found=(2, [Hierarchy(2, frozenset(), own)]), cpu_count=2)
    group.create()
    assert group.problems == []
    assert (own / LEAF / "cgroup.procs").read_text() == "101"  # the last one moved
    assert set((own / "cgroup.subtree_control").read_text().split()) == {
        "+memory",
        "+pids",
        "+cpu",
    }
    folder = group.folders["memory"]
    assert folder.parent == own / PARENT
    assert (folder / "memory.max").read_text() == str(GIB)
    assert (folder / "memory.oom.group").read_text() == "1"
    assert (folder / "pids.max").read_text() == "100"
    assert (folder / "cpu.weight").read_text() == "100"
    assert (folder / "cpu.max").read_text() == "50000 100000"
    (folder / "memory.events").write_text(
        "low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\noom_group_kill 1\n"
    )
    assert group.oom_kills() == 1


def test_v2_from_doces_own_leaf_the_servers_sit_beside_it(tmp_path, monkeypatch):
    _fake_kernel(monkeypatch)
    base = _v2_tree(tmp_path)
    leaf = base / LEAF
    leaf.mkdir()
    group = ServerGroup("5", Bounds(pids=10), found=(2, [Hierarchy(2, frozenset(), leaf)]))
    group.create()
    assert group.folders["pids"].parent == base / PARENT


def test_v2_a_controller_not_delegated_is_a_problem(tmp_path, monkeypatch):
    _fake_kernel(monkeypatch)
    own = _v2_tree(tmp_path, controllers="pids")
    group = ServerGroup(
        "5", Bounds(memory_bytes=GIB, pids=10), found=(2, [Hierarchy(2, frozenset(), own)])
    )
    group.create()
    assert group.problems == [f"memory: the cgroup v2 memory controller is not delegated to {own}"]
    assert "pids" in group.folders


def test_disk_use_counts_every_file_once_and_follows_no_link(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "data").write_bytes(b"x" * 100_000)
    (tmp_path / "a" / "hard").hardlink_to(tmp_path / "a" / "data")
    (tmp_path / "link").symlink_to("/usr")
    used = sandbox_bounds.tree_bytes([str(tmp_path)])
    assert 100_000 <= used < 200_000


def test_the_disk_watch_says_when_the_files_pass_the_bound(tmp_path):
    (tmp_path / "data").write_bytes(b"x" * 200_000)
    watch = sandbox_bounds.DiskWatch([str(tmp_path)], 100_000, interval=0.01).start()
    watch._thread.join(timeout=10)
    assert watch.over


def test_the_exit_record_says_why_once(tmp_path):
    path = tmp_path / sandbox_bounds.EXIT_FILE
    assert sandbox_bounds.exit_record_read(path) == ""
    message = sandbox_bounds.memory_message(Bounds(memory_bytes=2 * GIB))
    sandbox_bounds.exit_record_write(str(path), bound="memory", message=message)
    assert sandbox_bounds.exit_record_read(path) == "it reached its memory bound of 2 GiB"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    sandbox_bounds.exit_record_clear(path)
    assert sandbox_bounds.exit_record_read(path) == ""


@pytest.mark.parametrize(
    ("value", "text"),
    [(2 * GIB, "2 GiB"), (768 * 1024**2, "768 MiB"), (int(1.5 * GIB), "1.5 GiB")],
)
def test_bounds_are_told_in_binary_units(value, text):
    assert human_bytes(value) == text
