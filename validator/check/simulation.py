"""TLC's random simulation for runs breadth-first search cannot finish: evidence, never
a holds.

A run's safety properties are checked on random behaviours of bounded depth (TLC's
-simulate), in batches of a known number of behaviours so that the report can say how
many behaviours were checked ("no violation in N behaviours of depth <= D").  A violation
is peeled off as in the breadth-first check; a breadth-first run then looks for its
shortest form within --budget.  Liveness is not simulated.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from validator import children
from validator.check.matrix import Run
from validator.check.runner import save_counterexample, write_cfg
from validator.model.properties import BY_KEY, HOLDS, SAFETY, VIOLATED
from validator.tlc.output import UNFINISHED
from validator.tlc.process import RunnerError, run_tlc
from validator.tlc.setup import TlcSetup

# A simulation's last report (message 2209): "Progress(-1) at ...: 5955 states generated".
_GENERATED = re.compile(r"Progress\(-1\) at [^\n]*?: ([\d,]+) states generated")
FIRST_BATCH = 50        # behaviours in the first batch; later ones fill about BATCH_SECONDS
BATCH_SECONDS = 60.0


@dataclass
class Found:
    """A violation simulation found, and what breadth-first search made of it."""
    depth: int                          # transitions in the simulated counterexample
    counterexample: str
    shortest: int | None = None         # breadth-first search's counterexample length
    bfs: str = "not run"                # "confirmed" | "unfinished" | "not found" | "not run"


@dataclass
class Simulation:
    run: Run
    depth: int
    seed: int
    behaviours: int = 0                 # checked with no violation of the pending properties
    states: int = 0
    seconds: float = 0.0
    batches: int = 0
    found: dict[str, Found] = field(default_factory=dict)

    def cell(self, key: str) -> str:
        if key in self.found:
            f = self.found[key]
            bfs = f"BFS {f.shortest} steps" if f.shortest is not None else f"BFS {f.bfs}"
            return f"VIOLATED ({f.depth} steps; {bfs})"
        return f"none in {self.behaviours:,}"

    def summary(self) -> str:
        return (f"no violation of {', '.join(self.clean())} in {self.behaviours:,} behaviours "
                f"of depth <= {self.depth} (seed {self.seed}, {self.seconds:.0f} s)")

    def clean(self) -> list[str]:
        return [p.key for p in SAFETY if p.key not in self.found]

    def to_json(self) -> dict:
        return {"name": self.run.name, "constants": self.run.constants(), "depth": self.depth,
                "seed": self.seed, "behaviours": self.behaviours, "states": self.states,
                "seconds": round(self.seconds, 1), "batches": self.batches,
                "no_violation": self.clean(), "summary": self.summary(),
                "violated": {k: vars(f) for k, f in self.found.items()}}


def simulate(run: Run, setup: TlcSetup, seconds: float, depth: int, seed: int,
             progress=lambda _: None) -> Simulation:
    """Simulate `run` for about `seconds` of wall time; then a BFS for each violation."""
    workdir = setup.out_dir / run.name
    workdir.mkdir(parents=True, exist_ok=True)
    sim = Simulation(run, depth, seed)
    pending = [p.key for p in SAFETY]
    size, deadline = FIRST_BATCH, time.monotonic() + seconds
    while pending and time.monotonic() < deadline:
        cfg = workdir / f"simulate{sim.batches + 1}.cfg"
        write_cfg(run, cfg, pending, liveness=False, symmetry=False)
        extra = ("-simulate", f"num={size}", "-depth", str(depth),
                 "-seed", str(seed + sim.batches))
        tlc, wall, raw = run_tlc(setup, cfg, workdir, extra=extra)
        sim.batches += 1
        sim.seconds += wall
        sim.states += sum(int(n.replace(",", "")) for n in _GENERATED.findall(raw)[-1:])
        if tlc.status == HOLDS:
            sim.behaviours += size
            left = deadline - time.monotonic()
            size = max(1, min(int(size * BATCH_SECONDS / max(wall, 1.0)),
                              int(size * left / max(wall, 1.0))))
        elif tlc.status == UNFINISHED:     # a batch longer than --budget: not counted
            break
        elif tlc.status == VIOLATED and tlc.named_property in _TLA_KEYS:
            key = _TLA_KEYS[tlc.named_property]
            path = save_counterexample(run, key, tlc, workdir, name=f"{key}-simulated")
            sim.found[key] = Found(tlc.steps, path)
            pending.remove(key)
            progress(f"{run.name}: simulation found {key} violated ({tlc.steps} steps)")
        else:
            reason = tlc.error or f"unexpected {tlc.status} {tlc.named_property or ''}"
            raise RunnerError(f"{run.name}: simulation: {reason} (see {cfg.with_suffix('.out')})")
    for key, found in sim.found.items():
        _shortest(run, setup, key, found, workdir)
    return sim


_TLA_KEYS = {BY_KEY[p.key].tla: p.key for p in SAFETY}


def simulate_runs(runs: list[Run], setup: TlcSetup, seconds: float, depth: int, seed: int,
                  jobs: int, progress=lambda _: None) -> list[Simulation]:
    """simulate() for every run, `jobs` at a time; results in the runs' order."""
    setup.out_dir.mkdir(parents=True, exist_ok=True)
    children.STOPPING.clear()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = []
        try:                        # submitted inside the try, as in runner._run_tasks
            futures += [pool.submit(simulate, run, setup, seconds, depth, seed, progress)
                        for run in runs]
            out = []
            for run, future in zip(runs, futures):
                out.append(future.result())
                progress(f"{run.name}: simulated")
            return out
        except BaseException:       # an error or an interrupt: stop the JVMs now
            for future in futures:
                future.cancel()
            children.kill_children()
            raise
        finally:
            children.STOPPING.clear()


def mismatches(sim: Simulation) -> list[str]:
    """A violation the matrix does not expect (a miss is no mismatch: simulation is no
    proof of anything but the violations it finds)."""
    return [f"{sim.run.name}: {key} is violated (simulation, {f.depth} steps), the matrix "
            f"expects {sim.run.expect[key]}"
            for key, f in sim.found.items() if sim.run.expect[key] != VIOLATED]


def _shortest(run: Run, setup: TlcSetup, key: str, found: Found, workdir: Path) -> None:
    """Breadth-first search for `key` alone (with symmetry), stopped at --budget."""
    cfg = workdir / f"shortest-{key}.cfg"
    write_cfg(run, cfg, [key], liveness=False)
    tlc, _, _ = run_tlc(setup, cfg, workdir)
    if tlc.status == VIOLATED and tlc.named_property == BY_KEY[key].tla:
        found.bfs, found.shortest = "confirmed", tlc.steps
        save_counterexample(run, key, tlc, workdir)
    elif tlc.status == UNFINISHED:
        found.bfs = "unfinished"
    elif tlc.status == HOLDS:       # cannot be: the simulated behaviour is one of its
        raise RunnerError(f"{run.name}: {key}: simulation found a violation that a finished "
                          f"breadth-first search did not (see {cfg.with_suffix('.out')})")
    else:
        raise RunnerError(f"{run.name}: {key}: {tlc.error} (see {cfg.with_suffix('.out')})")
