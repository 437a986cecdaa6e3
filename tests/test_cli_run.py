"""`hark transcribe|encode|decode|reconstruct|enroll|extract|classify` on generated files with the
shipped models: the outputs the services give, the services' refusals, one exit code per failure."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf
from benchmarks.speechlike import SR, speech_like

from hark import REPO_ROOT, cli
from hark.run import common
from core import codec_tokens


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse: --help and usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("inputs")
    t = np.arange(2 * 22050) / 22050
    chord = sum(0.2 * np.sin(2 * np.pi * 440 * 2 ** (k / 12) * t) * (t > 0.2) for k in (0, 4, 7))
    sf.write(root / "chord.wav", chord.astype(np.float32), 22050)
    sf.write(root / "speech.flac", speech_like(3.0, seed=1), SR)
    (root / "speech.txt").write_text("I have been sleeping well and I feel fine.")
    voice = speech_like(3.0, f0=180.0, seed=2)
    sf.write(root / "talker.wav", np.stack([voice, 0.9 * voice], axis=1), SR)  # in front: both ears
    sf.write(root / "silence.wav", np.zeros(2 * SR, np.float32), SR)
    sf.write(root / "silence_binaural.wav", np.zeros((2 * SR, 2), np.float32), SR)
    (root / "not_audio.wav").write_bytes(b"this is not audio at all")
    return root


def test_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    for command in cli.RUN_COMMANDS:
        code, out, _ = run([command, "--help"], capsys)
        assert code == 0
        assert "--out DIR" in out and "--model DIR" in out
        assert f"{common.NO_VOICE}  an input has no voice" in out and f"{common.REFUSED}  an input was refused" in out
    code, out, _ = run(["--help"], capsys)
    assert all(command in out for command in cli.RUN_COMMANDS)


def test_transcribe_writes_midi_json_csv(files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["transcribe", str(files / "chord.wav"), "--out", str(tmp_path),
                          "--format", "midi", "json", "csv", "--onset-threshold", "0.3"], capsys)
    assert code == 0, err
    body = json.loads((tmp_path / "chord.json").read_text())
    assert body["meta"]["params"]["onset_threshold"] == 0.3 and body["meta"]["n_notes"] == len(body["notes"])
    assert (tmp_path / "chord.csv").read_text().startswith("onset_s,offset_s,midi_pitch")
    midi = mido.MidiFile(tmp_path / "chord.mid")
    assert sum(m.type == "note_on" and m.velocity > 0 for m in midi) == len(body["notes"]) == 3
    assert str(tmp_path / "chord.mid") in out
    # the API's bounds, with its words
    code, _, err = run(["transcribe", str(files / "chord.wav"), "--out", str(tmp_path), "--overwrite",
                        "--min-freq-hz", "900", "--max-freq-hz", "100"], capsys)
    assert code == common.USAGE and "must be below max_freq_hz" in err


def test_codec_round_trip(files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    speech = str(files / "speech.flac")
    assert run(["encode", speech, "--out", str(tmp_path), "--bitrate", "1"], capsys)[0] == 0
    code, _, err = run(["decode", str(tmp_path / "speech.hark"), "--out", str(tmp_path / "decoded")], capsys)
    assert code == 0, err
    decoded, sr = sf.read(tmp_path / "decoded" / "speech.wav")
    assert sr == SR and decoded.shape == (3 * SR,)
    assert run(["reconstruct", speech, "--out", str(tmp_path)], capsys)[0] == 0
    assert sf.info(tmp_path / "speech_2kbps.wav").frames == 3 * SR
    assert run(["encode", speech, "--out", str(tmp_path), "--format", "json"], capsys)[0] == 0
    assert json.loads((tmp_path / "speech.json").read_text())["frames"] == 150
    (tmp_path / "junk.hark").write_bytes(b"HARK but not really")
    code, _, err = run(["decode", str(tmp_path / "junk.hark"), "--out", str(tmp_path)], capsys)
    assert code == common.REFUSED and "not a token file" in err
    code, _, err = run(["encode", speech, "--out", str(tmp_path), "--bitrate", "3", "--overwrite"], capsys)
    assert code == common.USAGE and "choose one of 1, 2" in err
    hour = codec_tokens.Tokens(np.zeros((180_000, 2, 1), dtype=np.int64), SR, 50.0, 1024, 3600 * SR)
    (tmp_path / "hour.hark").write_bytes(codec_tokens.dumps(hour))
    code, _, err = run(["decode", str(tmp_path / "hour.hark"), "--out", str(tmp_path)], capsys)
    assert code == common.REFUSED and "HARK_MAX_AUDIO_SECONDS" in err


def test_enroll_then_extract(files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["enroll", str(files / "talker.wav"), "--out", str(tmp_path)], capsys)
    assert code == 0, err
    enrollment = tmp_path / "talker.enrollment.json"
    assert len(json.loads(enrollment.read_text())["embedding"]) == 256
    for given in (enrollment, files / "talker.wav"):  # the JSON, or the clip itself
        code, _, err = run(["extract", str(files / "talker.wav"), "--enrollment", str(given),
                            "--out", str(tmp_path), "--overwrite"], capsys)
        assert code == 0, err
        out, sr = sf.read(tmp_path / "talker_extracted.wav", always_2d=True)
        assert sr == SR and out.shape == (3 * SR, 2)


def test_enroll_refuses_no_voice_and_mono(files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["enroll", str(files / "silence_binaural.wav"), str(files / "speech.flac"),
                        "--out", str(tmp_path)], capsys)
    assert code == common.NO_VOICE  # the highest of no voice (6) and mono (5)
    assert "No voice to work with: the audio is silent" in err and "needs binaural audio" in err
    code, _, err = run(["extract", str(files / "talker.wav"), "--enrollment", str(files / "silence_binaural.wav"),
                        "--out", str(tmp_path)], capsys)
    assert code == common.NO_VOICE and "--enrollment" in err


def test_classify_folder(files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["classify", str(files / "speech.flac"), str(files / "silence.wav"),
                        str(files / "not_audio.wav"), "--out", str(tmp_path)], capsys)
    assert code == common.NO_VOICE, err
    body = json.loads((tmp_path / "speech.classification.json").read_text())
    assert body["modalities"] == ["voice", "text"]  # speech.txt beside speech.flac
    assert body["label"] == max(body["probabilities"], key=body["probabilities"].get)
    rows = (tmp_path / "predictions.csv").read_text().splitlines()
    assert rows[0].startswith("file,label,p_") and len(rows) == 4
    assert any("silence.wav" in r and "silent" in r for r in rows)
    assert not (tmp_path / "silence.classification.json").exists()


def test_exit_codes(files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["transcribe", str(tmp_path / "nothing*.wav"), "--out", str(tmp_path)], capsys)
    assert code == common.NO_INPUT and "no input files matched" in err
    code, _, err = run(["transcribe", str(files / "chord.wav"), "--model", str(tmp_path), "--out", str(tmp_path)],
                       capsys)
    assert code == common.MODEL and "card.json" in err
    code, _, err = run(["transcribe", str(files / "not_audio.wav"), "--out", str(tmp_path)], capsys)
    assert code == common.REFUSED and "not a recognised audio file" in err
    (tmp_path / "chord.mid").write_bytes(b"mine")
    code, _, err = run(["transcribe", str(files / "chord.wav"), "--out", str(tmp_path)], capsys)
    assert code == common.WRITE and "--overwrite" in err
    assert (tmp_path / "chord.mid").read_bytes() == b"mine"


def test_folder_and_glob_inputs(files: Path) -> None:
    assert [p.name for p in common.expand_inputs([str(files)])] == [
        "chord.wav", "not_audio.wav", "silence.wav", "silence_binaural.wav", "speech.flac", "talker.wav"]
    assert [p.name for p in common.expand_inputs([str(files / "s*.wav")])] == ["silence.wav", "silence_binaural.wav"]


def test_run_commands_never_import_torch(files: Path, tmp_path: Path) -> None:
    probe = textwrap.dedent(f"""
        import sys
        from hark.cli import main
        code = main(["reconstruct", {str(files / 'speech.flac')!r}, "--out", {str(tmp_path)!r}])
        print("CODE", code, "TORCH", "torch" in sys.modules)
    """)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert "CODE 0 TORCH False" in result.stdout, result.stderr
