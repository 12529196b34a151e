"""Names for code addresses in a minidump: ``ntdll!NtReadFile+0x14``, else ``ntdll+0x9d4c4``,
else the raw address.

Why exports and not symbol files: the worker has no symbol server, and the functions that
tell this hang apart (``NtCancelIoFileEx``, ``NtReadFile``, ``NtWriteFile``, the waits) are
ntdll's exported syscall stubs; a thread blocked in the kernel sits just past its stub's
``syscall``/``svc`` instruction. So the nearest export at or below an address names it, as
a debugger without symbols would.

Where a module's export table comes from, first that applies:
1. the agent's export sidecar, when its DLL is the very build the dump loaded (same name,
   TimeDateStamp and SizeOfImage; name alone only if the dump recorded no TimeDateStamp);
2. the module's image inside the dump, when the dump holds its memory (full-memory dumps);
3. none: the address is named ``module+0xOFF``, and ``problems`` says why.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

from reprofarm_analyzer.minidump import Minidump, Module
from reprofarm_analyzer.pe_exports import PeError, parse_mapped_pe
from reprofarm_analyzer.sidecar import ExportSidecar, ModuleExports


@dataclass(frozen=True, slots=True)
class ExportTable:
    """One module's code exports sorted by RVA, one name per RVA."""

    module: str
    source: str
    rvas: tuple[int, ...]
    names: tuple[str, ...]

    @classmethod
    def build(cls, module: str, source: str, exports: Iterable[tuple[str, int]]) -> ExportTable:
        """Aliases share an RVA (``NtReadFile`` and ``ZwReadFile``): keep the ``Nt`` name
        (what the-hang.md and our rules speak of), else the shortest, so a name is stable."""
        best: dict[int, str] = {}
        for name, rva in exports:
            if rva not in best or _preference(name) < _preference(best[rva]):
                best[rva] = name
        rvas = sorted(best)
        return cls(module, source, tuple(rvas), tuple(best[r] for r in rvas))

    def nearest(self, rva: int) -> tuple[str, int] | None:
        """The export at or below ``rva`` and the offset from it."""
        i = bisect.bisect_right(self.rvas, rva) - 1
        if i < 0:
            return None
        return self.names[i], rva - self.rvas[i]


def _preference(name: str) -> tuple[bool, int, str]:
    return name.startswith("Zw"), len(name), name


@dataclass(frozen=True, slots=True)
class Symbol:
    """Where an address is. ``function`` (``ntdll!NtReadFile``) is what rules and signatures
    use; ``str()`` adds the offset, as a debugger prints a frame."""

    address: int
    module: str | None = None
    export: str | None = None
    offset: int = 0

    @property
    def function(self) -> str | None:
        return f"{self.module}!{self.export}" if self.module and self.export else None

    def __str__(self) -> str:
        if self.module is None:
            return f"{self.address:#x}"
        if self.export is None:
            return f"{self.module}+{self.offset:#x}"
        return f"{self.module}!{self.export}+{self.offset:#x}"


class Symbolizer:
    """Names addresses of one dump. Export tables are found once per module, on first use;
    what could not be found is collected in ``problems``, one line per module."""

    def __init__(self, dump: Minidump, sidecar: ExportSidecar | None = None) -> None:
        self._dump = dump
        self._sidecar = sidecar
        self._tables: dict[int, ExportTable | None] = {}
        self.problems: list[str] = []

    def symbol(self, address: int) -> Symbol:
        module = self._dump.module_at(address)
        if module is None:
            return Symbol(address)
        rva = address - module.base
        table = self.table(module)
        found = table.nearest(rva) if table else None
        if found is None:
            return Symbol(address, module.name, None, rva)
        export, offset = found
        return Symbol(address, module.name, export, offset)

    def table(self, module: Module) -> ExportTable | None:
        if module.base not in self._tables:
            self._tables[module.base] = self._find_table(module)
        return self._tables[module.base]

    def _find_table(self, module: Module) -> ExportTable | None:
        entry = self._sidecar_entry(module)
        if entry is not None:
            version = f" {entry.file_version}" if entry.file_version else ""
            source = f"sidecar {entry.file_name}{version} (sha256 {entry.sha256})"
            pairs = ((e.name, e.rva) for e in entry.exports)
            return ExportTable.build(module.name, source, pairs)
        image = self._image_table(module)
        if image is not None:
            return image
        self.problems.append(
            f"{module.name}: no export table (no matching sidecar entry, and the dump does "
            f"not hold the image's export directory): addresses there are {module.name}+0xOFF"
        )
        return None

    def _sidecar_entry(self, module: Module) -> ModuleExports | None:
        if self._sidecar is None:
            return None
        for entry in self._sidecar.modules:
            if entry.module != module.name:
                continue
            if module.timestamp == 0:
                self.problems.append(
                    f"{module.name}: the dump records no TimeDateStamp; the sidecar's "
                    f"{entry.file_name} is used on its name alone"
                )
                return entry
            if (entry.timestamp, entry.size_of_image) == (module.timestamp, module.size):
                return entry
            self.problems.append(
                f"{module.name}: the sidecar's {entry.file_name} is another build "
                f"(TimeDateStamp {entry.timestamp:#x}, SizeOfImage {entry.size_of_image:#x}) "
                f"than the dump's (TimeDateStamp {module.timestamp:#x}, SizeOfImage "
                f"{module.size:#x}): not used"
            )
        return None

    def _image_table(self, module: Module) -> ExportTable | None:
        """The export table read from the module's own mapped image in the dump."""

        def read(rva: int, size: int) -> bytes | None:
            if rva + size > module.size:
                return None
            return self._dump.memory.read(module.base + rva, size)

        if read(0, 2) is None:
            return None  # no memory of this image at all: the usual case, not a problem
        try:
            image = parse_mapped_pe(read)
        except PeError as exc:
            self.problems.append(f"{module.name}: its image in the dump is unreadable: {exc}")
            return None
        pairs = ((e.name, e.rva) for e in image.code_exports() if e.name is not None)
        return ExportTable.build(module.name, "image in the dump", pairs)
