"""read_events() on several cores, with exactly the sequential result.

The main process reads the input and cuts it into chunks of whole lines; worker
processes (forked, so they share the loaded code) read the chunks. A chunk cannot be
read alone from its first line, because the reader carries state from line to line
(continuation lines, the no-context mode, the sniff for non-ftrace input). But after a
plain record (reader.hot_match) that state is always the same (ReaderState.synced()).
So a worker reads its chunk from the first plain record on, and hands the lines before
it back: the main process reads those itself, with the state the previous chunk left,
and then takes the worker's results and end state. A chunk without a plain record is
read by the main process whole. While a worker is late, the main process reads the
next chunks the same way itself. Every line is thus read once, in a state equal to the
sequential reader's; tests compare the two on every corpus file, with chunks cut at
every line.

What a worker sends back is pack(items), plain tuples: the caller chooses a small form
(for the replay: replay/input._pack), because pickling is paid on both sides."""

from __future__ import annotations

import fcntl
import multiprocessing
import pickle
import queue
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator
from itertools import chain
from typing import NamedTuple

from validator.children import die_with_parent
from .hot import hot_match
from .known import NO_KNOWN_EVENTS, KnownEvents
from .opener import TextLines, piece_lines
from .reader import read_events
from .state import ReaderState, UnparsedCount, check_evidence

CHUNK_BYTES = 512 << 10     # a chunk and its reply fit in a widened pipe (PIPE_BYTES)
PIPE_BYTES = 1 << 20


class WorkerError(RuntimeError):
    """A worker process failed (a bug, not bad input: bad input is counted)."""


DIED = "a reader process died (out of memory?)"


class _Chunk(NamedTuple):
    first_line: int
    last_line: int
    piece: bytes | None      # whole lines for a worker; None: `lines` is read here
    lines: list[str] | None = None


def _chunks(lines: TextLines, chunk_bytes: int) -> Iterator[_Chunk]:
    """The input's pieces cut at newlines into chunks of about chunk_bytes. A Truncated
    or last line comes alone, decoded, for the main process."""
    line = 1
    for piece in lines.pieces():
        if type(piece) is not bytes:            # Truncated, LastLine: a single line
            yield _Chunk(line, line, None, piece_lines(piece))
            line += 1
            continue
        start, end = 0, len(piece)
        while True:
            cut = piece.find(b"\n", start + chunk_bytes) if end - start > chunk_bytes else -1
            part = piece[start:cut] if cut >= 0 else piece[start:]
            last = line + part.count(b"\n")
            yield _Chunk(line, last, part)
            line = last + 1
            if cut < 0:
                break
            start = cut + 1


def _sync_index(lines: list[str]) -> int | None:
    for i, text in enumerate(lines):
        if hot_match(text) is not None:
            return i
    return None


def _widen(conn) -> None:
    """Let a pipe hold a whole chunk or reply (Linux: up to pipe-max-size, 1 MB by
    default), so that neither side waits for the other to read it."""
    try:
        fcntl.fcntl(conn.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (OSError, AttributeError):    # other systems, or a lower limit: smaller pipes
        pass


def _work(inbox_conn, conn, wanted: frozenset, known: KnownEvents, pack: Callable,
          shortcut: Callable | None) -> None:
    """A worker: chunks in, read_chunk()'s replies out, until an empty message."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    die_with_parent()                             # and SIGKILL of it takes this one along
    # A thread takes chunks off the pipe as they come, so that the main process can hand
    # out the next chunk while this one is read (and never blocks on a full pipe).
    inbox: queue.SimpleQueue = queue.SimpleQueue()

    def receive():
        while message := inbox_conn.recv_bytes():
            inbox.put(message)
        inbox.put(b"")

    threading.Thread(target=receive, daemon=True).start()
    while True:
        message = inbox.get()
        if not message:
            return
        try:
            reply = read_chunk(int.from_bytes(message[:8], "little"), message[8:],
                               wanted, known, pack, shortcut)
            conn.send_bytes(pickle.dumps(reply, pickle.HIGHEST_PROTOCOL))
        except Exception as exc:    # noqa: BLE001 - reported by the main process
            conn.send_bytes(pickle.dumps(("error", f"{type(exc).__name__}: {exc}")))


def read_chunk(first_line: int, piece: bytes, wanted: frozenset, known: KnownEvents,
               pack: Callable, shortcut: Callable | None) -> tuple:
    """A worker's reading of one chunk: (lines before its first plain record, packed
    items of the rest, (first unparsed, unparsed line numbers), end state); the last
    three are None when the chunk has no plain record."""
    lines = piece_lines(piece)
    sync = _sync_index(lines)
    if sync is None:
        return lines, None, None, None
    unparsed = UnparsedCount(keep_lines=True)
    state = ReaderState.synced()
    items = read_events(lines[sync:], wanted, unparsed, known=known,
                        first_line=first_line + sync, state=state, final=False,
                        shortcut=shortcut)
    out = pack(items)
    return lines[:sync], out, (unparsed.first, unparsed.lines), state.to_tuple()


HERE, AHEAD = -1, -2     # who reads a chunk, besides the workers (ParallelReader.batches)


class ParallelReader:
    """read_events() over `jobs` worker processes, as batches: per chunk, its items and
    an UnparsedCount of its lines (with their line numbers, so that a consumer that stops
    early can count only the lines before it stopped).

    Workers send pack(items), a list of tuples, for the items read_events(lines, wanted,
    unparsed) yields from a chunk; the main process makes each tuple t the NamedTuple
    rebuild[len(t)] again, and does the same with the items of the lines it reads itself,
    so every item goes the same way. pack() may leave out text that line_text() can give
    back (the lines of the chunks read last are kept) and may fold items together where
    the consumer cannot tell. Workers start only once the input holds more than two
    chunks' worth. `known` and `shortcut` are read_events()'s (forked workers inherit
    them: nothing is pickled). Raises TraceInputError like the
    sequential reader, WorkerError if a worker fails."""

    QUEUED = 2          # chunks a worker holds: one it reads, one it reads next
    AHEAD = 2           # chunks the main process reads while it waits for a worker
    ALWAYS_AHEAD = False    # tests: read ahead even when a reply is there
    KEEP_CHUNKS = 2 * QUEUED + 2    # chunks whose text line_text() can still give

    def __init__(self, lines: TextLines, wanted: frozenset, *, jobs: int,
                 pack: Callable[[Iterator], list[tuple]], rebuild: dict[int, type],
                 known: KnownEvents = NO_KNOWN_EVENTS, shortcut: Callable | None = None,
                 name: str | None = None, chunk_bytes: int = CHUNK_BYTES):
        self.lines, self.jobs, self.chunk_bytes, self.known = lines, jobs, chunk_bytes, known
        self.wanted, self.pack, self.rebuild, self.shortcut = wanted, pack, rebuild, shortcut
        self.name = name
        self.state = ReaderState()
        self.last_line = 0
        self.recent: deque = deque(maxlen=self.KEEP_CHUNKS)   # [chunk, its lines or None]

    def line_text(self, line_no: int) -> str | None:
        """The text of a line of a chunk read last (None if it is gone)."""
        for entry in self.recent:
            chunk = entry[0]
            if chunk.first_line <= line_no <= chunk.last_line:
                if entry[1] is None:
                    entry[1] = chunk.lines if chunk.piece is None else piece_lines(chunk.piece)
                return entry[1][line_no - chunk.first_line]
        return None

    def batches(self) -> Iterator[tuple[list, UnparsedCount]]:
        chunks = _chunks(self.lines, self.chunk_bytes)
        head, size = [], 0
        for chunk in chunks:
            head.append(chunk)
            size += len(chunk.piece) if chunk.piece is not None else 1
            if size > 2 * self.chunk_bytes:
                break
        else:                                   # small input: no workers
            for chunk in head:
                yield self._read(chunk)
            self._finish()
            return
        context = multiprocessing.get_context("fork")
        workers = []
        # Chunks in input order: [who, chunk, reply]; who is a worker's index, HERE (a
        # single line, read here in order) or AHEAD (read here while the workers were
        # busy, reply ready).
        busy: deque = deque()
        queued = [0] * self.jobs                # chunks sent to each worker, not yet back
        ahead = 0                               # AHEAD chunks not merged yet
        pending = chain(head, chunks)

        def refill():
            """Keep every worker QUEUED chunks ahead (queueing the main process's own)."""
            while True:
                w = min(range(self.jobs), key=queued.__getitem__)
                if queued[w] >= self.QUEUED:
                    return
                chunk = next(pending, None)
                if chunk is None:
                    return
                if chunk.piece is None:
                    busy.append([HERE, chunk, None])
                    continue
                try:
                    workers[w][1].send_bytes(chunk.first_line.to_bytes(8, "little") + chunk.piece)
                except OSError:                 # the worker is gone (its pipe is closed)
                    raise WorkerError(DIED) from None
                queued[w] += 1
                busy.append([w, chunk, None])

        try:
            for _ in range(self.jobs):
                chunks_in, chunks_out = context.Pipe(duplex=False)
                replies_in, replies_out = context.Pipe(duplex=False)
                for conn in (chunks_out, replies_out):
                    _widen(conn)
                proc = context.Process(target=_work, daemon=True, args=(
                    chunks_in, replies_out, self.wanted, self.known, self.pack,
                    self.shortcut))
                proc.start()
                chunks_in.close()
                replies_out.close()
                workers.append((proc, chunks_out, replies_in))
            refill()
            while busy:
                who, chunk, reply = busy[0]
                if who >= 0:
                    conn = workers[who][2]
                    if ahead < self.AHEAD and (self.ALWAYS_AHEAD or not conn.poll()):
                        # The worker is still at it: read the next chunk here meanwhile.
                        spare = next(pending, None)
                        if spare is not None:
                            if spare.piece is None:
                                busy.append([HERE, spare, None])
                            else:
                                busy.append([AHEAD, spare, read_chunk(
                                    spare.first_line, spare.piece, self.wanted, self.known,
                                    self.pack, self.shortcut)])
                                ahead += 1
                            continue
                    try:
                        reply = pickle.loads(conn.recv_bytes())
                    except (EOFError, OSError):
                        raise WorkerError(DIED) from None
                    queued[who] -= 1
                    if reply[0] == "error":
                        raise WorkerError(f"a reader process failed: {reply[1]}")
                    refill()                    # the worker goes on while we merge
                busy.popleft()
                if who == HERE:
                    yield self._read(chunk)
                    refill()
                    continue
                if who == AHEAD:
                    ahead -= 1
                yield self._merge(chunk, *reply)
            self._finish()
        finally:
            working = {who for who, _, _ in busy if who >= 0}
            for w, (proc, to_worker, from_worker) in enumerate(workers):
                if w in working:                # stopped early: its reply is not wanted
                    proc.kill()
                else:
                    try:
                        to_worker.send_bytes(b"")
                    except OSError:
                        pass
                to_worker.close()
                from_worker.close()
                proc.join()

    def _read(self, chunk: _Chunk) -> tuple[list, UnparsedCount]:
        lines = chunk.lines if chunk.piece is None else piece_lines(chunk.piece)
        self.recent.append([chunk, lines])
        self.last_line = chunk.last_line
        unparsed = UnparsedCount(keep_lines=True)
        return self._local(lines, chunk.first_line, unparsed), unparsed

    def _local(self, lines: list[str], first_line: int, unparsed: UnparsedCount) -> list:
        """Items of lines read here, in the carried state."""
        new, rebuild = tuple.__new__, self.rebuild
        items = read_events(lines, self.wanted, unparsed, known=self.known, first_line=first_line,
                            state=self.state, name=self.name, final=False,
                            shortcut=self.shortcut)
        return [new(rebuild[len(t)], t) for t in self.pack(items)]

    def _merge(self, chunk: _Chunk, prefix, packed, unparsed_lines, end_state
               ) -> tuple[list, UnparsedCount]:
        self.recent.append([chunk, None])
        self.last_line = chunk.last_line
        unparsed = UnparsedCount(keep_lines=True)
        items = self._local(prefix, chunk.first_line, unparsed)
        if packed is None:
            return items, unparsed
        first, lines = unparsed_lines
        unparsed.count += len(lines)
        unparsed.first.extend(first[: unparsed.KEEP - len(unparsed.first)])
        unparsed.lines.extend(lines)
        self.state = ReaderState.from_tuple(end_state[:-1] + (self.state.first_line,))
        new, rebuild = tuple.__new__, self.rebuild
        items.extend([new(rebuild[len(t)], t) for t in packed])
        return items, unparsed

    def _finish(self) -> None:
        check_evidence(self.state, self.last_line, True, self.name)
