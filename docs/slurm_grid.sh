#!/bin/bash
# The study's grid on a SLURM cluster: one array task per run, each a `torchrun` line of train.py.
# From the repository root:
#
#   python train.py --model c2d,i3d,x3d,slowfast,mvitv2,revmvit,aim,uniformerv2,actionclip,xclip,vificlip,ezclip,froster \
#       --data synta,k400ta,ssv2ta --train-set both --task both --print-commands 8 > grid.txt
#   sbatch --array=1-$(wc -l < grid.txt) docs/slurm_grid.sh grid.txt
#
# Array task N runs line N of the list. Runs write runs/<model>_<data>_<task>_set<N>/ (ckpt.pt every epoch,
# results.json at the end). To go on after a time limit or a failure, write the list again and submit it
# again: finished runs are left out of it, interrupted ones continue with --resume. Then:
#
#   python evaluate.py --table runs --csv study.csv --plot study.png
#
# Match the resources below to --print-commands GPUS (processes per run, one per GPU).
#SBATCH --job-name=motion-transfer
#SBATCH --nodes=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=48:00:00
#SBATCH --output=slurm-%A_%a.out
set -euo pipefail
list=${1:?usage: sbatch --array=1-N docs/slurm_grid.sh LIST (written by train.py --print-commands)}
line=$(sed -n "${SLURM_ARRAY_TASK_ID:?not an array job: sbatch --array=1-N}p" "$list")
if [ -z "$line" ]; then
    echo "error: $list has no line $SLURM_ARRAY_TASK_ID; submit --array=1-$(wc -l < "$list")" >&2
    exit 1
fi
echo "$line"
eval "exec $line"
