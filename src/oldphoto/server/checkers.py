"""A small pool of checker processes that decode uploads to judge them, each decode under a time limit.

A full decode is the only honest check of an image, but decoders are where hostile files strike, and a large
photo costs hundreds of MB while it is open. So decodes run in helper processes, never in the web process:
a decoder crash costs only its process, a decode that runs past the time limit has its process killed and
replaced, and every process is retired after a few tasks so that a decoder's high-water mark is given back.

The processes talk over plain pipes, read on the event loop (no thread waits for them), and die with the web
process: on Linux the kernel kills them when it dies, even by SIGKILL, and `close` ends them on a clean stop.
Who may use a process, and when, is decided by the caller (`server/fairslots.py`): the pool itself only hands
out its idle processes in turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from oldphoto.errors import InvalidImage, OldphotoError

log = logging.getLogger(__name__)
CONTEXT = mp.get_context("spawn")  # the web process has threads: fork would copy their locks mid-use

# Retired after this many decodes: a decoder's high-water mark stays with the process that reached it.
TASKS_PER_PROCESS = 20
# How long a new process may take to import the decoders before it counts as broken.
START_TIMEOUT_S = 60.0


class DecodeTimeout(InvalidImage):
    code = "decode_timeout"


class CheckersStopped(OldphotoError):
    code = "shutting_down"
    http_status = 503


# ------------------------------------------------------------------------------------------- the process


TAKEN = "taken"  # a checker's word that it has the file and starts decoding it
IDLE_DEATHS_TOLERATED = 3


class _DiedIdle(Exception):
    """The checker was dead before it took the file (killed while idle): not the file's fault."""


def _checker_main(conn: Connection, parent: int) -> None:
    import signal

    from oldphoto.lifeline import die_with_parent

    die_with_parent(parent)
    # Ctrl-C in a terminal signals the whole process group; the web process decides when its checkers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from oldphoto.imaging import decode_file  # imported before "ready", so no decode waits for it

    conn.send("ready")
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        path, max_pixels = task
        conn.send(TAKEN)  # from here on, a death is this file's doing
        conn.send(_decode_reply(decode_file, path, max_pixels))


def _decode_reply(decode_file: Any, path: str, max_pixels: int) -> tuple[Any, ...]:
    try:
        image = decode_file(path, max_pixels=max_pixels)
    except OldphotoError as exc:
        return ("error", type(exc), exc.message, exc.code)
    except Exception:  # the guard in decode_image maps decoder errors; anything else is still the file's fault
        return ("error", InvalidImage, "The image could not be read.", InvalidImage.code)
    return ("ok", image.width, image.height)


def _error_from(reply: tuple[Any, ...]) -> OldphotoError:
    _, cls, message, code = reply
    try:
        exc = cls(message)
    except TypeError:  # an error class with other arguments: keep the sentence and the code
        exc = InvalidImage(message)
    exc.code = code
    return exc


# ------------------------------------------------------------------------------------------------ the pool


@dataclass(eq=False)  # by identity: the pool keeps them in a set
class _Checker:
    process: Any  # a SpawnProcess
    conn: Connection
    tasks: int = 0
    retiring: bool = False  # its successor has started: it leaves when its current decode ends


class CheckerPool:
    """`size` checker processes. A new one joins the idle list only once it has imported the decoders, so a decode
    never waits for a process to start beside a warm one; a process killed for a slow or crashing file is replaced
    before its caller gets the answer, so the restart is paid by the caller (and the fair slot it holds)."""

    def __init__(self, size: int = 2, timeout_s: float = 10.0, tasks_per_process: int = TASKS_PER_PROCESS) -> None:
        self.size = size
        self.timeout_s = timeout_s
        self.tasks_per_process = tasks_per_process
        self._idle: list[_Checker] = []  # started, waiting for work
        self._waiters: deque[asyncio.Future[_Checker]] = deque()  # callers waiting for an idle checker
        self._all: set[_Checker] = set()  # every process not yet ended, for close()
        self._starting: set[asyncio.Task[None]] = set()
        self._started = False
        self._closed = False
        self.decodes = 0  # decodes started

    def start(self) -> None:
        """Start the processes now (on the loop), so that they are ready before the first upload."""
        if not self._started and not self._closed:
            self._started = True
            for _ in range(self.size):
                self._start_one()

    def pids(self) -> list[int]:
        return [checker.process.pid for checker in self._all]

    async def decode_size(self, path: Path, max_pixels: int) -> tuple[int, int]:
        """The decoded (upright) size; the imaging errors, DecodeTimeout past the time limit, InvalidImage when the
        decoder crashed. The caller bounds how many call this at once (`server/fairslots.py`)."""
        for _ in range(IDLE_DEATHS_TOLERATED):
            try:
                return await self._decode_once(path, max_pixels)
            except _DiedIdle:
                continue  # it died before it had the file (killed while idle): the file goes to another one
        raise CheckersStopped("The photo checkers keep stopping; please send the photo again in a moment.")

    async def _decode_once(self, path: Path, max_pixels: int) -> tuple[int, int]:
        checker = await self._take()
        try:
            try:
                checker.conn.send((str(path), max_pixels))
                deadline = time.monotonic() + self.timeout_s
                taken = await self._receive(checker, self.timeout_s)
            except (EOFError, OSError):
                log.warning("upload check: checker %s was dead before it took a file; replaced", checker.process.pid)
                await self._replace(checker)
                raise _DiedIdle() from None
            assert taken == TAKEN, taken
            self.decodes += 1
            started = time.monotonic()
            reply = await self._receive(checker, max(0.0, deadline - started))
        except TimeoutError:
            log.warning("upload check: decode past %.1f s, checker %s killed", self.timeout_s, checker.process.pid)
            await self._replace(checker)
            raise DecodeTimeout(
                f"This image took longer than {self.timeout_s:g} s to decode, so it was refused; "
                "real photos take well under a second."
            ) from None
        except (EOFError, OSError):
            await self._replace(checker)
            raise InvalidImage("The image could not be read (its decoder crashed).") from None
        except _DiedIdle:
            raise  # already replaced
        except BaseException:  # cancelled (client gone, server stopping) while the decode may still run
            self._end(checker, kill=True)
            self._start_one()
            raise
        log.debug("upload check: %s in %.3f s", reply[0], time.monotonic() - started)
        self._give_back(checker)
        if reply[0] == "ok":
            return reply[1], reply[2]
        raise _error_from(reply)

    def close(self) -> None:
        """End every process: each is asked to leave, and whatever still runs a second later is killed."""
        self._closed = True
        for task in self._starting:
            task.cancel()
        stopped = CheckersStopped("The server is stopping; please send the photo again in a moment.")
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(stopped)
        checkers, self._all, self._idle = self._all, set(), []
        for checker in checkers:
            with contextlib.suppress(OSError, ValueError):
                checker.conn.send(None)
        deadline = time.monotonic() + 1.0
        for checker in checkers:
            checker.process.join(max(0.0, deadline - time.monotonic()))
            if checker.process.is_alive():
                checker.process.kill()
                checker.process.join(1)
            checker.conn.close()

    # -- handing out idle checkers ------------------------------------------------------------------------

    async def _take(self) -> _Checker:
        """A live idle checker. One that died while idle (the OOM killer, say) is replaced, never handed out, however
        it comes: from the idle list, or passed on to a waiter by a decode that just finished or a fresh start."""
        while True:
            checker = await self._next_idle()
            if checker.process.is_alive():
                return checker
            log.warning("upload check: checker %s died while idle; replaced", checker.process.pid)
            self._end(checker, kill=True)
            self._start_one()

    async def _next_idle(self) -> _Checker:
        if self._closed:
            raise CheckersStopped("The server is stopping; please send the photo again in a moment.")
        self.start()
        if self._idle:
            return self._idle.pop(0)
        waiter: asyncio.Future[_Checker] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._put(waiter.result())  # handed over just as the caller gave up: pass it on
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def _put(self, checker: _Checker) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(checker)
                return
        self._idle.append(checker)

    def _give_back(self, checker: _Checker) -> None:
        checker.tasks += 1
        if checker.retiring:
            self._end(checker, kill=False)
            return
        if checker.tasks == self.tasks_per_process:
            self._start_one(replacing=checker)  # it keeps serving until its successor has started
        self._put(checker)

    # -- starting and ending processes --------------------------------------------------------------------

    def _start_one(self, replacing: _Checker | None = None) -> asyncio.Task[None] | None:
        if self._closed:
            return None
        fresh = self._spawn()
        task = asyncio.create_task(self._join(fresh, replacing))
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)
        return task

    async def _join(self, fresh: _Checker, replacing: _Checker | None) -> None:
        """Into the idle list once it says it has imported the decoders, in place of `replacing` if given."""
        try:
            started = await self._receive(fresh, START_TIMEOUT_S) == "ready"
        except (TimeoutError, EOFError, OSError):
            started = False
        if self._closed:
            return
        if not started:
            log.error("upload check: a checker process did not start; trying again in 5 s")
            self._end(fresh, kill=True)
            await asyncio.sleep(5)
            self._start_one(replacing)
            return
        if replacing is not None:
            if replacing not in self._all:  # it was killed meanwhile, and replaced then: this one is spare
                self._end(fresh, kill=False)
                return
            if replacing in self._idle:
                self._idle.remove(replacing)
                self._end(replacing, kill=False)
            else:
                replacing.retiring = True
        self._put(fresh)

    async def _replace(self, checker: _Checker) -> None:
        """Kill it, and return once its successor has started (shielded: the start goes on if the caller leaves)."""
        self._end(checker, kill=True)
        successor = self._start_one()
        if successor is not None:
            await asyncio.shield(successor)

    def _spawn(self) -> _Checker:
        # Started on the loop's thread on purpose: Linux's parent-death signal follows the thread that started a
        # process, and a short-lived helper thread would take the checker with it when it ends.
        ours, theirs = CONTEXT.Pipe()
        process = CONTEXT.Process(target=_checker_main, args=(theirs, os.getpid()), name="oldphoto-checker", daemon=True)
        process.start()
        theirs.close()
        checker = _Checker(process, ours)
        self._all.add(checker)
        return checker

    def _end(self, checker: _Checker, *, kill: bool) -> None:
        """Killed, or asked to leave; reaped off the loop (a process that held hundreds of MB can take a moment)."""
        self._all.discard(checker)
        if kill:
            checker.process.kill()
        else:
            with contextlib.suppress(OSError, ValueError):
                checker.conn.send(None)
        checker.conn.close()
        with contextlib.suppress(RuntimeError):  # the loop's executor is already shut down: the process is killed
            asyncio.get_running_loop().run_in_executor(None, checker.process.join, 5)

    async def _receive(self, checker: _Checker, timeout: float) -> Any:
        """The next message from a checker, waiting on the event loop (EOFError when it died)."""
        loop = asyncio.get_running_loop()
        fd = checker.conn.fileno()
        readable: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(fd, wake)
        try:
            await asyncio.wait_for(readable, timeout)
        finally:
            loop.remove_reader(fd)
        return checker.conn.recv()  # a few bytes, written at once: readable means it is all there
