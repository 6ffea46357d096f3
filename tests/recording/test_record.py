"""`poisoncheck record` against a fake tracefs in tmp_path: the default writes nothing, --apply
writes exactly the set-up (and the printed script does the same), errors exit 2 in one line."""

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from validator.recording import session
from validator.recording import tracefs as recording
from validator.recording.kprobes import enable_path, kprobe_line, kprobe_lines, upstream_events
from validator.recording.plan import Plan, remove_steps, setup_steps
from validator.cli import cli
from validator.cli.errors import Terminated
from validator.recording.kprobes import default_path, load_catalogue

CAT = load_catalogue()
FOREIGN = "p:kprobes/myprobe do_sys_open dfd=%ax"
OLD = "r16:poisoncheck/old_probe vfs_read ret=$retval"
UPSTREAM_SYMBOLS = [s.symbol for s in CAT.probes(only_upstream=True)]
ALL_SYMBOLS = list(dict.fromkeys(s.symbol for s in CAT.probes()))


@pytest.fixture(autouse=True)
def no_kvm(monkeypatch):
    """Tests never need /dev/kvm: guest_memfd's device is not found unless given."""
    monkeypatch.setattr(session, "discover_gmem_dev", lambda echo: None)


def make_tracefs(root: Path, functions=ALL_SYMBOLS, with_probe_dirs=True) -> Path:
    """What a tracefs holds once the kernel has created the probes' event directories."""
    root.mkdir()
    (root / "kprobe_events").write_text(f"{FOREIGN}\n{OLD}\n")
    (root / "tracing_on").write_text("1\n")
    (root / "buffer_size_kb").write_text("1408\n")
    (root / "trace_clock").write_text("[local] global counter\n")
    (root / "trace").write_text("# tracer: nop\n  old-1 [000] ..... 1.000: x: y\n")
    (root / "error_log").write_text("")
    (root / "available_filter_functions").write_text(
        "".join(f"{name}{' [kvm]' if 'gmem' in name else ''}\n" for name in functions))
    events = [(s, n) for s, n in upstream_events(CAT)] + [("kprobes", "myprobe"),
                                                           ("poisoncheck", "old_probe")]
    if with_probe_dirs:
        events += [("poisoncheck", s.name) for s in CAT.probes()]
    add_event_dirs(root, events)
    return root


def add_event_dirs(root: Path, events) -> None:
    for system, name in events:
        d = root / "events" / system / name
        d.mkdir(parents=True)
        (d / "enable").write_text("0\n")
        (d / "filter").write_text("none\n")


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def contents(root: Path) -> dict:
    return {k: v[0].decode() for k, v in snapshot(root).items()}


def run(*args):
    return CliRunner().invoke(cli, ["record", *args], catch_exceptions=False)


def expected_after_apply(before: dict, only_upstream=False, buffer_kb=32768) -> dict:
    after = dict(before)
    probes = CAT.probes(only_upstream)
    after["kprobe_events"] = (before["kprobe_events"] + "-:poisoncheck/old_probe\n"
                              + "".join(kprobe_line(s) + "\n" for s in probes))
    after["events/poisoncheck/old_probe/enable"] = "0\n"
    after["tracing_on"] = "1\n"
    after["buffer_size_kb"] = f"{buffer_kb}\n"
    after["trace_clock"] = "global\n"
    after["trace"] = ""
    for spec in probes:
        if spec.filter:
            after[f"events/poisoncheck/{spec.name}/filter"] = spec.filter + "\n"
    for spec in probes + CAT.tracepoints():
        after[enable_path(spec)] = "1\n"
    return after


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


# ---------------------------------------------------------------- default: print only

def test_default_prints_the_setup_and_writes_nothing(tmp_path):
    root = make_tracefs(tmp_path / "tracing")
    before = snapshot(root)
    result = run("--tracefs", str(root))
    assert result.exit_code == 0, result.output
    assert snapshot(root) == before
    script = result.stdout
    assert script.startswith("#!/bin/sh\n")
    assert f"T={root}\n" in script
    for line in kprobe_lines(CAT):
        assert script.count(f"echo '{line}' >> \"$T/kprobe_events\"\n") == 1, line
    assert "> \"$T/kprobe_events\"" not in script.replace(">> \"$T/kprobe_events\"", "")
    for system, name in upstream_events(CAT):
        assert f'echo 1 > "$T/events/{system}/{name}/enable"\n' in script
    assert "echo \"-:poisoncheck/$e\" >> \"$T/kprobe_events\"" in script
    assert "echo 'req == 0x301 && bugged == 1' > \"$T/events/poisoncheck/vm_bugged/filter\"" in script
    # order: stop, remove old, buffer, probes, filters, enable, start
    positions = [script.index(s) for s in (
        'echo 0 > "$T/tracing_on"', "-:poisoncheck/$e", 'echo 32768 > "$T/buffer_size_kb"',
        "p:poisoncheck/gmem_alloc", "/gmem_alloc/filter", "/gmem_alloc/enable",
        "/kmem/mm_page_alloc/enable", 'echo 1 > "$T/tracing_on"')]
    assert positions == sorted(positions)
    assert f"cat {root}/trace > run.trace" in script
    assert f"cat {root}/trace_pipe" in script
    assert "poisoncheck validate run.trace --design D" in script
    assert "tdx_set_hwpoison" in script and "--only-upstream" in script


def test_default_needs_no_tracefs():
    result = run("--tracefs", "/nonexistent/tracing")
    assert result.exit_code == 0
    assert "T=/nonexistent/tracing\n" in result.stdout


def test_only_upstream_and_buffer_size():
    result = run("--only-upstream", "--buffer-kb", "4096", "--tracefs", "/nonexistent")
    assert result.exit_code == 0
    for spec in CAT.probes():
        assert (kprobe_line(spec) in result.stdout) == spec.upstream, spec.name
        assert (f"/poisoncheck/{spec.name}/enable" in result.stdout) == spec.upstream
    assert 'echo 4096 > "$T/buffer_size_kb"' in result.stdout
    assert "needs the design's patch" not in result.stdout


def test_check_without_apply_writes_nothing(tmp_path):
    root = make_tracefs(tmp_path / "tracing")
    before = snapshot(root)
    result = run("--tracefs", str(root), "--check", "--only-upstream")
    assert result.exit_code == 0, result.output
    upstream = sum(1 for spec in CAT.probes() if spec.upstream)
    assert f"all {upstream} probed functions are in" in result.stderr
    assert snapshot(root) == before


# ---------------------------------------------------------------- --apply

def test_apply_writes_exactly_the_setup(tmp_path):
    root = make_tracefs(tmp_path / "tracing")
    before = contents(root)
    result = run("--apply", "--tracefs", str(root))
    assert result.exit_code == 0, result.output
    assert contents(root) == expected_after_apply(before)
    out = result.stdout.splitlines()
    # each write reported, in the order of the set-up
    assert out[0] == f"wrote {root}/tracing_on: 0"
    assert out[1] == f"wrote {root}/events/poisoncheck/old_probe/enable: 0"
    assert out[2] == f"appended to {root}/kprobe_events: -:poisoncheck/old_probe"
    assert out[3] == f"wrote {root}/buffer_size_kb: 32768"
    first_probe = out.index(f"appended to {root}/kprobe_events: {kprobe_lines(CAT)[0]}")
    first_filter = next(i for i, line in enumerate(out) if line.endswith("magic == 0x474d454d"))
    assert 3 < first_probe < first_filter
    probes, events = len(CAT.probes()), len(CAT.probes()) + len(upstream_events(CAT))
    filters = sum(1 for s in CAT.probes() if s.filter)
    writes = 3 + 2 + probes + filters + events + 2
    assert f"{writes} writes to {root}." in out
    assert out[out.index(f"{writes} writes to {root}.") - 1] == f"wrote {root}/tracing_on: 1"
    assert "poisoncheck validate run.trace --design D" in result.stdout
    assert result.stderr == ""


def test_apply_only_upstream_with_check(tmp_path):
    root = make_tracefs(tmp_path / "tracing")
    before = contents(root)
    result = run("--apply", "--check", "--only-upstream", "--buffer-kb", "2048",
                 "--tracefs", str(root))
    assert result.exit_code == 0, result.output
    assert contents(root) == expected_after_apply(before, only_upstream=True, buffer_kb=2048)


def test_apply_twice_replaces_only_our_probes(tmp_path):
    root = make_tracefs(tmp_path / "tracing")
    assert run("--apply", "--tracefs", str(root)).exit_code == 0
    # what the kernel would show now: the foreign probe and ours
    (root / "kprobe_events").write_text(FOREIGN + "\n" + "".join(
        line + "\n" for line in kprobe_lines(CAT)))
    result = run("--apply", "--tracefs", str(root))
    assert result.exit_code == 0, result.output
    text = (root / "kprobe_events").read_text().splitlines()
    assert text[0] == FOREIGN
    removed = [line for line in text if line.startswith("-:")]
    assert removed == [f"-:poisoncheck/{s.name}" for s in CAT.probes()]
    assert "-:kprobes/myprobe" not in text


@pytest.mark.skipif(not (shutil.which("sh") and shutil.which("sed")), reason="needs sh and sed")
def test_the_printed_script_does_what_apply_does(tmp_path):
    by_apply = make_tracefs(tmp_path / "a")
    by_script = make_tracefs(tmp_path / "b")
    assert run("--apply", "--tracefs", str(by_apply)).exit_code == 0
    script = run("--tracefs", str(by_script)).stdout
    done = subprocess.run(["sh"], input=script, text=True, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert contents(by_script) == contents(by_apply)


# ---------------------------------------------------------------- errors: exit 2, one line

def test_not_a_tracefs(tmp_path):
    root = tmp_path / "plain"
    root.mkdir()
    (root / "tracing_on").write_text("0\n")
    before = snapshot(root)
    line = one_error_line(run("--apply", "--tracefs", str(root)))
    assert f"{root} is not a tracefs (no tracing_on file or events directory)" in line
    assert snapshot(root) == before
    line = one_error_line(run("--apply", "--tracefs", str(tmp_path / "absent")))
    assert "no such directory" in line
    assert not (tmp_path / "absent").exists()


def test_missing_upstream_events_are_left_out_with_a_note(tmp_path):
    root = make_tracefs(tmp_path / "tracing")
    shutil.rmtree(root / "events" / "kvmmmu")
    result = run("--apply", "--tracefs", str(root))
    assert result.exit_code == 0, result.output
    assert ("2 upstream event(s) missing" in result.stderr
            and "kvmmmu:kvm_tdp_mmu_spte_changed (spte_changed)" in result.stderr)
    assert "kvmmmu" not in result.stdout
    assert (root / "events/kmem/mm_page_alloc/enable").read_text() == "1\n"


def refusing_kernel(monkeypatch, root: Path, refused: str, reason: str):
    """kprobe_events refuses one line with EINVAL and logs why, as tracefs does."""
    real = recording._write_file

    def kernel(path, text, append):
        if path.name == "kprobe_events" and text == refused:
            with open(root / "error_log", "a") as log:
                log.write(f"[   12.345678] trace_kprobe: error: {reason}\n"
                          f"  Command: {text}\n              ^\n")
            raise OSError(errno.EINVAL, "Invalid argument", str(path))
        real(path, text, append)

    monkeypatch.setattr(recording, "_write_file", kernel)


def test_a_refused_probe_line_is_left_out_with_the_kernels_reason(tmp_path, monkeypatch):
    root = make_tracefs(tmp_path / "tracing")
    # an older complaint in error_log is not this line's reason
    (root / "error_log").write_text("[    1.000000] trace_kprobe: error: Some old reason\n")
    third = kprobe_lines(CAT)[2]
    name = CAT.probes()[2].name
    refusing_kernel(monkeypatch, root, third, "Invalid argument type")
    result = run("--apply", "--tracefs", str(root))
    assert result.exit_code == 0, result.output
    assert (f"note: probe {name} left out: the kernel refused line 3 of kprobe_events: "
            f"{third!r} (Invalid argument); error_log: Invalid argument type") in result.stderr
    events = (root / "kprobe_events").read_text()
    assert third not in events
    assert kprobe_lines(CAT)[3] + "\n" in events          # the later lines still go in
    assert f"skipped {root}/events/poisoncheck/{name}/enable: its probe was left out" \
        in result.stdout
    assert (root / f"events/poisoncheck/{name}/enable").read_text() == "0\n"
    assert (root / "tracing_on").read_text() == "1\n"


def test_an_old_complaint_in_error_log_is_not_given_as_the_reason(tmp_path, monkeypatch):
    root = make_tracefs(tmp_path / "tracing")
    (root / "error_log").write_text("[    1.000000] trace_kprobe: error: Some old reason\n")
    third = kprobe_lines(CAT)[2]
    real = recording._write_file

    def kernel(path, text, append):     # refuses without a word in error_log
        if path.name == "kprobe_events" and text == third:
            raise OSError(errno.EINVAL, "Invalid argument", str(path))
        real(path, text, append)

    monkeypatch.setattr(recording, "_write_file", kernel)
    result = run("--apply", "--tracefs", str(root))
    assert result.exit_code == 0
    assert "Some old reason" not in result.stderr
    assert f"(Invalid argument); the kernel says why in {root}/error_log" in result.stderr


def test_with_check_a_refused_probe_line_is_an_error_and_undone(tmp_path, monkeypatch):
    root = make_tracefs(tmp_path / "tracing")
    third = kprobe_lines(CAT)[2]
    refusing_kernel(monkeypatch, root, third, "Invalid argument type")
    result = run("--apply", "--check", "--tracefs", str(root))
    assert result.exit_code == 2 and "Traceback" not in result.output
    line = result.stderr.splitlines()[-1]
    assert line == (f"Error: the kernel refused line 3 of kprobe_events: {third!r} "
                    f"(Invalid argument); error_log: Invalid argument type; "
                    f"the set-up written so far was undone")
    # the writes before it were made and reported, then undone: our probes removed again
    events = (root / "kprobe_events").read_text()
    assert kprobe_lines(CAT)[1] + "\n" in events
    assert events.endswith(f"-:poisoncheck/{CAT.probes()[1].name}\n")
    assert (root / "tracing_on").read_text() == "0\n"


# The functions of Debian's 7.2.13 kernel with kvm and kvm_amd loaded (the lab): no TDX,
# no in-place conversion, none of the designs' own functions.
LAB_72_FUNCTIONS = ["filemap_add_folio", "kvm_gmem_get_pfn", "kvm_gmem_fault_user_mapping",
                    "kvm_gmem_fallocate", "kvm_gmem_error_folio", "kvm_gmem_free_folio",
                    "kvm_make_all_cpus_request", "free_huge_folio", "alloc_hugetlb_folio",
                    "anon_inode_make_secure_inode", "kvm_gmem_create"]


def test_probes_on_functions_the_kernel_lacks_are_left_out_with_a_note(tmp_path):
    root = make_tracefs(tmp_path / "tracing", functions=LAB_72_FUNCTIONS)
    result = run("--apply", "--tracefs", str(root))
    assert result.exit_code == 0, result.output
    present = [s for s in CAT.probes() if s.symbol in LAB_72_FUNCTIONS]
    absent = [s for s in CAT.probes() if s.symbol not in LAB_72_FUNCTIONS]
    assert present and absent
    events = (root / "kprobe_events").read_text()
    for spec in present:
        assert kprobe_line(spec) + "\n" in events
        assert (root / enable_path(spec)).read_text() == "1\n"
    for spec in absent:
        assert f"poisoncheck/{spec.name} " not in events
        assert (root / enable_path(spec)).read_text() == "0\n"
    notes = [line for line in result.stderr.splitlines() if "left out" in line]
    assert len(notes) == 1
    assert f"{len(absent)} probe(s) left out" in notes[0]
    for spec in absent:     # each named, with what the capture loses
        assert f"{spec.name} on {spec.symbol} (no {spec.protocol} events" in notes[0]
    assert "gmem_alloc" not in notes[0]


def test_a_renamed_function_is_probed_under_the_name_the_kernel_has(tmp_path):
    """`aliases` lists a function's other names (same arguments); the first the kernel
    has is probed."""
    text = default_path().read_text()
    table = "[poisoncheck.gmem_get_pfn]\n"
    assert table in text
    catalogue = tmp_path / "renamed.toml"
    catalogue.write_text(text.replace(table, table + 'aliases = ["kvm_gmem_get_pfn_v2"]\n'))
    renamed = load_catalogue(catalogue).get(None, "gmem_get_pfn")
    root = make_tracefs(tmp_path / "tracing", functions=[
        f for f in ALL_SYMBOLS if f != "kvm_gmem_get_pfn"] + ["kvm_gmem_get_pfn_v2"])
    result = run("--apply", "--check", "--catalogue", str(catalogue), "--tracefs", str(root))
    assert result.exit_code == 0, result.output
    events = (root / "kprobe_events").read_text()
    assert kprobe_line(renamed, "kvm_gmem_get_pfn_v2") + "\n" in events
    assert " kvm_gmem_get_pfn " not in events
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(table, table + 'aliases = ["no spaces"]\n'))
    assert "aliases must list" in one_error_line(run("--catalogue", str(bad)))


def test_the_marker_names_the_probes_left_out(tmp_path):
    root = make_tracefs(tmp_path / "tracing", functions=LAB_72_FUNCTIONS)
    (root / "trace_marker").write_text("")
    result = run("--apply", "--tracefs", str(root), "--gmem-dev", "0:61")
    assert result.exit_code == 0, result.output
    absent = sorted(s.name for s in CAT.probes() if s.symbol not in LAB_72_FUNCTIONS)
    assert len(absent) == 8         # as on the lab's 7.2 kernel
    assert (root / "trace_marker").read_text() == (
        f"poisoncheck gmem_dev=0:61 kprobes=1 left_out={','.join(absent)}\n")


def test_tracefs_writes_do_not_seek(tmp_path, monkeypatch):
    """A write-only kprobe_events refuses lseek with EINVAL (7.2); Python's append mode seeks
    after opening, which made record --apply fail at its first probe line."""
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, flags, *a: (opened.append((path, flags)),
                                                              real_open(path, flags, *a))[1])
    monkeypatch.setattr(os, "lseek", lambda *a: (_ for _ in ()).throw(
        OSError(errno.EINVAL, "Invalid argument")))
    target = tmp_path / "kprobe_events"
    target.write_text("old\n")
    recording._write_file(target, "p:g/x f", append=True)
    recording._write_file(tmp_path / "kprobe_events", "p:g/y f", append=True)
    assert target.read_text() == "old\np:g/x f\np:g/y f\n"
    assert opened and all(flags & os.O_APPEND and not flags & os.O_TRUNC for _, flags in opened)


def test_kernel_refuses_a_filter(tmp_path, monkeypatch):
    root = make_tracefs(tmp_path / "tracing")
    real = recording._write_file

    def kernel(path, text, append):
        if path.name == "filter" and path.parent.name == "vm_bugged":
            raise OSError(errno.EINVAL, "Invalid argument", str(path))
        real(path, text, append)

    monkeypatch.setattr(recording, "_write_file", kernel)
    line = one_error_line(run("--apply", "--tracefs", str(root)))
    assert "refused the filter of poisoncheck/vm_bugged: 'req == 0x301 && bugged == 1'" in line


def test_permission_denied(tmp_path, monkeypatch):
    root = make_tracefs(tmp_path / "tracing")

    def kernel(path, text, append):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(recording, "_write_file", kernel)
    line = one_error_line(run("--apply", "--tracefs", str(root)))
    assert line == (f"Error: cannot write {root}/tracing_on: Permission denied (run as root); "
                    f"the set-up written so far was undone")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files")
def test_permission_denied_for_real(tmp_path):
    root = make_tracefs(tmp_path / "tracing")
    (root / "buffer_size_kb").chmod(0o444)
    line = one_error_line(run("--apply", "--tracefs", str(root)))
    assert line == f"Error: cannot write {root}/buffer_size_kb: Permission denied (run as root)"


def test_probe_directory_not_created(tmp_path):
    # a kernel that accepted the lines but has no event directory for them
    root = make_tracefs(tmp_path / "tracing", with_probe_dirs=False)
    line = one_error_line(run("--apply", "--tracefs", str(root)))
    assert "events/poisoncheck/gmem_alloc/filter: No such file or directory" in line
    assert "the probe was not created" in line


def test_check_reports_missing_functions(tmp_path):
    missing = {"kvm_gmem_get_pfn", "tdx_sept_set_private_spte"}
    root = make_tracefs(tmp_path / "tracing",
                        functions=[f for f in UPSTREAM_SYMBOLS if f not in missing])
    before = snapshot(root)
    line = one_error_line(run("--apply", "--check", "--tracefs", str(root)))
    assert ("kvm_gmem_get_pfn (gmem_get_pfn), tdx_sept_set_private_spte (tdx_aug, tdx_remove)"
            in line)
    assert "tdx_set_hwpoison (set_hwpoison; design patch)" in line
    assert "use --only-upstream" in line
    assert snapshot(root) == before
    line = one_error_line(run("--check", "--only-upstream", "--tracefs", str(root)))
    assert "2 probed function(s) not in" in line and "design patch" not in line


def test_check_without_the_function_list(tmp_path):
    root = make_tracefs(tmp_path / "tracing")
    (root / "available_filter_functions").unlink()
    result = run("--check", "--tracefs", str(root))
    assert result.exit_code == 0
    assert "symbols not checked" in result.stderr


def test_bad_catalogue(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("group = \"poisoncheck\"\n[poisoncheck.x]\nprotocol = \"nope\"\nkind = \"kprobe\"\n")
    line = one_error_line(run("--catalogue", str(bad)))
    assert f"{bad}: [poisoncheck.x]: protocol 'nope'" in line


def test_an_endless_or_binary_catalogue_is_refused_without_reading_it_all(tmp_path):
    """--catalogue /dev/zero read until MemoryError; now at most 1 MiB is read."""
    line = one_error_line(run("--catalogue", "/dev/zero"))
    assert "/dev/zero: larger than 1024 KiB" in line
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"group = \"\xff\xfe\"\n")
    assert "not UTF-8 text" in one_error_line(run("--catalogue", str(binary)))


# ---------------------------------------------------------------- instances, tracepoints only, undo

def add_instance(root: Path, name: str) -> Path:
    """What the kernel creates in a new instance (a fake: mkdir does it for real)."""
    inst = root / "instances" / name
    inst.mkdir(parents=True)
    for f in ("tracing_on", "buffer_size_kb", "trace_clock", "trace", "trace_marker",
              "set_event_pid"):
        (inst / f).write_text("")
    add_event_dirs(inst, upstream_events(CAT))
    return inst


def kernel_without_kprobes(root: Path) -> Path:
    make_tracefs(root, with_probe_dirs=False)
    (root / "kprobe_events").unlink()
    shutil.rmtree(root / "events" / "poisoncheck")
    shutil.rmtree(root / "events" / "kprobes")
    return root


def test_tracepoints_alone_where_the_kernel_has_no_kprobes(tmp_path):
    root = kernel_without_kprobes(tmp_path / "tracing")
    add_instance(root, "pc")
    global_before = {k: v for k, v in contents(root).items() if not k.startswith("instances/")}
    result = run("--apply", "--tracefs", str(root), "--instance", "pc", "--gmem-dev", "0:16")
    assert result.exit_code == 0, result.output
    assert "no kprobe events on this kernel" in result.stderr and "aug" in result.stderr
    after = contents(root)
    # the global instance is untouched; everything went into instances/pc
    assert {k: v for k, v in after.items() if not k.startswith("instances/")} == global_before
    inst = "instances/pc/"
    for spec in CAT.tracepoints():
        assert after[inst + enable_path(spec)] == "1\n", spec.name
    for name in ("mm_filemap_add_to_page_cache", "mm_filemap_delete_from_page_cache"):
        assert after[f"{inst}events/filemap/{name}/filter"] == "s_dev == 16\n"
    assert after[inst + "trace_marker"] == "poisoncheck gmem_dev=0:16 kprobes=0\n"
    assert after[inst + "tracing_on"] == "1\n"
    assert f"cat {root}/instances/pc/trace > run.trace" in result.stdout


def test_remove_undoes_the_instance_setup(tmp_path):
    root = kernel_without_kprobes(tmp_path / "tracing")
    add_instance(root, "pc")
    assert run("--apply", "--tracefs", str(root), "--instance", "pc").exit_code == 0
    # a fake instance keeps its files, so rmdir fails; the undo still turns everything off
    result = run("--remove", "--apply", "--tracefs", str(root), "--instance", "pc")
    assert result.exit_code == 2 and "Directory not empty" in result.stderr, result.output
    after = contents(root)
    assert after["instances/pc/tracing_on"] == "0\n"
    assert all(after[f"instances/pc/{enable_path(s)}"] == "0\n" for s in CAT.tracepoints())
    assert "could not rmdir" in result.stdout
    # with an empty instance directory (the kernel's rmdir removes the files itself) it goes
    shutil.rmtree(root / "instances" / "pc")
    (root / "instances" / "pc").mkdir()
    assert run("--remove", "--apply", "--tracefs", str(root), "--instance", "pc").exit_code == 0
    assert not (root / "instances" / "pc").exists()


def test_remove_with_kprobes_removes_our_probes_only(tmp_path):
    root = make_tracefs(tmp_path / "tracing")
    assert run("--apply", "--tracefs", str(root)).exit_code == 0
    (root / "kprobe_events").write_text(FOREIGN + "\n" + "".join(
        line + "\n" for line in kprobe_lines(CAT)))
    result = run("--remove", "--apply", "--tracefs", str(root))
    assert result.exit_code == 0, result.output
    text = (root / "kprobe_events").read_text()
    for spec in CAT.probes():
        assert f"-:poisoncheck/{spec.name}\n" in text
        assert (root / enable_path(spec)).read_text() == "0\n"
    assert "-:kprobes/myprobe" not in text
    assert (root / "tracing_on").read_text() == "0\n"
    # the page-cache device filter of the set-up is cleared too
    assert (root / "events/filemap/mm_filemap_add_to_page_cache/filter").read_text() == "0\n"


def test_the_printed_instance_script_does_what_apply_does(tmp_path):
    by_apply = kernel_without_kprobes(tmp_path / "a")
    by_script = kernel_without_kprobes(tmp_path / "b")
    for root in (by_apply, by_script):
        add_instance(root, "pc")
    args = ["--instance", "pc", "--gmem-dev", "0:16", "--pid", "42"]
    assert run("--apply", "--tracefs", str(by_apply), *args).exit_code == 0
    script = run("--tracefs", str(by_script), *args).stdout
    done = subprocess.run(["sh"], input=script, text=True, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert contents(by_script) == contents(by_apply)
    assert contents(by_apply)["instances/pc/set_event_pid"] == "42\n"


def test_bad_instance_name():
    result = run("--instance", "../x")
    assert result.exit_code == 2 and "instance name" in result.output


@pytest.mark.parametrize("stop", [KeyboardInterrupt, Terminated])
def test_an_interrupt_midway_undoes_the_setup(tmp_path, monkeypatch, stop):
    """SIGINT or SIGTERM while --apply writes: what was written is undone, then it stops."""
    root = make_tracefs(tmp_path / "tracing")
    real = recording._write_file
    third = kprobe_lines(CAT)[2]

    def kernel(path, text, append):
        if path.name == "kprobe_events" and text == third:
            raise stop
        real(path, text, append)

    monkeypatch.setattr(recording, "_write_file", kernel)
    plan = Plan(CAT)
    with pytest.raises(stop):
        recording.apply_steps(root, setup_steps(plan), plan, lambda _: None,
                              undo=remove_steps(plan))
    events = (root / "kprobe_events").read_text()
    assert events.endswith(f"-:poisoncheck/{CAT.probes()[1].name}\n")
    assert (root / "tracing_on").read_text() == "0\n"
