"""The exceptions aiobpf raises.

Every error is an :class:`AiobpfError` and also the built-in exception that matches its cause, so
``except PermissionError`` keeps working for callers that do not know aiobpf. Failures of BCC
(its bare ``Exception``), of libbpf (an errno) and of the kernel are translated into these in the
kernel layer, ``aiobpf._kernel``, which is the only code that talks to them.

The tree::

    AiobpfError
    ├── SetupError                  the host cannot run BPF programs as asked
    │   ├── BccMissingError         (ImportError) no ``bcc`` module: apt-get install python3-bpfcc
    │   ├── LibbpfMissingError      (ImportError) no libbpf.so.1: apt-get install libbpf1
    │   ├── PrivilegeError          (PermissionError) not root, no CAP_BPF/CAP_PERFMON
    │   ├── KernelHeadersError      (FileNotFoundError) BCC finds no kernel headers
    │   ├── TracefsError            (OSError) tracefs is not mounted and cannot be
    │   ├── UnsupportedProgramError (NotImplementedError) a program kind this kernel cannot run
    │   │   └── KprobesUnavailableError    no kprobes: use a tracepoint
    │   ├── BtfError                (LookupError) the kernel's BTF lacks what a program reads
    │   ├── UnsupportedMachineError (NotImplementedError) no programs or ring reading for this CPU
    │   └── NatsMissingError        (ImportError) no ``nats`` module: pip install 'aiobpf[nats]'
    ├── AsyncioOnlyError            (RuntimeError) a part built on an asyncio-only library, on trio
    ├── StreamEngineError           (ConnectionError) the stream engine cannot be reached or set up
    ├── CompileError                (ValueError) clang or the verifier refused a program
    ├── AttachError                 (OSError) the kernel refused to attach a loaded program
    ├── UnknownTracepointError      (LookupError) no tracepoint of that name
    ├── UnknownSyscallError         (LookupError) no syscall of that name on this kernel
    ├── UnknownMapError             (LookupError) the program has no map of that name
    ├── UnknownProgramError         (LookupError) no program (or handler) of that name
    ├── CgroupError                 (LookupError) no cgroup v2 where one was looked for
    ├── NotOpenError                (RuntimeError) a source or service used before it opened
    ├── UnknownVariableError        (LookupError) the object has no global of that name
    ├── VariableTypeError           (TypeError) a value does not fit the global's type
    ├── UnknownTypeError            (LookupError) the object's BTF has no struct of that name
    ├── UnknownSymbolError          (LookupError) no binary, or no symbol in it, for a uprobe
    ├── MapTypeError                (TypeError) a map is not of the type needed
    ├── MapError                    (OSError) a map operation failed; ``errno`` says why
    ├── RecordLayoutError           (ValueError) records do not match the declared layout
    ├── RecordingError              (ValueError) a recording's line is not aiobpf's event schema
    ├── ListenError                 (OSError) the service cannot listen where asked
    ├── InsecureListenerError       (ValueError) listening beyond this machine without TLS
    └── InsecureEngineError         (ValueError) a stream engine beyond this machine without TLS

Bad arguments are refused at the call with :class:`ValueError` or :class:`TypeError`, as in the
standard library. A closed or busy source raises anyio's :class:`anyio.ClosedResourceError` or
:class:`anyio.BusyResourceError`, as every anyio stream does.
"""

from __future__ import annotations

__all__ = [
    "AiobpfError",
    "AsyncioOnlyError",
    "AttachError",
    "BccMissingError",
    "BtfError",
    "CgroupError",
    "CompileError",
    "InsecureEngineError",
    "InsecureListenerError",
    "KernelHeadersError",
    "KprobesUnavailableError",
    "LibbpfMissingError",
    "ListenError",
    "MapError",
    "MapTypeError",
    "NatsMissingError",
    "NotOpenError",
    "PrivilegeError",
    "RecordLayoutError",
    "RecordingError",
    "SetupError",
    "StreamEngineError",
    "TracefsError",
    "UnknownMapError",
    "UnknownProgramError",
    "UnknownSymbolError",
    "UnknownSyscallError",
    "UnknownTracepointError",
    "UnknownTypeError",
    "UnknownVariableError",
    "UnsupportedMachineError",
    "UnsupportedProgramError",
    "VariableTypeError",
]


class AiobpfError(Exception):
    """Root of every error aiobpf raises."""


class SetupError(AiobpfError):
    """The host cannot run BPF programs as asked; the message says what to install or change."""


class BccMissingError(SetupError, ImportError):
    """The ``bcc`` Python module (Debian's ``python3-bpfcc``) cannot be imported."""


class LibbpfMissingError(SetupError, ImportError):
    """libbpf (``libbpf.so.1``), which aiobpf uses for maps and BTF, cannot be loaded."""


class PrivilegeError(SetupError, PermissionError):
    """The process may not load BPF programs (not root, no CAP_BPF/CAP_PERFMON)."""


class KernelHeadersError(SetupError, FileNotFoundError):
    """BCC needs kernel headers under ``/lib/modules/$(uname -r)/build`` and finds none."""


class TracefsError(SetupError, OSError):
    """tracefs is not mounted and cannot be mounted."""


class UnsupportedProgramError(SetupError, NotImplementedError):
    """A program's kind is one the running kernel cannot run (kprobes where it has none,
    fentry/fexit and tp_btf where it refuses BPF trampolines); the message names what to use
    instead."""


class KprobesUnavailableError(UnsupportedProgramError):
    """The running kernel was built without kprobes; a tracepoint is the alternative."""


class BtfError(SetupError, LookupError):
    """The running kernel's BTF is missing, or lacks a type or member a program reads."""


class UnsupportedMachineError(SetupError, NotImplementedError):
    """aiobpf's programs were built for another architecture, or its ring reading needs a
    memory ordering (x86-64's) this CPU does not give."""


class NatsMissingError(SetupError, ImportError):
    """The NATS client (``nats-py``) is not installed: ``pip install 'aiobpf[nats]'``."""


class AsyncioOnlyError(AiobpfError, RuntimeError):
    """A part of aiobpf built on a library that runs on asyncio only, called under trio."""


class StreamEngineError(AiobpfError, ConnectionError):
    """The stream engine (NATS JetStream) cannot be reached, or refused to set up a stream."""


class CompileError(AiobpfError, ValueError):
    """BCC could not compile or load a BPF program; the message carries the compiler's output."""


class AttachError(AiobpfError, OSError):
    """The kernel refused to attach a loaded program (or to put it in a program array)."""


class UnknownTracepointError(AiobpfError, LookupError):
    """The running kernel has no tracepoint of that name."""


class UnknownSymbolError(AiobpfError, LookupError):
    """A uprobe's binary cannot be found, or has no symbol of that name."""


class UnknownSyscallError(AiobpfError, LookupError):
    """The running kernel has no syscall of that name (the message suggests close names)."""


class UnknownMapError(AiobpfError, LookupError):
    """The BPF program has no map of that name."""


class MapTypeError(AiobpfError, TypeError):
    """A BPF map is not of the type the caller needs (for example, not a ring buffer)."""


class MapError(AiobpfError, OSError):
    """A map operation (lookup, update, delete, batch read) failed; ``errno`` says why, for
    example ``E2BIG`` for a full map."""


class RecordLayoutError(AiobpfError, ValueError):
    """Records in a ring do not have the size the declared record type says they have."""


class RecordingError(AiobpfError, ValueError):
    """A recording (JSON lines of :mod:`aiobpf.schema`) has a line that is not an event of this
    schema version; the message names the line and what is wrong with it."""


class ListenError(AiobpfError, OSError):
    """The service cannot listen where it was asked to (an address or socket already in use, a
    path it cannot create)."""


class InsecureListenerError(AiobpfError, ValueError):
    """The service was asked to listen beyond this machine without TLS (and without
    ``insecure``): every user's commands would cross the network in clear."""


class InsecureEngineError(AiobpfError, ValueError):
    """A stream engine beyond this machine named with plain ``nats://``: every message would
    carry every user's commands in clear. Use ``tls://``, or say ``insecure=True``."""


class UnknownProgramError(AiobpfError, LookupError):
    """The object has no program (a C function) of that name, or the dispatcher no handler."""


class CgroupError(AiobpfError, LookupError):
    """No cgroup v2 where one was looked for (a process in none, a path that is not one)."""


class NotOpenError(AiobpfError, RuntimeError):
    """A source or a service used before it was opened (``async with``, or ``open()``)."""


class UnknownVariableError(AiobpfError, LookupError):
    """The object has no global variable of that name (a parameter or a global read)."""


class VariableTypeError(AiobpfError, TypeError):
    """A value given for a global variable does not fit its type in the object's BTF."""


class UnknownTypeError(AiobpfError, LookupError):
    """The object's BTF has no struct (or union, or typedef) of that name."""
