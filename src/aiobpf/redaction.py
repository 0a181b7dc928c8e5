"""Secrets in argv, hidden before an event leaves the process: in the command's output, the
service's stream, the fleet's messages and recordings.

aiobpf runs as root and sees every user's command lines, and command lines carry secrets
(``--password=...``, ``mysql -p...``, ``https://user:pass@host``). As Tetragon's redaction
filters do, each pattern's capture groups are replaced with ``*****``; a flag pattern (``-p``,
``--password``) hides the whole argument after it. :data:`DEFAULT` covers the common secret
flags and is on unless turned off (``--no-redact``, ``redaction=NONE``).

A command line with nothing that looks like a secret costs one look for a handful of words in
the joined arguments (about a microsecond; running every pattern over every argument cost ten
times that): redaction stays cheap on a storm of ordinary execs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import attrs

__all__ = ["DEFAULT", "MASK", "NONE", "Redaction"]

#: What replaces a secret.
MASK = "*****"

_NAMES = (
    r"pass(?:word|wd|phrase)?|pwd|token|secret|api[-_]?key|access[-_]?key|secret[-_]?key|"
    r"private[-_]?key|auth(?:[-_]?token)?|credentials?|client[-_]?secret"
)

#: An argument that holds a secret after a name: ``--password=x``, ``token=x``, a URL's password,
#: ``Bearer x``; each group is the secret.
DEFAULT_PATTERNS = (
    rf"(?i)^--?(?:[\w-]*[-_])?(?:{_NAMES})=(.+)$",
    rf"(?i)^(?:[\w-]*_)?(?:{_NAMES})=(.+)$",
    r"(?i)^[a-z][a-z0-9+.-]*://[^/@:\s]*:([^/@\s]+)@",
    r"(?i)^(?:authorization:\s*)?bearer\s+(.+)$",
)

#: A flag whose next argument is the secret: ``--password x``, ``-p x`` is too common a flag
#: (a port) to take, ``--token x``.
DEFAULT_FLAGS = (rf"(?i)^--?(?:[\w-]*[-_])?(?:{_NAMES})$",)


#: Words one of which every argument :data:`DEFAULT` hides contains (lower-cased).
DEFAULT_WORDS = ("pass", "pwd", "token", "secret", "key", "auth", "bearer", "credential", "://")


@attrs.frozen
class Redaction:
    """Which parts of argv are secrets: ``patterns`` (each capture group of a match is
    replaced with :data:`MASK`) and ``flags`` (the argument after a match is replaced).
    ``words``, when given, is a first look: an argv that contains none of them (lower-cased)
    has nothing to hide. Raises :class:`re.error` for a pattern that does not compile."""

    patterns: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    words: tuple[str, ...] = ()
    _compiled: tuple[re.Pattern[str], ...] = attrs.field(init=False, repr=False, eq=False)
    _flag_res: tuple[re.Pattern[str], ...] = attrs.field(init=False, repr=False, eq=False)
    _any: re.Pattern[str] | None = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        compiled = tuple(re.compile(pattern) for pattern in self.patterns)
        flags = tuple(re.compile(pattern) for pattern in self.flags)
        every = [*compiled, *flags]
        # one search over the arguments joined by newlines, each pattern anchored per line: it
        # finds at least what the patterns find argument by argument, so nothing found means
        # nothing to hide
        joined = "|".join(f"(?:{_per_line(pattern)})" for pattern in every)
        object.__setattr__(self, "_compiled", compiled)
        object.__setattr__(self, "_flag_res", flags)
        object.__setattr__(self, "_any", re.compile(joined) if every else None)

    def adding(self, patterns: Iterable[str] = (), flags: Iterable[str] = ()) -> Redaction:
        """This redaction with more patterns and flags (and no first look by words, which
        the new patterns need not contain)."""
        return Redaction((*self.patterns, *patterns), (*self.flags, *flags))

    def argv(self, argv: tuple[str, ...]) -> tuple[str, ...]:
        """``argv`` with its secrets replaced (the same tuple when it holds none)."""
        if self._any is None:
            return argv
        joined = "\n".join(argv)
        if self.words:
            lowered = joined.lower()
            if not any(word in lowered for word in self.words):
                return argv
        elif not self._any.search(joined):
            return argv
        hidden = list(argv)
        for index, argument in enumerate(argv):
            if index and any(flag.search(argv[index - 1]) for flag in self._flag_res):
                hidden[index] = MASK
                continue
            for pattern in self._compiled:
                argument = _mask_groups(pattern, argument)
            hidden[index] = argument
        return tuple(hidden)


def _per_line(pattern: re.Pattern[str]) -> str:
    """``pattern`` matching within any line of a multi-line text (its flags made inline)."""
    flags = "".join(
        letter for flag, letter in ((re.IGNORECASE, "i"), (re.DOTALL, "s")) if pattern.flags & flag
    )
    return f"(?m{flags}:{pattern.pattern.removeprefix('(?i)')})"


def _mask_groups(pattern: re.Pattern[str], text: str) -> str:
    match = pattern.search(text)
    if match is None:
        return text
    pieces, at = [], 0
    for group in range(1, (pattern.groups or 0) + 1):
        start, end = match.span(group)
        if start < 0:
            continue
        pieces += [text[at:start], MASK]
        at = end
    if not pattern.groups:  # no group: the whole match is the secret
        start, end = match.span()
        pieces += [text[at:start], MASK]
        at = end
    return "".join([*pieces, text[at:]])


#: The common secret flags and forms hidden.
DEFAULT = Redaction(DEFAULT_PATTERNS, DEFAULT_FLAGS, DEFAULT_WORDS)

#: Nothing hidden (root's own choice: ``--no-redact``).
NONE = Redaction()
