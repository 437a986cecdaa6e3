#!/usr/bin/env bash
# Prepare, on this machine, what a lent GPU machine needs and cannot fetch: Python wheels the
# device image lacks, and compact copies of the training data (Ogg Opus speech, 32 kbps), under
# .gpu/ (ignored by git, carried by the device tool). Run once per session; it is idempotent.
#   training/gpu/pack.sh [SPEECH_DIR] [UTTERANCES_PER_SPEECHOCEAN_SPEAKER]
# The extractor's part (.gpu/extractor/: its own speech, a room-bank subset, per-speaker teacher
# d-vectors, training noise) is packed when EXTRACTOR_DATA (default data/extractor, from
# `hark data extractor`) exists; EXTRACTOR_ROOMS and EXTRACTOR_PER_SPEAKER size it. A device run
# carries the repository (~18 MB) and at most 64 MiB in all: the codec carries .gpu/whl and
# .gpu/speech, the extractor .gpu/whl and .gpu/extractor, each pair kept under ~44 MB.
set -euo pipefail
cd "$(dirname "$0")/../.."
SPEECH=${1:-../shared/data/real/speech}
PER_SPEAKER=${2:-5}
EXTRACTOR_DATA=${EXTRACTOR_DATA:-data/extractor}
EXTRACTOR_ROOMS=${EXTRACTOR_ROOMS:-60}
EXTRACTOR_PER_SPEAKER=${EXTRACTOR_PER_SPEAKER:-3}
NOISE=${NOISE:-../shared/data/real/noise}
PY=${PY:-.venv/bin/python}
OUT=.gpu
EXCLUDE=$(git rev-parse --git-path info/exclude)  # .git is a file in a worktree
grep -qx '/.gpu/' "$EXCLUDE" 2>/dev/null || echo '/.gpu/' >> "$EXCLUDE"
mkdir -p "$OUT/whl" "$OUT/speech"

# The device image is Python 3.12 with torch, numpy, scipy, h5py, yaml and tqdm; hark's training also needs these.
for p in pydantic==2.12.5 pydantic-core==2.41.5 annotated-types==0.7.0 typing-inspection==0.4.2 \
         typing-extensions==4.15.0 soundfile==0.13.1 cffi==2.0.0 pycparser==2.23 soxr==1.0.0; do
  ls "$OUT/whl" | grep -qi "^${p%%==*}" 2>/dev/null && [ "${p%%==*}" != typing-extensions ] && continue
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$OUT/whl" "$p" 2>/dev/null
done

# Training speakers only (the held-out LibriSpeech speakers stay behind), re-encoded to Opus so
# that hundreds of voices fit the device tool's 64 MiB transfer.
"$PY" -m training.gpu.pack_data speech "$SPEECH" "$OUT/speech" --per-speaker "$PER_SPEAKER"

if [ -f "$EXTRACTOR_DATA/rooms_train.npz" ] && [ -f "$EXTRACTOR_DATA/dvectors_train.npz" ]; then
  # Fewer utterances per speechocean762 speaker than the codec's: every voice stays (a target
  # needs 6 s: 3 utterances are ~12 s), and the bytes go to rooms instead.
  "$PY" -m training.gpu.pack_data speech "$SPEECH" "$OUT/extractor/speech" --per-speaker "$EXTRACTOR_PER_SPEAKER"
  "$PY" -m training.gpu.pack_data extractor "$EXTRACTOR_DATA" "$OUT/extractor" --rooms "$EXTRACTOR_ROOMS" \
    --noise-dir "$NOISE" --speech "$OUT/extractor/speech"
else
  echo "no $EXTRACTOR_DATA/rooms_train.npz + dvectors_train.npz (hark data extractor): extractor not packed" >&2
fi
du -sh "$OUT"/* "$OUT"/extractor/* 2>/dev/null
for pair in speech extractor; do
  [ -d "$OUT/$pair" ] || continue
  mb=$(du -scm "$OUT/whl" "$OUT/$pair" | tail -1 | cut -f1)
  [ "$mb" -le 44 ] || echo "WARNING: .gpu/whl + .gpu/$pair = $mb MB: with the repository over the device's 64 MiB" >&2
done
