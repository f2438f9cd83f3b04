#!/usr/bin/env bash
# The demo: bring up the embedded sandbox and a local Prefect server, rehearse the
# Shanxi 2023 shutdown-upgrade schedule, print the timeline and where the record is.
#   scripts/demo.sh happy      every step done, every gate passed
#   scripts/demo.sh rollback   the new core fails its 08:00 health check; roll back to the old system
#   scripts/demo.sh ui         a paced rehearsal to watch in the Prefect UI (server left running)
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:-happy}
bin=.venv/bin
sandbox_dir=${CUTOVER_SANDBOX_DIR:-.sandbox}
runbook=runbooks/shanxi-2023-shutdown-upgrade.yaml

faults=()
extra=()
case "$scenario" in
  happy) ;;
  rollback) faults=(--fault new:health-fail) ;;
  ui) extra=(--pace 1.0) ;;
  *) echo "unknown SCENARIO '$scenario' (happy, rollback or ui)" >&2; exit 2 ;;
esac

echo "== validating the shipped runbooks"
$bin/cutover validate runbooks/*.yaml --env config/sandbox.yaml

echo "== starting the Prefect server (127.0.0.1:4299)"
$bin/cutover server start

echo "== starting the sandbox in $sandbox_dir ${faults[*]:-}"
$bin/python -m sandbox down --dir "$sandbox_dir" >/dev/null 2>&1 || true
$bin/python -m sandbox up --dir "$sandbox_dir" --reset "${faults[@]}" >"$sandbox_dir.log" 2>&1 &
sandbox_pid=$!
stop_all() {
  kill "$sandbox_pid" 2>/dev/null || true
  wait "$sandbox_pid" 2>/dev/null || true
  if [ "$scenario" != ui ]; then $bin/cutover server stop >/dev/null || true; fi
}
trap stop_all EXIT
for _ in $(seq 1 120); do
  [ -f "$sandbox_dir/ready.json" ] && break
  kill -0 "$sandbox_pid" 2>/dev/null || { cat "$sandbox_dir.log" >&2; exit 1; }
  sleep 0.25
done
[ -f "$sandbox_dir/ready.json" ] || { echo "sandbox did not start; see $sandbox_dir.log" >&2; exit 1; }

if [ "$scenario" = ui ]; then
  echo "== open http://127.0.0.1:4299 to watch; the rehearsal takes a step a second"
fi
echo "== rehearsing $runbook"
set +e
$bin/cutover rehearse "$runbook" --env config/sandbox.yaml --auto-approve --new "${extra[@]}"
status=$?
set -e
case "$scenario:$status" in
  happy:0|ui:0) echo "== demo finished: the whole schedule rehearsed, every gate passed" ;;
  rollback:3) echo "== demo finished: the cutover rolled back and the old system is proven unchanged" ;;
  *) echo "== demo failed (exit $status)" >&2; exit 1 ;;
esac
if [ "$scenario" = ui ]; then
  echo "== the Prefect server keeps running at http://127.0.0.1:4299 (stop it: .venv/bin/cutover server stop)"
fi
