#!/usr/bin/env bash
# Create bench/.venv-dspy: a separate virtualenv with DSPy 3.4.1, the comparison side of bench/run.py.
# DSPy stays out of dsr's own environment (different openai/httpx stacks); run.py finds this interpreter
# by default, or whatever $DSPY_PYTHON points at.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
"$python" -m venv "$here/.venv-dspy"
"$here/.venv-dspy/bin/python" -m pip install --upgrade pip
# DSPy's MIPROv2 needs optuna, which dspy does not install; the same version dsr uses
"$here/.venv-dspy/bin/python" -m pip install "dspy==3.4.1" "optuna==5.0.0"
"$here/.venv-dspy/bin/python" -c "import dspy; print('dspy', dspy.__version__, 'installed in $here/.venv-dspy')"
