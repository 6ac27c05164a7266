"""User code by reference: one import rule, and a code digest that follows the code a ref really runs."""

from __future__ import annotations

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
