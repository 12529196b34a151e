"""Which factor explains the hit rate (docs/statistics.md, "Explain")."""
