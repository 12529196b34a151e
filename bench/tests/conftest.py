"""The bench scripts import each other by bare name (``from load_metrics import
...``), as a script's own folder is on sys.path: so it is here."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
