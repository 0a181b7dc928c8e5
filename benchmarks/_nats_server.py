"""A real NATS server with JetStream (Debian's nats-server), started on loopback for the
fleet benchmark and the fleet tests."""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

__all__ = ["NatsServer"]

_LISTENING = re.compile(r"Listening for client connections on [\d.]+:(\d+)")


class NatsServer:
    """``nats-server -js`` on loopback, with its store in ``directory``. :meth:`stop` kills it as
    a crash would; :meth:`start` brings it back on the same port and store."""

    def __init__(self, directory: Path, options: Sequence[str] = ()) -> None:
        self.directory = directory
        self.options = list(options)  # more of nats-server's flags (--auth, --tls...)
        self.port = -1  # the first start picks a free port
        self._process: subprocess.Popen[str] | None = None
        self._reader = threading.Thread()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Starts the server and returns once it says it is ready (its log, not a sleep)."""
        command = ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(self.port)]
        command += ["-sd", str(self.directory), *self.options]
        process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        assert process.stderr is not None
        said = []
        for line in process.stderr:
            said.append(line)
            if listening := _LISTENING.search(line):
                self.port = int(listening.group(1))
            if "Server is ready" in line:
                break
        else:
            process.wait()
            raise RuntimeError(f"nats-server did not start: {''.join(said)}")
        # it keeps logging: read on, so that a full pipe never blocks it (nor a closed one
        # kills it: Go exits on a broken stderr)
        self._reader = threading.Thread(target=process.stderr.read, daemon=True)
        self._reader.start()
        self._process = process

    def stop(self) -> None:
        """Kills the server (SIGKILL, as a crash) and waits for it to be gone."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._reader.join()  # the pipe's end reached: nothing reads it any more
            assert self._process.stderr is not None
            self._process.stderr.close()
            self._process = None
