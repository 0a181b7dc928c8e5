"""What loading a program into the kernel needs, whichever loader does it (BCC or libbpf).

The verifier gives up with EAGAIN when a signal is pending for the loading thread while it
works (a child's SIGCHLD during an exec storm, say). Signals are held for the load: the kernel
hands process signals to another thread meanwhile, and the held ones arrive after it. An EAGAIN
all the same is worth another try, as libbpf gives it (:data:`LOAD_ATTEMPTS` tries).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

__all__ = ["LOAD_ATTEMPTS", "signals_held"]

#: Tries at loading a program the verifier gave up on because of a signal (EAGAIN).
LOAD_ATTEMPTS = 5


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Blocks every signal for the calling thread for the duration; they are delivered after."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
