"""stackdeploy: the logic behind deploy.py (model, graph, plan, fingerprints, operations)."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PROJECT_ROOT / "templates"
FILES_DIR = PROJECT_ROOT / "files"
SERVICES_DIR = FILES_DIR / "services"
STATE_DIR = PROJECT_ROOT / ".deploy"
