"""Collapsing identical stacks, and the frames of a stack that are worth naming.

Two goroutines are "the same stack" when their state (without the wait time) and their
function names are the same: ids, argument values, ``+0x`` offsets, ``fp/sp/pc`` words and
minutes never enter the key, so ten thousand workers stuck at one line are one group.

*Plumbing* frames are how Go gets into a wait, not where the program waits: the runtime
itself (``runtime.gopark``, ``runtime.semacquire1``), the runtime hooks linked into other
packages (``sync.runtime_Semacquire``, ``internal/poll.runtime_pollWait``) and the raw
system-call stubs (``syscall.SyscallN``). Signatures skip them, so the same hang gives the
same signature whether the dump was taken with GOTRACEBACK=all or =system. The frames this
farm cares about are *not* plumbing and are kept: ``syscall.CancelIoEx``,
``syscall.ReadFile``/``WriteFile`` and all of ``internal/poll``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from reprofarm_analyzer.goroutine_model import Goroutine

_PLUMBING_PREFIXES = ("runtime.", "internal/runtime/", "runtime/internal/")
_PLUMBING_NAMES = frozenset(
    {
        "syscall.Syscall",
        "syscall.Syscall6",
        "syscall.Syscall9",
        "syscall.Syscall12",
        "syscall.Syscall15",
        "syscall.Syscall18",
        "syscall.SyscallN",
        "syscall.syscall",
        "syscall.syscall6",
        "syscall.syscallX",
        "syscall.syscall6X",
        "syscall.RawSyscall",
        "syscall.RawSyscall6",
        "syscall.rawSyscall",
        "syscall.rawSyscallNoError",
        "golang.org/x/sys/windows.(*Proc).Call",
        "golang.org/x/sys/windows.(*LazyProc).Call",
    }
)
_RUNTIME_HOOK = re.compile(r"\.runtime_[A-Za-z0-9_]+$")


def is_plumbing(function: str) -> bool:
    """True for frames that only say how a goroutine got into its wait."""
    return (
        function.startswith(_PLUMBING_PREFIXES)
        or function in _PLUMBING_NAMES
        or _RUNTIME_HOOK.search(function) is not None
    )


def meaningful(functions: Iterable[str]) -> list[str]:
    """The functions worth naming, innermost first.

    Since Go 1.24 ``sync.(*Mutex).Lock`` is a wrapper of ``internal/sync.(*Mutex).Lock``
    and both are printed; the ``internal/`` twin right before its public name is dropped so
    that one hang reads the same on either side of that change.
    """
    kept = [f for f in functions if not is_plumbing(f)]
    return [
        f
        for i, f in enumerate(kept)
        if not (f.startswith("internal/") and i + 1 < len(kept) and kept[i + 1] == f[9:])
    ]


@dataclass(slots=True)
class StackGroup:
    """Goroutines with the same state and the same function names."""

    state: str
    functions: tuple[str, ...]
    members: list[Goroutine] = field(default_factory=list)

    @property
    def ids(self) -> list[int]:
        return sorted(g.id for g in self.members)


def group_goroutines(goroutines: Sequence[Goroutine]) -> list[StackGroup]:
    """Groups in the order their first goroutine appears in the dump."""
    groups: dict[tuple[str, tuple[str, ...]], StackGroup] = {}
    for goroutine in goroutines:
        functions = goroutine.functions
        key = (goroutine.state, functions)
        group = groups.get(key)
        if group is None:
            group = groups[key] = StackGroup(goroutine.state, functions)
        group.members.append(goroutine)
    return list(groups.values())
