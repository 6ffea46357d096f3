"""A realistic, valid trace for `make bench`: a random walk over the mirror, folio by folio.

    python -m validator.synth.benchgen OUT --lines 1000000 --design HWPoison --failures 3
    python -m validator.synth.benchgen OUT --style kprobe     # probe lines as record sets up

One VM runs on a pool of 4K folios (guest_memfd pages).  Each step picks a folio and
takes one of the steps the mirror (validator/model/mirror.py) allows on it, seen through a
one-folio view of the state (the VM-wide variables plus that folio's pages, as the
replay sees it): guest faults and AUGs, zaps, conversions both ways (the request, the
zap, the ioctl; to-private refused with -EAGAIN while the host pins the page, then
retried), host faults on shared pages and the host's hidden pins and unmaps, memory
errors on shared pages, faults the kernel refuses (host faults on private or poisoned
pages, guest faults on a poisoned folio), punch holes and refills.  The end is the
teardown: optionally some removals fail (KVM_BUG_ON), then the HKID is released, every
page reclaimed, the inode evicted and its folios freed, and some handed to other users.

Each step is rendered by bench_text.BenchRenderer in the kernel's `trace` format, on
interleaved vCPUs, between unrelated events (sched_switch, irq, softirq, timer: about 30%
of the lines) and host page allocations of pfns that are not guest_memfd's.  A leaked or
reused folio is replaced by a fresh pfn, so the number of folios stays about the same
however long the trace.  Lines are written as they are made (10M lines need no memory),
and the file has exactly `lines` lines.  The trace is accepted by `design`: every step is
one the mirror allows, and the bench checks the verdict.

Two styles of the same walk (the same steps, lines and noise for a seed): "tracepoint", whose
probe lines print pfns (bench_text.py), and "kprobe", whose probe lines are the kprobe events
`poisoncheck record` sets up, as the lab's captures show them (kprobe_text.py).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from validator import model
from validator.synth import ftrace_text as render
from validator.synth.bench_text import GMEM_DEV, PFN_BASE, BenchRenderer
from validator.synth.kprobe_text import KprobeRenderer

UNBOUNDED = 1 << 30
NOISE_SHARE = 0.30          # unrelated lines (sched, irq, softirq, timer) in the output
HOST_MM_SHARE = 0.04        # mm_page_alloc/free of pfns that are not guest_memfd's

# Weights of the mirror's actions while the VM runs (the walk's mix).
RUN_WEIGHTS = {
    "KvmGmemAllocFolio": 4.0, "KvmTdpMapPrivate": 6.0, "TdxSeptRemoveOk": 1.0,
    "VmmConvertRequest": 1.2, "KvmGmemConvertShared": 8.0, "KvmGmemConvertPrivate": 8.0,
    "KvmGmemHostFault": 3.0, "HostGup": 0.6, "HostUnpin": 2.0, "HostUnmap": 0.8,
    "KvmGmemPunchHole": 0.25, "FreeFolio": 6.0, "MemoryFailure": 0.004,
}
REFUSED_HOST_FAULT, REFUSED_GUEST_FAULT = 0.3, 0.3   # weights of the refusals (no state change)
STYLES = {"tracepoint": BenchRenderer, "kprobe": KprobeRenderer}     # how probe lines look


def _view(g: dict, x: tuple, req) -> model.State:
    return model.State((x[0],), x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8],
                       g["vm"], g["tdx"], g["otherTds"], g["fd"], req, 0, 0, x[9], x[10])


def _part(t: model.State) -> tuple:
    return (t.folioLoc[0], t.tdxRefs, t.attr, t.sept, t.mirror, t.hostMap, t.hostPin, t.hwpoison,
            t.bad, t.unreset, t.uptodate)


class Walk:
    """The generator's state: the VM-wide variables and one part per folio slot."""

    def __init__(self, design: str, folios: int, seed: int, out, failures: int = 0,
                 style: str = "tracepoint"):
        if design == "BuggyCleanup" and failures:
            # its deferred cleanup poisons every folio at once; the walk does not take it
            raise ValueError("benchgen: no removal failures for BuggyCleanup (use --failures 0)")
        self.cfg = model.Config(design, "buddy", folios=1, pages_per_folio=1,
                                max_remove_failures=UNBOUNDED, max_mem_errors=UNBOUNDED)
        self.rng = random.Random(seed)
        self.failures = failures
        init = model.init(self.cfg)
        self.g = {"vm": init.vm, "tdx": init.tdx, "otherTds": init.otherTds, "fd": init.fd}
        self.req: tuple[int, int, str] | None = None     # (slot, local page, to)
        self.parts = [_part(init)] * folios
        self.slot_pfn = [PFN_BASE + i for i in range(folios)]
        self.next_pfn = PFN_BASE + folios
        self.r = STYLES[style](self.cfg, out, self.rng)
        self.memo: dict = {}
        self.protocol_lines = 0

    # ---- one step -----------------------------------------------------------------
    def _state(self, f: int) -> model.State:
        req = None
        if self.req is not None:
            slot, page, to = self.req
            req = (page, to) if slot == f else (-1, to)
        return _view(self.g, self.parts[f], req)

    def _successors(self, s: model.State) -> list[tuple[str, tuple, model.State]]:
        key = s
        hit = self.memo.get(key)
        if hit is None:
            other_request = s.convReq is not None and s.convReq[0] < 0
            own_request = s.convReq is not None and s.convReq[0] >= 0
            hit = [(name, params, t) for name, params, t in model.successors(self.cfg, s)
                   if not (other_request and name.startswith("KvmGmemConvert"))
                   and name not in ("KvmGmemBuggyCleanup", "TdxReleaseHkid")
                   # a request outlives its folio in the mirror: no truncation under one
                   and not (own_request and name == "KvmGmemPunchHole")
                   and not (name == "MemoryFailure" and s.attr[params[0]] != "shared")]
            self.memo[key] = hit
        return hit

    def _take(self, f: int, s: model.State, name: str, params: tuple, t: model.State) -> None:
        r = self.r
        r.folio_pfn_now, r.folio_index_now = self.slot_pfn[f], f
        before = len(r.lines)
        r.step(render.Transition(name, params, s, t))
        self.protocol_lines += len(r.lines) - before
        self.g = {"vm": t.vm, "tdx": t.tdx, "otherTds": t.otherTds, "fd": t.fd}
        if t.convReq is None:
            self.req = None
        elif t.convReq[0] >= 0:
            self.req = (f, t.convReq[0], t.convReq[1])
        self.parts[f] = _part(t)
        if t.folioLoc[0] in ("leaked", "reused") and self.g["vm"] == "running":
            self._replace_slot(f)

    def _replace_slot(self, f: int) -> None:
        """A folio guest_memfd will never get back: a fresh pfn takes its slot."""
        self.parts[f] = _part(model.init(self.cfg))
        self.slot_pfn[f] = self.next_pfn
        self.next_pfn += 1

    def _refusal(self, f: int, s: model.State) -> tuple[float, float]:
        """Weights of a refused host fault and of a refused guest fault on folio f."""
        cfg = self.cfg
        host = guest = 0.0
        if s.folioLoc[0] == "gmem" and not s.hostMap[0] and model.KvmGmemHostFault(cfg, s, 0) is None:
            host = REFUSED_HOST_FAULT * (5 if s.hwpoison[0] else 0.05)
        if (s.folioLoc[0] == "gmem" and s.vm == "running" and s.attr[0] == "private"
                and not s.mirror[0] and model.is_bad(cfg, s, 0)
                and cfg.on("gmem_get_pfn.hwpoison")):
            guest = REFUSED_GUEST_FAULT * 5
        return host, guest

    def step_run(self) -> None:
        rng = self.rng
        if self.req is not None and rng.random() < 0.5:
            f = self.req[0]
        else:
            f = rng.randrange(len(self.parts))
        s = self._state(f)
        succ = self._successors(s)
        weights = [RUN_WEIGHTS.get(name, 0.0) for name, _, _ in succ]
        host, guest = self._refusal(f, s)
        total = sum(weights) + host + guest
        if total <= 0:
            return
        pick = rng.random() * total
        if pick >= sum(weights):
            before = len(self.r.lines)
            self.r.folio_pfn_now, self.r.folio_index_now = self.slot_pfn[f], f
            if pick >= sum(weights) + host:
                self.r.refused_guest_fault(0)
            else:
                self.r.refused_host_fault(0, 0x10 if s.hwpoison[0] else 0x2)
            self.protocol_lines += len(self.r.lines) - before
            return
        for (name, params, t), w in zip(succ, weights):
            pick -= w
            if pick < 0:
                self._take(f, s, name, params, t)
                return

    def _settle(self, f: int, allowed: tuple[str, ...]) -> None:
        """Take the allowed actions on folio f (in this order of preference) while one is
        enabled: what the teardown does to each folio."""
        for _ in range(16):
            s = self._state(f)
            for name, params, t in model.successors(self.cfg, s):
                if name in allowed and not (name.startswith("KvmGmemConvert") and
                                            (s.convReq is None or s.convReq[0] < 0)):
                    self._take(f, s, name, params, t)
                    break
            else:
                return

    # ---- phases -----------------------------------------------------------------------
    def teardown_bound(self) -> int:
        """Lines the teardown may still write (an upper bound)."""
        return 8 + 6 * self.failures + 8 * len(self.parts)

    def teardown(self) -> None:
        rng = self.rng
        # A pending conversion is finished or dropped first (its folio is zapped below).
        if self.req is not None:
            f = self.req[0]
            self._settle(f, ("HostUnpin", "HostUnmap", "TdxSeptRemoveOk",
                             "KvmGmemConvertShared", "KvmGmemConvertPrivate"))
        slots = list(range(len(self.parts)))
        rng.shuffle(slots)
        failed = 0
        for f in slots:                         # removals fail (KVM_BUG_ON) on some pages
            if failed >= self.failures:
                break
            s = self._state(f)
            t = model.TdxSeptRemoveFailed(self.cfg, s, 0)
            if t is not None:
                self._take(f, s, "TdxSeptRemoveFailed", (0,), t)
                failed += 1
                s = self._state(f)              # NoMoreSeamcalls: the shutdown completes
                t = model.TdxShutdownFlag(self.cfg, s)
                if t is not None:
                    self._take(f, s, "TdxShutdownFlag", (), t)
        s = self._state(0)
        t = model.TdxReleaseHkid(self.cfg, s)
        if t is not None:
            self._take(0, s, "TdxReleaseHkid", (), t)
        for f in slots:
            self._settle(f, ("HostUnpin", "HostUnmap", "TdxSeptRemoveOk",
                             "TdxSeptRemoveAfterShutdown", "KvmGmemEvictInode", "FreeFolio"))
            s = self._state(f)
            if rng.random() < 0.1:
                t = model.AllocatorReuse(self.cfg, s, 0)
                if t is not None and all(holds(self.cfg, t) for _, holds in model.STATE_PROPERTIES):
                    self._take(f, s, "AllocatorReuse", (0,), t)


def generate(path: Path, lines: int, seed: int = 1, design: str = "HWPoison",
             failures: int = 3, folios: int | None = None, style: str = "tracepoint") -> dict:
    """Write a trace of exactly `lines` lines in `style` (STYLES); returns what it holds."""
    header = render.HEADER.format(n=lines - render.HEADER.count("\n"))
    head_lines = header.count("\n") + 1      # and the marker line
    if folios is None:
        folios = max(2, min(4096, lines // 200))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(header)
        out.write(f"     poisoncheck-4100    [000] ...1.   584.000000: tracing_mark_write: "
                  f"poisoncheck gmem_dev={GMEM_DEV} kprobes=1\n")
        walk = Walk(design, folios, seed, out, failures=failures, style=style)
        r, rng = walk.r, walk.rng
        budget = lines - head_lines
        noise_per_line = NOISE_SHARE / (1 - NOISE_SHARE)
        while True:
            done = r.written + len(r.lines)
            if done + walk.teardown_bound() + 8 >= budget:
                break
            before = len(r.lines)
            walk.step_run()
            for _ in range(len(r.lines) - before):
                if rng.random() < noise_per_line:
                    r.noise()
                if rng.random() < HOST_MM_SHARE:
                    r.host_mm()
            if len(r.lines) >= 20_000:
                r.flush()
        walk.teardown()
        if r.written + len(r.lines) > budget:
            raise AssertionError("the teardown wrote more lines than teardown_bound() says")
        while r.written + len(r.lines) < budget:
            r.noise()
        extra = r.written + len(r.lines) - budget      # an irq pair may overshoot by one
        if extra > 0:
            del r.lines[len(r.lines) - extra:]
        r.flush()
    tmp.replace(path)
    return {"lines": lines, "folios": folios, "distinct_folios": walk.next_pfn - PFN_BASE,
            "protocol_lines": walk.protocol_lines, "design": design, "style": style}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validator.synth.benchgen",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--design", default="HWPoison", choices=model.DESIGNS)
    parser.add_argument("--failures", type=int, default=3)
    parser.add_argument("--folios", type=int, default=None)
    parser.add_argument("--style", choices=sorted(STYLES), default="tracepoint",
                        help="how probe lines look (kprobe: as `poisoncheck record` sets up)")
    args = parser.parse_args(argv)
    try:
        info = generate(args.out, args.lines, args.seed, args.design, args.failures, args.folios,
                        args.style)
    except ValueError as err:
        parser.error(str(err))
    print(info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
