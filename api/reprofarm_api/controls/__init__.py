"""Standing controls: pools' negative controls and schedules, agents' health checks."""
