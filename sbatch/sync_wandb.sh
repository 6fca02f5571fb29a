#!/bin/bash
# Upload W&B runs that were logged offline on compute nodes. Run it on a login node (or anywhere with
# internet access and `wandb login` done), from the repository root:
#   sbatch/sync_wandb.sh                 # every runs/**/wandb/offline-run-* not synced yet
#   sbatch/sync_wandb.sh runs/baselines  # only under this directory
#   sbatch/sync_wandb.sh --dry-run       # list what would be synced
# Arguments after `--` go to `wandb sync` (e.g. -- --entity myteam --project lit_knowledge).
#
# `wandb sync` leaves a <run>.wandb.synced marker in each run directory it uploads; directories with the
# marker are skipped. A requeued job writes a new offline-run-* directory with the same run id, so syncing
# again later uploads only the new part. Sync a running job's directory after the job ends: its remainder
# would not be uploaded once the marker exists.
set -euo pipefail

root=runs
dry_run=0
wandb_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry_run=1 ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; wandb_args=("$@"); break ;;
        -*) echo "error: unknown option $1; see $0 --help" >&2; exit 2 ;;
        *) root="$1" ;;
    esac
    shift
done

if [ ! -d "$root" ]; then
    echo "error: $root is not a directory; pass the runs directory (run.root), e.g. $0 runs" >&2
    exit 2
fi
if [ -f .venv/bin/activate ]; then
    set +u
    source .venv/bin/activate
    set -u
fi
wandb_cmd="${WANDB:-wandb}"
if [ "$dry_run" = 0 ] && ! command -v "$wandb_cmd" >/dev/null 2>&1; then
    echo "error: $wandb_cmd not found on PATH; install wandb or activate the environment" >&2
    exit 2
fi

synced=0 skipped=0 failed=0
while IFS= read -r -d '' dir; do
    if compgen -G "$dir/*.wandb.synced" >/dev/null; then
        skipped=$((skipped + 1))
        continue
    fi
    if ! compgen -G "$dir/*.wandb" >/dev/null; then
        echo "skip $dir: no .wandb file"
        skipped=$((skipped + 1))
        continue
    fi
    if [ "$dry_run" = 1 ]; then
        echo "would sync $dir"
        synced=$((synced + 1))
        continue
    fi
    echo "sync $dir"
    if "$wandb_cmd" sync ${wandb_args[@]+"${wandb_args[@]}"} "$dir"; then
        synced=$((synced + 1))
    else
        echo "failed: $dir" >&2
        failed=$((failed + 1))
    fi
done < <(find "$root" -type d -name 'offline-run-*' -path '*/wandb/*' -prune -print0 | sort -z)

echo "$([ "$dry_run" = 1 ] && echo "to sync" || echo "synced"): $synced, already synced or empty: $skipped, failed: $failed"
[ "$failed" = 0 ]
