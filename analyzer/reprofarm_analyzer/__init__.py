"""reprofarm_analyzer: triage of the evidence a hung run leaves behind.

It reads goroutine dumps (Go's own text), Windows minidumps and Linux core files, names the
stuck threads and goroutines, and gives each dump a label and a stable signature. It depends
on the protocol package only, so the worker, the CLI and the agent can all use it.
"""
