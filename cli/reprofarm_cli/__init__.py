"""The ``reprofarm`` command: one CLI for the whole farm."""
