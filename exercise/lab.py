"""`make lab-trace`: real captures from a real kernel with kprobes, memory errors and nested
KVM, on a machine with neither /dev/kvm nor a suitable kernel of its own.

1. The kernel: Debian's newest packaged kernel (the `linux-binary-VER` and
   `linux-modules-VER` packages of the suite `sid`), downloaded once into build/lab/ with
   a private apt state and the mirror the machine's own apt sources name, its signature
   checked against the machine's Debian keyring, the .debs' sha256 and the version recorded
   in build/lab/kernel.json.  The modules are decompressed (virtme-ng's initramfs loads
   plain .ko files only) and depmod'ed.  KERNEL=vmlinuz MODULES=dir runs your own kernel
   instead (MODULES: the lib/modules/VER folder that `make modules_install` makes).
2. The boot: virtme-ng (`vng`, installed by `pip install .[lab]`) under QEMU with TCG and
   `-cpu EPYC,+svm`, so the guest has nested SVM and /dev/kvm; the host's root is the
   guest's, read-only, with one shared folder for the results.
3. Inside: exercise/lab_guest.py runs each exercise under `poisoncheck record --apply`
   and leaves the captures, their JSON summaries and a log in the shared folder; the VM
   then powers off.  The host's tracefs is never touched; QEMU is stopped (its whole
   process group) on Ctrl-C, SIGTERM or the time limit.
4. On the host: every capture is validated with every design.

Exit codes: 0 the captures were made and validated (verdicts are printed; lab-check
compares them), 2 something the lab needs is missing or failed (one line), 130/143
interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
from validator.tlc.setup import sha256_of  # noqa: E402
SUITE = "sid"                      # Debian's newest suite: its kernel is the newest packaged
FLAVOUR = "amd64"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
BOOT_LIMIT = 900                   # seconds for the whole VM run
QEMU = "qemu-system-x86_64"
NEEDS = {QEMU: "qemu-system-x86", "depmod": "kmod", "xz": "xz-utils",
         "dpkg-deb": "dpkg", "apt-get": "apt"}


class LabError(Exception):
    """One line for stderr, exit 2."""


class Interrupted(Exception):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.code = 128 + signum


# ---------------------------------------------------------------- the machine's apt sources

def debian_mirror(sources: tuple[Path, ...] = APT_SOURCES) -> str:
    """The URI of the first Debian archive (not its security archive) the machine's apt
    sources name, one-line or deb822 format."""
    texts = []
    for place in sources:
        files = sorted(place.glob("*.list")) + sorted(place.glob("*.sources")) \
            if place.is_dir() else [place]
        for path in files:
            try:
                texts.append(path.read_text(errors="replace"))
            except OSError:
                continue
    for text in texts:
        for uri in _uris(text):
            if re.search(r"/debian/?$", uri) and "security" not in uri:
                return uri.rstrip("/")
    raise LabError("no Debian archive in the machine's apt sources "
                   f"({', '.join(map(str, sources))}); the lab downloads its kernel from it")


def _uris(text: str):
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        one_line = re.match(r"deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+", line)
        if one_line:
            yield one_line.group(1)
        elif line.lower().startswith("uris:"):
            yield from line.split(":", 1)[1].split()


# ---------------------------------------------------------------- the kernel

class Apt:
    """apt-get and apt-cache with a private state folder and one source: the suite."""

    def __init__(self, state: Path, mirror: str):
        self.state = state
        for sub in ("lists/partial", "cache/archives/partial"):
            (state / sub).mkdir(parents=True, exist_ok=True)
        (state / "sources.list").write_text(
            f"deb [signed-by={KEYRING}] {mirror} {SUITE} main\n")
        self.options = [
            "-o", f"Dir::Etc::SourceList={state / 'sources.list'}",
            "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State={state}", "-o", f"Dir::State::Lists={state / 'lists'}",
            "-o", f"Dir::Cache={state / 'cache'}", "-o", "Debug::NoLocking=1",
            "-o", "APT::Sandbox::User=root"]

    def run(self, tool: str, *args: str, cwd: Path | None = None) -> str:
        done = subprocess.run([tool, *self.options, *args], cwd=cwd, text=True,
                              capture_output=True)
        if done.returncode != 0:
            last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["?"]
            raise LabError(f"{tool} {args[0]} failed (exit {done.returncode}): {last[0]}")
        return done.stdout


def newest_kernel(apt: Apt) -> str:
    """The version string of the suite's newest standard kernel, e.g. 7.2.13+deb14-amd64."""
    shown = apt.run("apt-cache", "show", f"linux-image-{FLAVOUR}")
    for depends in re.findall(r"^Depends: (.*)$", shown, re.M):   # newest first
        m = re.search(rf"linux-image-(\S+-{FLAVOUR})\b", depends)
        if m:
            return m.group(1)
    raise LabError(f"no linux-image-{FLAVOUR} in Debian {SUITE}")


def debian_kernel(lab: Path, refresh: bool) -> tuple[Path, dict]:
    """build/lab/VER/root/lib/modules/VER/vmlinuz and its record, downloaded once."""
    record_path = lab / "kernel.json"
    if record_path.is_file() and not refresh:
        record = json.loads(record_path.read_text())
        image = Path(record["vmlinuz"])
        if image.is_file():
            return image, record
    mirror = debian_mirror()
    apt = Apt(lab / "apt", mirror)
    print(f"lab: looking up Debian {SUITE}'s newest kernel", file=sys.stderr)
    apt.run("apt-get", "update")
    version = newest_kernel(apt)
    debs = lab / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    packages = [f"linux-binary-{version}", f"linux-modules-{version}"]
    print(f"lab: downloading {', '.join(packages)}", file=sys.stderr)
    apt.run("apt-get", "download", *packages, cwd=debs)
    root = lab / version / "root"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    files = {}
    for package in packages:
        deb = next(debs.glob(f"{package}_*.deb"))
        files[deb.name] = sha256_of(deb)
        _run(["dpkg-deb", "-x", str(deb), str(root)], "dpkg-deb -x")
    (root / "lib").symlink_to("usr/lib")
    moddir = root / "lib" / "modules" / version
    compressed = [str(p) for p in moddir.rglob("*.ko.xz")]
    for i in range(0, len(compressed), 500):
        _run(["xz", "-d", *compressed[i:i + 500]], "xz -d (the modules)")
    _run(["depmod", "-a", "-b", str(root), version], "depmod")
    record = {"version": version, "suite": SUITE, "packages": files,
              "vmlinuz": str(moddir / "vmlinuz"),
              "downloaded": time.strftime("%Y-%m-%d")}
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return moddir / "vmlinuz", record


def own_kernel(lab: Path, kernel: Path, modules: Path | None) -> tuple[Path, dict]:
    """A user's kernel laid out as virtme-ng finds its modules: ROOT/boot/vmlinuz-VER and
    ROOT/lib/modules/VER (symlinks to the user's files)."""
    if not kernel.is_file():
        raise LabError(f"KERNEL={kernel}: no such file")
    version = modules.name if modules else "custom"
    root = lab / "own" / version
    if root.exists():
        shutil.rmtree(root)
    (root / "boot").mkdir(parents=True)
    image = root / "boot" / f"vmlinuz-{version}"
    image.symlink_to(kernel.resolve())
    if modules:
        if not modules.is_dir():
            raise LabError(f"MODULES={modules}: no such folder")
        (root / "lib" / "modules").mkdir(parents=True)
        (root / "lib" / "modules" / version).symlink_to(modules.resolve())
    return image, {"version": version, "kernel": str(kernel), "modules": str(modules)}


def _run(args: list[str], what: str) -> None:
    done = subprocess.run(args, text=True, capture_output=True)
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["?"]
        raise LabError(f"{what} failed (exit {done.returncode}): {last[0]}")


# ---------------------------------------------------------------- the boot

def require_tools(venv_bin: Path) -> Path:
    for tool, package in NEEDS.items():
        if shutil.which(tool) is None:
            raise LabError(f"{tool} is missing: sudo apt-get install {package}")
    vng = venv_bin / "vng"
    if not vng.is_file():
        raise LabError(f"{vng} is missing: {venv_bin / 'pip'} install -e '.[lab]' "
                       "(virtme-ng; `make lab-trace` installs it)")
    return vng


def boot(vng: Path, image: Path, out: Path, only: list[str], limit: float) -> float:
    """Run the exercises in the VM; returns its seconds.  The VM's whole process group is
    stopped on a signal or past `limit`."""
    guest = [sys.executable, str(HERE / "lab_guest.py"), "--out", str(out)]
    for name in only:
        guest += ["--only", name]
    args = [str(vng), "--run", str(image), "--disable-kvm", "--force-9p",
            "--qemu-opts=-cpu EPYC,+svm", "--memory", "2G", "--cpus", "2",
            "--rwdir", str(out), "--exec", " ".join(guest)]
    env = dict(os.environ, PATH=f"{vng.parent}:{os.environ.get('PATH', '')}")
    started = time.monotonic()
    with open(out / "vm.log", "w") as log:
        child = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 env=env, cwd=ROOT, start_new_session=True)
        try:
            child.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            stop(child)
            raise LabError(f"the VM ran past {limit:.0f} s and was stopped; see {out}/vm.log")
        except BaseException:
            stop(child)
            raise
    return time.monotonic() - started


def stop(child: subprocess.Popen) -> None:
    """SIGTERM to the VM's process group, SIGKILL after 10 s: no QEMU is left behind."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        try:
            child.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# ---------------------------------------------------------------- after the VM

def collect(out: Path) -> dict:
    report_path = out / "guest.json"
    if not report_path.is_file():
        raise LabError(f"the VM left no {report_path}: it did not run the exercises; "
                       f"see {out}/vm.log and {out}/guest.log")
    report = json.loads(report_path.read_text())
    for name, result in report["exercises"].items():
        if result.get("record_exit") != 0 or result.get("exit") != 0:
            raise LabError(f"exercise {name} failed in the VM ({result}); see {out}/guest.log")
        if result.get("undo_exit") != 0:
            raise LabError(f"undoing record's set-up after {name} failed; see {out}/guest.log")
    if report.get("tracefs_instances_left") or report.get("kprobe_events_left"):
        raise LabError(f"the VM's tracefs was left set up: {report}")
    return report


def validate(out: Path, names: list[str]) -> int:
    traces = [str(out / f"{name}.trace") for name in names]
    done = subprocess.run([sys.executable, "-m", "validator", "validate", *traces,
                           "--design", "all", "--json"], cwd=ROOT, text=True,
                          capture_output=True)
    if done.returncode == 2:
        raise LabError(f"validate refused a capture: {done.stderr.strip()}")
    (out / "verdicts.json").write_text(done.stdout)
    for item in json.loads(done.stdout):
        where = f" at line {item['line']}" if item.get("line") else ""
        print(f"{Path(item['trace']).name}: {item['design']}: {item['verdict']}{where}")
    return done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "lab" / "captures")
    parser.add_argument("--kernel", type=Path, default=os.environ.get("KERNEL") or None)
    parser.add_argument("--modules", type=Path, default=os.environ.get("MODULES") or None)
    parser.add_argument("--refresh", action="store_true",
                        help="look up Debian's newest kernel again")
    parser.add_argument("--only", action="append", default=[],
                        help="run this exercise only (repeatable)")
    parser.add_argument("--limit", type=float, default=BOOT_LIMIT)
    args = parser.parse_args()

    def interrupted(signum, frame):
        raise Interrupted(signum)

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    lab = ROOT / "build" / "lab"
    try:
        vng = require_tools(Path(sys.executable).parent)
        if args.kernel:
            image, record = own_kernel(lab, args.kernel, args.modules)
        else:
            image, record = debian_kernel(lab, args.refresh)
        if args.out.exists():
            shutil.rmtree(args.out)
        args.out.mkdir(parents=True)
        (args.out / "kernel.json").write_text(json.dumps(record, indent=2) + "\n")
        print(f"lab: booting {record['version']} under QEMU (TCG, nested SVM)", file=sys.stderr)
        seconds = boot(vng, image, args.out, args.only, args.limit)
        report = collect(args.out)
        names = list(report["exercises"])
        print(f"lab: {len(names)} capture(s) in {args.out} ({seconds:.0f} s in the VM)",
              file=sys.stderr)
        validate(args.out, names)
        return 0
    except LabError as err:
        print(f"lab: {err}", file=sys.stderr)
        return 2
    except Interrupted as stop_:
        print(f"lab: interrupted ({stop_}); the VM was stopped", file=sys.stderr)
        return stop_.code


if __name__ == "__main__":
    sys.exit(main())
