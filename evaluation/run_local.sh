#!/usr/bin/env bash
# Local evaluation with the organisers' protocol (box step + 5 click steps), see docs/evaluation.md.
#
#   bash evaluation/run_local.sh                                  # demo cases -> ./eval_out
#   bash evaluation/run_local.sh IMGS_DIR GTS_DIR [OUT_DIR]       # validation layout
#   bash evaluation/run_local.sh DIR [OUT_DIR]                    # DIR/imgs + DIR/gts
#   bash evaluation/run_local.sh TRAIN_DIR - [OUT_DIR]            # training files (gts inside)
#   ... [--submission DIR] [--step-timeout S] [--cases GLOB] [--limit N] [--no-plots] [--no-floor]
#
# The box-prism floor is scored beside the submission unless --no-floor (see evaluation/run_local.py).
#
# Environment: PYTHON (default: python3, else python).
set -eu

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
py="${PYTHON:-}"
if [ -z "$py" ]; then
    if command -v python3 >/dev/null 2>&1; then py=python3; else py=python; fi
fi

positional=()
flags=()
out_flag=""
while [ $# -gt 0 ]; do
    case "$1" in
        --submission|--out|--step-timeout|--cases|--limit|--demo-n|--seed)
            [ $# -ge 2 ] || { echo "run_local.sh: $1 needs a value" >&2; exit 2; }
            # relative paths are taken from the caller's folder
            if [ "$1" = "--out" ]; then
                out_flag="$2"
            elif [ "$1" = "--submission" ]; then
                flags+=("$1" "$(cd "$2" && pwd)")
            else
                flags+=("$1" "$2")
            fi
            shift 2 ;;
        --*) flags+=("$1"); shift ;;
        *) positional+=("$1"); shift ;;
    esac
done

abspath() {  # absolute path of a (possibly not yet existing) path; "-" stays "-"
    case "$1" in
        -) printf '%s' "-" ;;
        /*) printf '%s' "$1" ;;
        *) printf '%s/%s' "$(pwd)" "$1" ;;
    esac
}

export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
if [ ${#positional[@]} -eq 0 ]; then
    out="$(abspath "${out_flag:-eval_out}")"
    "$py" -m evaluation.demo_cases --out "$out/demo"
    set -- "$out/demo/imgs" "$out/demo/gts" "$out"
else
    args=()
    for p in "${positional[@]}"; do args+=("$(abspath "$p")"); done
    if [ -n "$out_flag" ] && [ ${#args[@]} -lt 3 ]; then
        [ ${#args[@]} -eq 1 ] && args+=("-")
        args+=("$(abspath "$out_flag")")
    fi
    set -- "${args[@]}"
fi
exec "$py" -m evaluation.run_local "$@" ${flags[@]+"${flags[@]}"}
