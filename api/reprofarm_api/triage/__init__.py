"""Triage of dumps from outside the farm: ``POST /api/v1/triage``."""
