#!/usr/bin/env bash
# Session 4, one H200: the single-GPU tests by themselves (loading, CPT -> SFT with falling loss, resume, bench).
set -uo pipefail
source "$(dirname "$0")/common.sh"
run gputests 590 bash ci/gpu-tests.sh -p no:cacheprovider -k "not two_gpus" -rA --durations=0
grep -hE "^(PASSED|FAILED|ERROR|SKIPPED)|passed|failed|s call|s setup" $L/gputests.out | tail -20
tar czf $OUT/logs.tgz -C $L .
echo "total $(( $(date +%s) - T0 )) s"
