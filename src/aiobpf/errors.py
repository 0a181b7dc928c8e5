"""The exceptions aiobpf raises.

Every error is an :class:`AiobpfError` and also the built-in exception that matches its cause, so
``except PermissionError`` keeps working for callers that do not know aiobpf. Low-level failures
(errno, BCC's bare ``Exception``) are translated into these at the one module that talks to BCC.
"""

from __future__ import annotations

__all__ = [
    "AiobpfError",
    "BccMissingError",
    "CompileError",
    "InsecureListenerError",
    "KernelHeadersError",
    "KprobesUnavailableError",
    "ListenError",
    "MapTypeError",
    "PrivilegeError",
    "RecordLayoutError",
    "TracefsError",
    "UnknownTracepointError",
]


class AiobpfError(Exception):
    """Root of every error aiobpf raises."""


class BccMissingError(AiobpfError, ImportError):
    """The ``bcc`` Python module (Debian's ``python3-bpfcc``) cannot be imported."""


class PrivilegeError(AiobpfError, PermissionError):
    """The process may not load BPF programs (not root, no CAP_BPF/CAP_PERFMON)."""


class KernelHeadersError(AiobpfError, FileNotFoundError):
    """BCC needs kernel headers under ``/lib/modules/$(uname -r)/build`` and finds none."""


class TracefsError(AiobpfError, OSError):
    """tracefs is not mounted and cannot be mounted."""


class UnknownTracepointError(AiobpfError, LookupError):
    """The running kernel has no tracepoint of that name."""


class KprobesUnavailableError(AiobpfError, NotImplementedError):
    """The running kernel was built without kprobes; a tracepoint is the alternative."""


class CompileError(AiobpfError, ValueError):
    """BCC could not compile or load a BPF program; the message carries the compiler's output."""


class MapTypeError(AiobpfError, TypeError):
    """A BPF map is not of the type the caller needs (for example, not a ring buffer)."""


class RecordLayoutError(AiobpfError, ValueError):
    """Records in a ring do not have the size the declared record type says they have."""


class ListenError(AiobpfError, OSError):
    """The service cannot listen where it was asked to (an address or socket already in use, a
    path it cannot create)."""


class InsecureListenerError(AiobpfError, ValueError):
    """The service was asked to listen beyond this machine without TLS (and without
    ``insecure``): every user's commands would cross the network in clear."""
