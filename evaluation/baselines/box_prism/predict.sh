#!/bin/sh
# The box-prism baseline as a submission folder: same INPUT_DIR / OUTPUT_DIR contract as ../../../predict.sh.
set -eu
repo=$(CDPATH='' cd -- "$(dirname -- "$0")/../../.." && pwd -P)
cd "$repo"
exec "${PYTHON:-python3}" -m evaluation.baselines.prism "$@"
