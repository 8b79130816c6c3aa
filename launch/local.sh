#!/usr/bin/env bash
# N local processes with M emulated CPU devices each: multi-host distrl on one machine.
#
#   launch/local.sh N M --config=ppo --workdir=runs/mp [--config.field=value ...]
#
# Every process joins one mesh of N*M devices through a coordinator on localhost, with gloo for
# the CPU collectives. Process 0 prints progress and writes logs; the others' output goes to
# WORKDIR/process-<i>.log. Ctrl-C (or SIGTERM to this script) stops all of them, after a checkpoint.
set -euo pipefail
if [[ $# -lt 3 ]]; then
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
processes=$1 devices=$2
shift 2
workdir=$(printf '%s\n' "$@" | sed -n 's/^--workdir=//p' | tail -n 1)
[[ -n "$workdir" ]] || { echo "local.sh: pass --workdir=DIR (all processes share it)" >&2; exit 2; }
mkdir -p "$workdir"
port=${DISTRL_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("localhost", 0)); print(s.getsockname()[1])')}
python=${PYTHON:-python}  # the interpreter with distrl installed
export XLA_FLAGS="--xla_force_host_platform_device_count=$devices"

pids=()
interrupted=0
trap 'interrupted=1; kill -TERM "${pids[@]}" 2>/dev/null || true' INT TERM
for ((i = 1; i < processes; i++)); do
  "$python" -m distrl.launch "$@" --coordinator_address="localhost:$port" --num_processes="$processes" \
    --process_id="$i" >"$workdir/process-$i.log" 2>&1 &
  pids+=($!)
done
"$python" -m distrl.launch "$@" --coordinator_address="localhost:$port" --num_processes="$processes" --process_id=0 &
pids+=($!)

# The exit status is the first non-zero one of the processes. A signal to this script cuts `wait` short (status
# 128+n) once its trap has run: then the process is waited for again, for its own status.
status=0
for pid in "${pids[@]}"; do
  while :; do
    interrupted=0 code=0
    wait "$pid" || code=$?
    ((interrupted && code > 128)) || break
  done
  ((status != 0)) || status=$code
done
exit "$status"
