"""BPF C of your own, compiled by BCC on the host: :func:`compile_bcc`, with the shape of
:func:`aiobpf.load`."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import anyio.to_thread

from .._core.validate import MaxLatency
from .._kernel import bcc as _bcc
from .._kernel.bcc import Program
from ._maps import MapPoller, Mode
from ._own import OwnProgram, Record
from ._perf import PerfBuffer
from ._ring import RingBuffer

__all__ = ["BccProgram", "compile_bcc"]


class BccProgram(OwnProgram):
    """BPF C compiled by BCC; made by :func:`compile_bcc`. On entering, every
    ``TRACEPOINT_PROBE`` attaches; :meth:`attach_uprobe` attaches the others."""

    def __init__(self, text: str, *, cflags: Sequence[str] = ()) -> None:
        super().__init__("the BCC program")
        self._text = text
        self._cflags = list(cflags)
        self._compiled: Program | None = None

    @property
    def _loaded(self) -> bool:
        return self._compiled is not None

    def _load(self) -> None:
        self._compiled = Program.compile(self._text, cflags=self._cflags, attach=False)

    def _attach(self) -> None:
        self._program.attach_tracepoints()

    def _program_fds(self) -> dict[str, int]:
        return self._program.program_fds()

    def _detach(self) -> None:
        if self._compiled is not None:
            self._compiled.detach()

    def _close_program(self) -> None:
        if self._compiled is not None:
            self._compiled.close()

    @property
    def _program(self) -> Program:
        self._require_open()
        assert self._compiled is not None
        return self._compiled

    @property
    def bpf(self) -> Any:
        """The ``bcc.BPF`` object, for what BCC does that aiobpf does not wrap."""
        return self._program.bpf

    async def attach_uprobe(
        self,
        program: str,
        binary: str,
        symbol: str,
        *,
        retprobe: bool = False,
        pid: int | None = None,
    ) -> None:
        """Attaches function ``program`` to ``symbol`` of ``binary``, as
        :meth:`CoreProgram.attach_uprobe` does (BCC loads the function first: off the loop)."""
        compiled = self._program
        attach = functools.partial(
            compiled.attach_uprobe, binary, symbol, program, retprobe=retprobe, pid=pid
        )
        await anyio.to_thread.run_sync(attach)

    def ring(
        self,
        name: str,
        *,
        record: Record = None,
        counters: str | None = "auto",
        max_latency: MaxLatency = "auto",
        busy_poll: float = 0.0,
    ) -> RingBuffer[Any]:
        """A source over ring ``name`` (see :meth:`aiobpf.RingBuffer.from_bcc`: left out, the
        record is the struct the program writes). Closed with the program, if not before."""
        if isinstance(record, str):
            raise TypeError("a BCC program's record is a dtype or a ctypes.Structure, not a name")
        ring = RingBuffer.from_bcc(
            self.bpf,
            name,
            record=record,
            counters=counters,
            max_latency=max_latency,
            busy_poll=busy_poll,
        )
        return self._keep(ring)

    def perf_buffer(
        self,
        name: str,
        *,
        record: Record = None,
        page_cnt: int = 64,
        counters: str | None = "auto",
        order_by: str | None = None,
        max_latency: MaxLatency = "auto",
        busy_poll: float = 0.0,
    ) -> PerfBuffer[Any]:
        """A source over perf buffer ``name`` (see :meth:`aiobpf.PerfBuffer.from_bcc`)."""
        if isinstance(record, str):
            raise TypeError("a BCC program's record is a dtype or a ctypes.Structure, not a name")
        perf = PerfBuffer.from_bcc(
            self.bpf,
            name,
            record=record,
            page_cnt=page_cnt,
            counters=counters,
            order_by=order_by,
            max_latency=max_latency,
            busy_poll=busy_poll,
        )
        return self._keep(perf)

    def map(
        self,
        name: str,
        *,
        interval: float = 2.0,
        mode: Mode = "snapshot",
        key: Any = None,
        value: Any = None,
        batch: bool = True,
    ) -> MapPoller[Any, Any]:
        """A poller of map ``name`` (see :meth:`aiobpf.MapPoller.from_bcc`)."""
        poller = MapPoller.from_bcc(
            self.bpf, name, interval=interval, mode=mode, key=key, value=value, batch=batch
        )
        return self._keep(poller)


def compile_bcc(text: str, *, cflags: Sequence[str] = ()) -> BccProgram:
    """BPF C of your own, compiled by BCC on ``async with`` (off the event loop), with the same
    shape as :func:`load`: ``program.ring()``, ``program.map()``, ``attach_uprobe()``.
    ``cflags``: for clang, ``-DNAME=VALUE`` among them."""
    _bcc.import_bcc()  # BccMissingError at the call, not at the first await
    return BccProgram(text, cflags=cflags)
