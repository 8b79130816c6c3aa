#!/usr/bin/env bash
# distrl on a Cloud TPU VM pod slice: create it, install on every worker, train on all of them.
#
#   launch/tpu_vm_pod.sh NAME ZONE ACCELERATOR [distrl.launch flags...]
#   launch/tpu_vm_pod.sh distrl-v4 us-central2-b v4-32 --config=ppo --config.num_envs=4096 \
#       --workdir=gs://BUCKET/runs/ppo
#
# Every worker runs the same command; `--distributed` makes each call jax.distributed.initialize(),
# which finds the pod's other workers by itself. The workdir must be shared by all workers (a GCS
# bucket: orbax and tensorboardX write there directly). Delete the pod when done:
#   gcloud compute tpus tpu-vm delete NAME --zone=ZONE
set -euo pipefail
if [[ $# -lt 3 ]]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
name=$1 zone=$2 accelerator=$3
shift 3
repo=${DISTRL_REPO:-https://github.com/OWNER/distrl.git}  # where your workers clone distrl from
version=${TPU_SOFTWARE_VERSION:-tpu-ubuntu2204-base}

gcloud compute tpus tpu-vm create "$name" --zone="$zone" --accelerator-type="$accelerator" --version="$version"
gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all --command="
  set -e
  [ -d distrl ] || git clone $repo distrl
  cd distrl && python3 -m venv .venv && . .venv/bin/activate
  pip install -e . 'jax[tpu]==0.10.2'
"
gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all --command="
  cd distrl && . .venv/bin/activate && python -m distrl.launch --distributed $(printf '%q ' "$@")
"
