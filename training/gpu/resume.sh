#!/usr/bin/env bash
# On a lent GPU machine (run by the device tool from the repository root): resume FAMILY's
# shipped checkpoint for MINUTES of training at a large batch, and leave the checkpoint and its
# metrics in $OUT. Needs .gpu/ from training/gpu/pack.sh, carried. Extra arguments go to
# `hark train FAMILY` (they override the defaults below).
#   bash training/gpu/resume.sh codec 7.6 [--lr 3e-4]
#   bash training/gpu/resume.sh extractor 7.5 [--lr 1.5e-3]   (carry .gpu/whl and .gpu/extractor)
# One device command may run 10 minutes: loading data takes about a minute, so keep MINUTES <= 8.
# The tree that travels must stay under 64 MiB: training/gpu/slim_tree.sh FAMILY on (then off).
set -euo pipefail
FAMILY=$1; MINUTES=$2; shift 2
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no nvidia-smi (a dry run on a CPU?)"
mkdir -p "runs/$FAMILY"; cp "checkpoints/$FAMILY.pt" "runs/$FAMILY/last.pt"
# --max-minutes counts the checkpoint's earlier runs: add this run's minutes to theirs.
BUDGET=$(python3 -c "import torch,sys; s=torch.load('runs/$FAMILY/last.pt',map_location='cpu',weights_only=False); print(round(s.get('wall_s',0)/60+float(sys.argv[1]),2))" "$MINUTES")
case $FAMILY in
  codec) ARGS=(--data .gpu/speech --batch-size 128 --num-workers 12 --lr 3e-4 --steps 200000) ;;
  # Workers only crop and draw; the rooms, the mix and the enrollment mels run on the GPU.
  extractor) ARGS=(--data .gpu/extractor/speech --bank .gpu/extractor/rooms_train.npz
                   --dvectors .gpu/extractor/dvectors_train.npz --noise-dir .gpu/extractor/noise
                   --batch-size 64 --num-workers 12 --mix-on-device --steps 200000) ;;
  *) echo "no GPU recipe for $FAMILY" >&2; exit 2 ;;
esac
python3 -c "from hark.cli import main; raise SystemExit(main())" train "$FAMILY" \
  --config "training/configs/$FAMILY.yaml" --device cuda --resume --restart-schedule --anneal-by-time \
  --max-minutes "$BUDGET" "${ARGS[@]}" "$@" > /tmp/train.raw 2>&1 || echo "training exited with $?"
tr '\r' '\n' < /tmp/train.raw | grep -v '^\s*$' > /tmp/train.lines || true
awk 'NR % 25 == 1' /tmp/train.lines > "$OUT/train.log"; tail -n 25 /tmp/train.lines | tee -a "$OUT/train.log"
# Files come back at most 16 MiB each: the slim checkpoint, in pieces (join them here with
# `python -m training.gpu.pieces join DIR/$FAMILY checkpoints/$FAMILY.pt`).
python3 -m training.gpu.pieces split "runs/$FAMILY/last.pt" "$OUT/$FAMILY"
cp "runs/$FAMILY/metrics.jsonl" "$OUT/" 2>/dev/null || true
ls -la "$OUT"
