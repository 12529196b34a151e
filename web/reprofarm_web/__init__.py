"""The dashboard's static files; the api serves them (no CDN, works offline)."""

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
