#!/usr/bin/env bash
# Prepare, on this machine, what a lent GPU machine needs and cannot fetch: Python wheels the
# device image lacks, and a compact copy of the training speech (Ogg Opus, 32 kbps), under .gpu/
# (ignored by git, carried by the device tool). Run once per session; it is idempotent.
#   training/gpu/pack.sh [SPEECH_DIR] [UTTERANCES_PER_SPEECHOCEAN_SPEAKER]
set -euo pipefail
cd "$(dirname "$0")/../.."
SPEECH=${1:-../shared/data/real/speech}
PER_SPEAKER=${2:-5}
OUT=.gpu
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
mkdir -p "$OUT/whl" "$OUT/speech"

# The device image is Python 3.12 with torch, numpy, yaml and tqdm; hark's training also needs these.
for p in pydantic==2.12.5 pydantic-core==2.41.5 annotated-types==0.7.0 typing-inspection==0.4.2 \
         typing-extensions==4.15.0 soundfile==0.13.1 cffi==2.0.0 pycparser==2.23 soxr==1.0.0; do
  ls "$OUT/whl" | grep -qi "^${p%%==*}" 2>/dev/null && [ "${p%%==*}" != typing-extensions ] && continue
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$OUT/whl" "$p" 2>/dev/null
done

# Training speakers only (the held-out LibriSpeech speakers stay behind), re-encoded to Opus so
# that hundreds of voices fit the device tool's 64 MiB transfer.
${PY:-.venv/bin/python} - "$SPEECH" "$OUT/speech" "$PER_SPEAKER" <<'PY'
import subprocess, sys
from collections import defaultdict
from pathlib import Path
sys.path.insert(0, ".")
from training.data.speech import split_files, speaker_of
src, out, per = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
by_speaker = defaultdict(list)
for f in split_files([src], "train"):
    by_speaker[speaker_of(f)].append(f)
for speaker, files in sorted(by_speaker.items()):
    keep = files if not speaker.startswith("speechocean-") else files[:per]
    for f in keep:
        dst = out / f.parent.name / (f.stem + ".opus")
        if dst.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if f.suffix == ".opus":
            dst.write_bytes(f.read_bytes())
        else:
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(f), "-ac", "1", "-ar", "16000",
                            "-c:a", "libopus", "-b:a", "32k", str(dst)], check=True)
print(f"{len(by_speaker)} training speakers under {out}")
PY
du -sh "$OUT"/*
