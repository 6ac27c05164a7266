"""User code by reference: one import rule, and a code digest that follows the code a ref really runs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dsr_core.imports import code_digest, import_ref, user_code_files


@pytest.fixture
def project(workdir):
    """``shop``: a package whose program imports a sibling helper (relatively) and a sub-package module."""
    root = workdir / "shop"
    (root / "util").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "util" / "__init__.py").write_text("")
    (root / "util" / "text.py").write_text("def norm(s):\n    return s.strip()\n")
    (root / "helpers.py").write_text("from shop.util import text\n\nLIMIT = 3\n")
    (root / "program.py").write_text("import json\nfrom . import helpers\n\n\ndef build():\n    return helpers.LIMIT\n")
    (workdir / "unrelated.py").write_text("X = 1\n")
    yield root
    for name in [m for m in sys.modules if m == "shop" or m.startswith("shop.")]:
        del sys.modules[name]


def test_import_ref_finds_modules_in_the_working_folder(project):
    assert import_ref("shop.program:build")() == 3
    with pytest.raises(ValueError, match="is not of the form"):
        import_ref("shop.program")


def test_the_digest_covers_the_module_and_the_user_modules_it_imports(project):
    files = user_code_files("shop.program")
    assert set(files) == {"shop.program", "shop", "shop.helpers", "shop.util", "shop.util.text"}
    before = code_digest("shop.program:build", "exact_match")
    (project / "util" / "text.py").write_text("def norm(s):\n    return s.strip().lower()\n")
    after = code_digest("shop.program:build", "exact_match")
    assert after != before  # an edit two imports away is seen
    (project.parent / "unrelated.py").write_text("X = 2\n")
    assert code_digest("shop.program:build", "exact_match") == after  # files it does not import are not
    assert code_digest("shop.program:build", "f1") != after  # a built-in metric stands for itself


def test_the_digest_is_the_same_in_a_fresh_process(project):
    """It reads imports from the source, so what happens to be loaded in a process does not change it."""
    here = code_digest("shop.program:build", "exact_match", include_dsr=False)
    there = subprocess.run(
        [
            sys.executable,
            "-c",
            "from dsr_core.imports import code_digest; "
            "print(code_digest('shop.program:build', 'exact_match', include_dsr=False))",
        ],
        cwd=project.parent,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert here == there


LAYERS = """
import os, sys
before = dict(os.environ)
import dsr_core
assert "pydantic_core" not in sys.modules, "importing dsr_core loaded pydantic (a fifth of its import time)"
import dsr_core.optimizers, dsr_core.evaluate, dsr_core.metrics, dsr_core.state, dsr_core.data, dsr_core.environment
heavy = [m for m in sys.modules if m.split(".")[0] in ("prefect", "mlflow", "flows", "tasks")]
assert not heavy, f"dsr_core imported {heavy[:5]}"
import tasks.evaluate, tasks.monitor, tasks.optimize, tasks.program, tasks.progress
assert not [m for m in sys.modules if m == "flows" or m.startswith("flows.")], "tasks imported flows"
import flows.cli
changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
assert not changed, f"importing the CLI changed {changed}"
print("ok")
"""


def test_tasks_import_no_flows_and_importing_the_cli_changes_no_environment_variable():
    """Dependencies point one way (flows -> tasks -> dsr_core; dsr_core imports neither Prefect nor MLflow), and
    an import has no side effects on the process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_SERVER_")}
    done = subprocess.run([sys.executable, "-c", LAYERS], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
