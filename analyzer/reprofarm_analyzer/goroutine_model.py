"""What the goroutine-dump parser returns: plain dataclasses, no behaviour.

Only what classification and evidence need is kept: function names, source positions and
the header's facts. Argument values, frame offsets and fp/sp/pc words are dropped on
purpose: they change from run to run and must never reach a signature.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class Frame(NamedTuple):
    """One call frame: ``function`` as Go prints it (``internal/poll.(*FD).Close``).

    A named tuple, not a dataclass: a 10 MB dump has a hundred thousand frames and tuples
    are the cheapest immutable record Python builds."""

    function: str
    file: str | None = None
    line: int | None = None


@dataclass(slots=True)
class Goroutine:
    """One ``goroutine N [state]:`` block.

    ``state`` is the wait reason without the wait time, ``locked to thread`` or ``(scan)``:
    ``syscall``, ``chan receive (nil chan)``, ``sync.Mutex.Lock``. ``wait_minutes`` is None
    when Go printed no minutes (it prints them only after a minute of waiting).
    """

    id: int
    state: str
    wait_minutes: int | None = None
    locked: bool = False
    frames: list[Frame] = field(default_factory=list)
    created_by: str | None = None
    created_in: int | None = None
    elided: bool = False
    stack_unavailable: bool = False
    truncated: bool = False
    line: int = 0
    headerless: bool = False
    """Frames found before the first header (the text's top was cut): the id is negative
    (-1, -2, ...) and the state ``unknown``, since both stood in the header that is gone."""

    @property
    def functions(self) -> tuple[str, ...]:
        """Function names, innermost first: what grouping and rules look at."""
        return tuple(f.function for f in self.frames)


@dataclass(slots=True)
class GoroutineDump:
    """One traceback of a whole process: the goroutines plus the text around them.

    ``preamble`` holds the non-blank lines printed just before the first goroutine (the
    ``panic:``, ``fatal error:``, ``SIGQUIT: quit`` or hangtest header lines); ``trailer``
    the lines after the last one (``*** Test killed with quit: ran too long``). Both are
    what tells a hang from a crash.
    """

    goroutines: list[Goroutine] = field(default_factory=list)
    preamble: list[str] = field(default_factory=list)
    trailer: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    first_line: int = 0
