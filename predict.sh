#!/bin/sh
# Entry point of the submission container: the evaluator runs `sh predict.sh` in WORKDIR
# /workspace, once per interaction step, with the case in /workspace/inputs.
#
# Outside the container the same script runs with paths from the environment:
#   INPUT_DIR   folder of case *.npz files    (default /workspace/inputs)
#   OUTPUT_DIR  folder for the outputs        (default /workspace/outputs)
#   WEIGHTS_DIR trained weights               (default <this folder>/weights)
#   PYTHON      interpreter                   (default python, else python3)
#   SEGFM_TIME_SCALE  factor on the time allowance, for scoring on a slower machine (default 1)
# infer.py is found next to this script, wherever it is called from. Extra arguments are passed
# on to infer.py (e.g. --device cpu).
set -eu

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd -P)

if [ -z "${PYTHON:-}" ]; then
    if command -v python >/dev/null 2>&1; then
        PYTHON=python
    else
        PYTHON=python3
    fi
fi

exec "$PYTHON" "$here/infer.py" "$@"
