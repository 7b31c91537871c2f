#!/usr/bin/env bash
# The checks a lent GPU owes, in one call of the device tool (docs/speed.md, "On a lent GPU").
#
# Why one script: a session is lent 15 minutes of device time at most, start-up and idle time
# included, and each command runs 10 minutes at most. Typing the checks one call at a time spends
# that time on starts and waits; this runs them back to back, each under its own time limit so
# that one hung check cannot take the others' time, and leaves every log and figure under $OUT.
#
#   bash bench/gpu_checks.sh                 # on the lent machine, from the repository root
#   OUT=/tmp/gc SEGFM_CASES=DIR bash bench/gpu_checks.sh   # anywhere else (CPU: GPU tests skip)
#
# Carry `.whl` (the wheels the machine's image lacks, docs/training.md step 2) and `.gpucases`
# (../shared/data/cases linked or copied, git-ignored: ../shared does not travel). Each check's
# limit (seconds) can be changed with LIMIT_<NAME>, e.g. LIMIT_PROTOCOL=0 skips the protocol.
set -u

OUT=${OUT:-/tmp/gpu_checks}
CASES=${SEGFM_CASES:-.gpucases}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
rm -f "$OUT"/*.log  # a reused $OUT must not show an earlier call's logs as this call's

if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
} > "$OUT/device.txt" 2>&1
cat "$OUT/device.txt"

# check NAME DEFAULT_LIMIT COMMAND...: run COMMAND under its limit, its output to $OUT/NAME.log,
# one line "NAME rc=.. seconds=.." to the summary (rc 124: the limit stopped it).
check() {
    local name=$1 limit=$2
    shift 2
    local var="LIMIT_${name^^}"
    limit=${!var:-$limit}
    if [ "$limit" = 0 ]; then
        echo "$name skipped" | tee -a "$SUMMARY"
        return
    fi
    local start=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "$name rc=$rc seconds=$((SECONDS - start))" | tee -a "$SUMMARY"
}

check gpu_tests 180 env SEGFM_CASES="$CASES" python3 -m pytest -q -m gpu tests
check forward 90 python3 -m bench.bench_forward
check fusion 90 python3 -m bench.bench_fusion
check step 240 python3 -m bench.bench_step --cases "$CASES/imgs" --out "$OUT/step"
check protocol 0 bash evaluation/run_local.sh "$CASES/imgs" "$CASES/gts" "$OUT/protocol" --no-floor --no-plots

for log in "$OUT"/*.log; do
    echo "== $(basename "$log")"
    tail -n 25 "$log"
done
echo "== summary"
cat "$SUMMARY"
