"""The manifest of one hangtest build."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class BuildManifest(BaseModel):
    model_config = ConfigDict(frozen=True)

    go_version: str = Field(description="as `go version` says, e.g. 'go1.27.3'")
    target: str = Field(description="GOOS/GOARCH")
    source_sha256: str = Field(description="hash of hangtest's source files")
    sha256: str = Field(description="hash of the binary: its name in the cache")
    bytes: int
    path: str
    hangtest_version: str
    fix_present: bool = Field(
        description="the toolchain cancels synchronous pipe I/O with CancelSynchronousIo"
    )
    toolchain: str = Field(description="GOROOT the build used")
    binary_machine: str = Field(description="machine type read back from the binary's header")
