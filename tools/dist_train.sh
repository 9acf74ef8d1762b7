#!/usr/bin/env bash
# Data-parallel training on one machine: NPROC processes started by torchrun, one per GPU, or gloo
# processes on the CPU when there is no GPU (tools/train.py sets that up).
#
#   tools/dist_train.sh CONFIG NPROC [train.py arguments ...]
#
# PORT (default 29500) is the rendezvous port; PYTHON (default python) the interpreter.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG NPROC [train.py arguments ...]" >&2
    exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
exec "${PYTHON:-python}" -m torch.distributed.run --nproc_per_node="$NPROC" --master_port="${PORT:-29500}" \
    "$(dirname "$0")/train.py" "$CONFIG" --launcher pytorch "$@"
