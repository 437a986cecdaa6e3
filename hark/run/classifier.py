"""`hark classify RECORDINGS --out DIR`: class probabilities per recording, as /classify answers,
fused with its transcript when there is one (`--transcript`, or a NAME.txt beside NAME.wav).

Writes NAME.classification.json per recording and predictions.csv (one row per recording, the
refused ones with their reason). To score a trained model on a labelled manifest, see
`hark predict classifier`."""
from __future__ import annotations

import argparse
import csv
import io
import json
import time
from pathlib import Path
from typing import Any

from hark.run import common

def add_arguments_classify(parser: argparse.ArgumentParser) -> None:
    common.describe(parser)
    common.add_io_arguments(parser, "classifier", "one speaker's recordings")
    parser.add_argument("--transcript", metavar="TEXT",
                        help="what was said, for every input (default: NAME.txt beside NAME.wav if it exists, "
                             "else the voice alone)")
    parser.add_argument("--format", nargs="+", choices=("json", "csv"), default=["json", "csv"],
                        help="json: NAME.classification.json per recording; csv: predictions.csv for all "
                             "(default: both)")


def _transcript(path: Path, given: str | None) -> str | None:
    if given is not None:
        return given
    sidecar = path.with_suffix(".txt")
    return sidecar.read_text(encoding="utf-8", errors="replace") if sidecar.is_file() else None


def predictions_csv(rows: list[dict[str, Any]], classes: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["file", "label", *[f"p_{c}" for c in classes], "modalities", "error"])
    for row in rows:
        probs = row.get("probabilities", {})
        writer.writerow([row["file"], row.get("label", ""), *[probs.get(c, "") for c in classes],
                         "+".join(row.get("modalities", [])), row.get("error", "")])
    return buf.getvalue()


def run_classify(args: argparse.Namespace) -> int:
    from core import audio as audio_io
    from core.classifier_model import MAX_TRANSCRIPT_CHARS, ClassifierModel

    paths = common.expand_inputs(args.inputs)
    model = common.load_model(ClassifierModel, args.model, "classifier")
    table = common.output_path(args.out, "predictions.csv", args.overwrite) if "csv" in args.format else None
    limits = audio_io.Limits.from_env()
    rows: list[dict[str, Any]] = []

    def handle(path: Path) -> list[Path]:
        target = (common.output_path(args.out, f"{path.stem}.classification.json", args.overwrite)
                  if "json" in args.format else None)
        try:
            transcript = _transcript(path, args.transcript)
            if transcript is not None and len(transcript) > MAX_TRANSCRIPT_CHARS:
                raise common.CommandError(common.REFUSED, f"the transcript has {len(transcript)} characters; "
                                                          f"at most {MAX_TRANSCRIPT_CHARS}")
            decoded = audio_io.decode(path, model.sample_rate, limits=limits)
            if model.needs_voice:
                audio_io.require_voice(decoded.samples, model.sample_rate)
        except (common.CommandError, audio_io.AudioError) as exc:
            rows.append({"file": str(path), "error": getattr(exc, "message", str(exc))})
            raise
        t0 = time.perf_counter()
        try:
            result = model.classify(decoded.samples, transcript)
        except ValueError as exc:  # a text-only model without a transcript
            rows.append({"file": str(path), "error": str(exc)})
            raise common.CommandError(common.REFUSED, str(exc)) from None
        body = {"file": str(path), "label": result.label, "probabilities": result.probabilities,
                "per_modality": result.per_modality, "modalities": result.modalities, "notes": result.notes,
                "duration_s": round(decoded.duration_s, 4), "inference_s": round(time.perf_counter() - t0, 4),
                "model": {"name": model.name, "version": model.version, "sha256": model.sha256, "task": model.task},
                "intended_use": model.intended_use}
        rows.append(body)
        return [common.write_bytes(target, json.dumps(body, indent=1) + "\n")] if target else []

    code = common.for_each(paths, handle, "classify")
    if table is not None:
        print(common.write_bytes(table, predictions_csv(rows, model.classes)))
    return code
