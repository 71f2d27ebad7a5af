#!/bin/bash
# decrappify training on 2 nodes x 4 GPUs with torchrun under SLURM (one task per node;
# torchrun starts one process per GPU). Submit with: sbatch docs/scripts/train_slurm.sh
#SBATCH --job-name=decrappify-train
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=32
#SBATCH --time=02:00:00
#SBATCH --output=%x-%j.out

set -euo pipefail
# the run folder must be on a file system every node sees (process 0 writes it, every
# process reads its checkpoint when the run resumes)
RUN=$HOME/runs/em_x4
HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)

# a requeued job (or one resubmitted after a lost node) continues the run from its last
# checkpoint, on any number of nodes and GPUs
RESUME=()
if [ -f "$RUN/train.yaml" ]; then RESUME=(--resume); fi

srun torchrun \
  --nnodes "$SLURM_JOB_NUM_NODES" --nproc-per-node 4 \
  --rdzv-backend c10d --rdzv-endpoint "$HEAD:29500" --rdzv-id "$SLURM_JOB_ID" \
  -m decrappify train --hr "$HOME/data/em" --out "$RUN" --preset em \
  --time-budget 1h30m --set batch_size=32 "${RESUME[@]}"
