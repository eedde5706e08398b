"""spark_jobs sits below the pipeline layer: it may read c360.config (settings) and nothing else of c360, and the
nightly scoring job loads no training code and no plotting (issue #14, Deliver 3)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_spark_jobs_import_only_the_settings_of_c360():
    offending = {f"{p.name}: {m}" for p in sorted((REPO / "spark_jobs").glob("*.py")) for m in _imports(p)
                 if (m == "c360" or m.startswith("c360.")) and m != "c360.config"}
    assert not offending, f"spark_jobs imports the pipeline layer (move what it needs down): {sorted(offending)}"


def test_scoring_imports_no_training_code_and_no_plotting():
    assert not {m for m in _imports(REPO / "spark_jobs" / "score.py")
                if m.startswith(("spark_jobs.training", "spark_jobs.train", "ml.plots", "matplotlib"))}
    # what actually gets loaded, through ml/ and spark_jobs.common too, when the scoring job's modules import
    probe = ("import sys, spark_jobs.score, spark_jobs.common, ml.registry, ml.recommender, ml.features\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib' or m in "
             "('spark_jobs.training', 'spark_jobs.train', 'ml.plots')))\n")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
