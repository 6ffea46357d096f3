"""The hand-written scenarios of traces/: spec behaviours rendered as ftrace logs.

    python -m validator.synth.scenarios traces/     # (re)write the scenario traces

Each scenario is a behaviour of the Python mirror under one configuration
(built step by step, so a scenario the spec forbids cannot be written), then
edited where the point is a kernel that misbehaves (`edit`).  The expected
verdicts live in traces/manifest.toml and were checked by reading the traces.
"""

from __future__ import annotations

import argparse

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from validator import model
from validator.synth import ftrace_text as render


@dataclass
class Scenario:
    name: str
    about: str
    design: str
    backing: str
    actions: list[tuple]
    pages: int = 1
    folios: int = 1
    edit: Callable[[list[str]], list[str]] | None = None
    disabled: frozenset = field(default_factory=frozenset)

    def text(self) -> str:
        cfg = model.Config(self.design, self.backing, folios=self.folios,
                           pages_per_folio=self.pages, max_remove_failures=2, max_mem_errors=2,
                           disabled=self.disabled)
        text = render.render(cfg, render.steps_from_actions(cfg, self.actions))
        if self.edit:
            lines = text.splitlines()
            text = "\n".join(self.edit(lines)) + "\n"
        return text


LIFECYCLE = [
    ("KvmGmemAllocFolio", 0), ("KvmGmemAllocFolio", 1),
    ("KvmTdpMapPrivate", 0), ("KvmTdpMapPrivate", 1),
    ("VmmConvertRequest", 1, "shared"), ("TdxSeptRemoveOk", 1), ("KvmGmemConvertShared",),
    ("KvmGmemHostFault", 1), ("HostGup", 1),
    ("VmmConvertRequest", 1, "private"), ("KvmGmemConvertPrivate",),   # -EAGAIN: pinned
    ("HostUnpin", 1), ("KvmGmemConvertPrivate",),                       # retried: done
    ("KvmTdpMapPrivate", 1),
    ("TdxSeptRemoveOk", 0), ("KvmGmemPunchHole", 0), ("FreeFolio", 0),
    ("KvmGmemAllocFolio", 0), ("KvmTdpMapPrivate", 0),
    ("TdxReleaseHkid",), ("TdxSeptRemoveOk", 0), ("TdxSeptRemoveOk", 1),
    ("KvmGmemEvictInode", 0), ("FreeFolio", 0), ("KvmGmemEvictInode", 1), ("FreeFolio", 1),
]
HUGE_LIFECYCLE = [
    ("KvmGmemAllocFolio", 0), ("KvmTdpMapPrivate", 0), ("KvmTdpMapPrivate", 1),
    ("VmmConvertRequest", 1, "shared"), ("TdxSeptRemoveOk", 1), ("KvmGmemConvertShared",),
    ("KvmGmemHostFault", 1), ("HostUnmap", 1),
    ("VmmConvertRequest", 1, "private"), ("KvmGmemConvertPrivate",), ("KvmTdpMapPrivate", 1),
    ("TdxReleaseHkid",), ("TdxSeptRemoveOk", 0), ("TdxSeptRemoveOk", 1),
    ("KvmGmemEvictInode", 0), ("FreeFolio", 0),
]
FAIL_TRUNCATE_REUSE = [
    ("KvmGmemAllocFolio", 0), ("KvmTdpMapPrivate", 0), ("TdxSeptRemoveFailed", 0),
    ("KvmGmemPunchHole", 0), ("FreeFolio", 0), ("AllocatorReuse", 0),
]


def _lose_events_before(word: str) -> Callable[[list[str]], list[str]]:
    def edit(lines):
        at = next(i for i, line in enumerate(lines) if word in line)
        return lines[:at] + ["CPU:1 [LOST 17 EVENTS]"] + lines[at:]
    return edit


def _append_host_fault(ret: int) -> Callable[[list[str]], list[str]]:
    def edit(lines):
        template = next(line for line in lines if "gmem_host_fault" in line)
        stamp = lines[-1].split("]")[1].split(":")[0].split()[-1]
        sec, usec = stamp.split(".")
        later = f"{sec}.{int(usec) + 9:06d}"
        old_stamp = template.split("]")[1].split(":")[0].split()[-1]
        return lines + [template.replace(old_stamp, later).replace("ret=0", f"ret={ret}")]
    return edit


SCENARIOS = [
    Scenario("lifecycle-buddy", "a TD's life on 4K pages: faults, conversions both ways "
             "(one refused while the host pins the page), punch hole and refill, teardown",
             "NoHold", "buddy", LIFECYCLE, folios=2),
    Scenario("lifecycle-hugetlb", "the same on a HugeTLB folio: split for a shared page, "
             "merged back, teardown", "NoHold", "hugetlb", HUGE_LIFECYCLE, pages=2),
    Scenario("removal-fails-then-reused", "a removal fails (KVM_BUG_ON); the folio is "
             "truncated, freed and handed to another user while the S-EPT still maps it",
             "NoHold", "buddy", FAIL_TRUNCATE_REUSE),
    Scenario("hwpoison-removal-fails-4k", "HWPoison: the page is poisoned on the failed removal; "
             "the free path keeps it out of the buddy allocator", "HWPoison", "buddy",
             FAIL_TRUNCATE_REUSE[:-1]),
    Scenario("poisoned-hugetlb-folio-freed", "a removal fails on a HugeTLB folio, TDX poisons "
             "the page, and free_huge_folio() puts the folio back in the pool",
             "HWPoison", "hugetlb", FAIL_TRUNCATE_REUSE[:-1], pages=2,
             disabled=frozenset({"gmem_free.hwpoison"})),
    Scenario("conversion-after-failure", "a removal fails during a to-shared conversion; the "
             "conversion completes anyway and the host maps the page",
             "NoHold", "buddy", [("KvmGmemAllocFolio", 0), ("KvmTdpMapPrivate", 0),
                                 ("VmmConvertRequest", 0, "shared"), ("TdxSeptRemoveFailed", 0),
                                 ("KvmGmemConvertShared",), ("KvmGmemHostFault", 0)]),
    Scenario("memory-error-on-shared-page", "a memory error on a shared page the host maps: "
             "memory_failure() unmaps it and a new host fault is refused",
             "NoHold", "buddy", [("KvmGmemAllocFolio", 0), ("VmmConvertRequest", 0, "shared"),
                                 ("KvmGmemConvertShared",), ("KvmGmemHostFault", 0),
                                 ("MemoryFailure", 0)],
             edit=_append_host_fault(-133)),
    Scenario("memory-error-host-maps-poison", "as above, but the host fault on the poisoned "
             "page succeeds", "NoHold", "buddy",
             [("KvmGmemAllocFolio", 0), ("VmmConvertRequest", 0, "shared"),
              ("KvmGmemConvertShared",), ("KvmGmemHostFault", 0), ("MemoryFailure", 0)],
             edit=_append_host_fault(0)),
    Scenario("buggy-cleanup-window", "BuggyCleanup without its free-path check: the VM is "
             "torn down and guest_memfd evicted before the deferred cleanup runs; the folio "
             "is freed and reused",
             "BuggyCleanup", "buddy", [("KvmGmemAllocFolio", 0), ("KvmTdpMapPrivate", 0),
                                       ("TdxSeptRemoveFailed", 0), ("TdxReleaseHkid",),
                                       ("KvmGmemEvictInode", 0), ("FreeFolio", 0),
                                       ("AllocatorReuse", 0)],
             disabled=frozenset({"gmem_free.bugged_fd"})),
    Scenario("hwpoison-lost-at-merge", "HWPoison on HugeTLB: page 1 is shared (the folio is "
             "split), page 2's removal fails and TDX poisons it, punch hole merges the folio "
             "(its head is clean), and the pool hands it to another user",
             "HWPoison", "hugetlb", [("KvmGmemAllocFolio", 0), ("VmmConvertRequest", 0, "shared"),
                                     ("KvmTdpMapPrivate", 1), ("KvmGmemConvertShared",),
                                     ("TdxSeptRemoveFailed", 1), ("KvmGmemPunchHole", 0),
                                     ("FreeFolio", 0), ("AllocatorReuse", 0)], pages=2),
    Scenario("lost-events", "the removal-failure trace with lost events before the punch hole",
             "NoHold", "buddy", FAIL_TRUNCATE_REUSE,
             edit=_lose_events_before("gmem_punch_hole")),
]


def write_all(target: Path) -> list[Path]:
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for scenario in SCENARIOS:
        path = target / f"{scenario.name}.trace"
        path.write_text(scenario.text())
        written.append(path)
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m validator.synth.scenarios",
                                     description="Write the scenario traces of traces/.")
    parser.add_argument("folder", nargs="?", default="traces", type=Path)
    for path in write_all(parser.parse_args().folder):
        print(path)
