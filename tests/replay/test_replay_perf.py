"""The factored replay (validator/replay/engine.py) against the plain one (validator/replay/reference.py).

Random walks over the mirror are rendered as ftrace logs, then mutated (lines dropped,
repeated or swapped, return values changed, lost-event markers inserted) so that many
of them are violations, and judged by both engines under every design: the verdicts
must be equal field by field, and after every event the factored engine's candidate
set, expanded, must be the reference's (fault counters projected away)."""

import re
import random

import pytest

from validator import model
from validator.synth import ftrace_text as render
from validator.ftrace import iter_events
from validator.replay.input import read_lines
from validator.replay.candidates import PROPERTY_BITS
from validator.replay.engine import Replay
from validator.replay.reference import ReferenceReplay

CONFIGS = [  # (backing, pages, folios, removal failures, memory errors)
    ("buddy", 1, 1, 1, 1), ("buddy", 1, 2, 2, 1), ("buddy", 1, 3, 1, 2),
    ("hugetlb", 2, 1, 1, 1), ("hugetlb", 2, 2, 2, 2),
]
MUTANTS = [  # spec/matrix.toml's mutants: each breaks some property
    ("HWPoison", ("gmem_fault.hwpoison", "do_fault.hwpoison")),
    ("FolioRef", ("tdx_remove_failed.hold_ref",)),
    ("NoMoreSeamcalls", ("tdx_buggy_shutdown.wbinvd",)),
    ("NoHold", ("gmem_get_pfn.hwpoison",)), ("NoHold", ("gmem_fault.shared",)),
    ("NoHold", ("convert.safe_refcount",)), ("NoHold", ("hugetlb_dequeue.hwpoison",)),
    ("HWPoison", ("free_pages_prepare.hwpoison",)),
]


def random_walk(rng: random.Random, design: str, backing: str, pages: int, folios: int,
                fails: int, errors: int, steps: int, disabled=()) -> str:
    cfg = model.Config(design, backing, folios=folios, pages_per_folio=pages,
                       max_remove_failures=fails, max_mem_errors=errors,
                       disabled=frozenset(disabled))
    state, behaviour = model.init(cfg), []
    for _ in range(steps):
        moves = list(model.successors(cfg, state))
        if not moves:
            break
        name, params, nxt = rng.choice(moves)
        behaviour.append(render.Transition(name, params, state, nxt))
        state = nxt
    return render.render(cfg, behaviour)


def mutate(rng: random.Random, text: str) -> str:
    lines = text.splitlines()
    head = sum(1 for line in lines if line.startswith("#"))
    body = lines[head:]
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
        if len(body) < 2:
            break
        i = rng.randrange(len(body))
        op = rng.choice(["drop", "repeat", "swap", "ret", "lost", "ret"])
        if op == "drop":
            del body[i]
        elif op == "repeat":
            body.insert(rng.randrange(len(body)), body[i])
        elif op == "swap" and i + 1 < len(body):
            body[i], body[i + 1] = body[i + 1], body[i]
        elif op == "ret" and "ret=" in body[i]:
            before, _, after = body[i].partition("ret=")
            rest = after.split(" ", 1)
            body[i] = before + "ret=" + rng.choice(["0", "-5", "-11", "-133"]) + (
                " " + rest[1] if len(rest) > 1 else "")
        elif op == "lost":
            body.insert(i, f"CPU:{rng.randrange(4)} [LOST {rng.randrange(1, 50)} EVENTS]")
    return "\n".join(lines[:head] + body) + "\n"


def projected(states) -> set:
    return {s._replace(removeFailures=None, memErrors=None) for s in states}


class Reference(ReferenceReplay):
    """Notes the candidates each step starts from (what a verdict shows)."""

    def _take_whole(self, desc, folio):
        self.seen_before = projected(s for _, s in self.states)
        return super()._take_whole(desc, folio)


def judge_both(text: str, design: str, disabled=()):
    items = list(iter_events(read_lines(text.splitlines())))
    new, ref = Replay(design, disabled=disabled), Reference(design, disabled=disabled)
    for item in items:
        a, b = new.feed(item), ref.feed(item)
        assert a == b
        if ref.lost_at is None and not ref.done:
            assert new.candidate_states() == projected(ref.candidate_states()), item
        if not a:
            break
    return new, ref, getattr(ref, "seen_before", set())


def assert_same_verdict(new: Replay, ref: ReferenceReplay, before: set) -> None:
    va, vb = new.result().to_json(), ref.result().to_json()
    assert new.coverage.to_json() == ref.coverage.to_json()
    for key in va:
        if key in ("candidates", "guards", "reason"):
            continue
        assert va[key] == vb[key], (key, va, vb)
    # a refused step's reason lists its guards, in the order the engine met them
    # (only the factored engine names the steps a property violation may stand for)
    reason = re.sub(r" \(the steps it may stand for are [^)]*\)", "", va["reason"] or "")
    assert reason.split(": ")[0] == (vb["reason"] or "").split(": ")[0]
    if len(vb["guards"]) < 6:                 # the reference keeps the first six it met
        assert set(va["guards"]) == set(vb["guards"])
    else:
        assert len(va["guards"]) == 6
    if vb["verdict"] == "violation":
        assert bool(va["candidates"]) == bool(vb["candidates"]) and len(va["candidates"]) <= 8
        cfg = ref.cfg
        shown = [model.to_tla(cfg, s) for s in before]
        for state in va["candidates"]:
            assert state in shown


def _cases(count: int, seed: int):
    rng = random.Random(seed)
    for n in range(count):
        walk_design = rng.choice(model.DESIGNS)
        backing, pages, folios, fails, errors = rng.choice(CONFIGS)
        text = random_walk(rng, walk_design, backing, pages, folios, fails, errors,
                           rng.randrange(8, 45))
        yield n, mutate(rng, text)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_factored_engine_equals_the_reference_on_random_traces(seed):
    verdicts = set()
    for _, text in _cases(60, seed):
        for design in model.DESIGNS:
            new, ref, before = judge_both(text, design)
            assert_same_verdict(new, ref, before)
            v = ref.result()
            verdicts.add((v.verdict, v.kind, v.property))
    # the walks reach the interesting outcomes
    assert {("accepted", None, None), ("inconclusive", None, None),
            ("violation", "step", None)} <= verdicts


def test_factored_engine_equals_the_reference_on_mutants_and_property_violations():
    """Walks of a mutant (the walk takes the steps the missing check would refuse) judged
    by the mutant, by its design and by NoHold: the property verdicts must agree too."""
    rng = random.Random(11)
    properties = set()
    for _ in range(150):
        design, disabled = rng.choice(MUTANTS)
        backing, pages, folios, fails, errors = rng.choice(CONFIGS)
        text = random_walk(rng, design, backing, pages, folios, fails, errors,
                           rng.randrange(10, 60), disabled)
        if rng.random() < 0.3:
            text = mutate(rng, text)
        for judged, off in ((design, disabled), (design, ()), ("NoHold", ())):
            new, ref, before = judge_both(text, judged, off)
            assert_same_verdict(new, ref, before)
            if ref.result().kind == "property":
                properties.add(ref.result().property)
    assert {"NoHostAccessToTdPage", "PoisonContained"} <= properties


def test_buggy_cleanup_branches_merge_back():
    """A memory error while the fd is bugged may be the deferred cleanup or a real
    error: the candidates split into two VM-wide parts, and both engines agree."""
    cfg = model.Config("BuggyCleanup", "buddy", folios=3, max_remove_failures=1,
                       max_mem_errors=3)
    actions = [("KvmGmemAllocFolio", 0), ("KvmGmemAllocFolio", 1), ("KvmGmemAllocFolio", 2),
               ("KvmTdpMapPrivate", 0), ("KvmTdpMapPrivate", 1),
               ("VmmConvertRequest", 2, "shared"), ("KvmGmemConvertShared",),
               ("KvmGmemHostFault", 2), ("HostGup", 2),
               ("TdxSeptRemoveFailed", 0), ("MemoryFailure", 1), ("KvmGmemBuggyCleanup",)]
    text = render.render(cfg, render.steps_from_actions(cfg, actions))
    new, ref, before = judge_both(text, "BuggyCleanup")
    assert_same_verdict(new, ref, before)
    assert new.result().verdict == "accepted"
    assert len({b.g for b in new.branches}) == 2        # fd bugged, or cleaned


def test_a_property_violation_is_reported_in_property_order():
    assert PROPERTY_BITS == ("NoHostAccessToTdPage", "NoPrivateHostMapping", "RefcountSound",
                          "PoisonContained", "NoHostWriteToTdPage")
