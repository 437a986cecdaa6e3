"""Feature extractors of the classifier family, as they serve: numpy, onnxruntime, opensmile, tokenizers.

Training computes its features with these same classes, so what was evaluated is what ships.

Voice (`VoiceFeatures`), one vector per recording:
- 88 eGeMAPSv02 functionals (opensmile), computed once over the whole recording. They are
  already statistics over the recording (means, spreads, percentiles, voiced/unvoiced segment
  rates and lengths); windowing and mean-pooling them would cut the pause and segment statistics
  at every window edge and, with 50 % overlap, double the cost.
- a 256-dim speaker embedding: resemblyzer's d-vector encoder (`dvector.onnx`) on 1.6 s partial
  windows, about 1.3 windows per second (77-frame steps), the L2-normalised mean of the
  window embeddings, as resemblyzer's `embed_utterance`. Its front end is re-implemented here in
  numpy from resemblyzer's documented parameters: 16 kHz, 25 ms Hann window (400 samples, zero
  padded centred frames), 10 ms hop, power spectrum, 40 Slaney-scale area-normalised mel bands.
  The encoder takes mel *power*, not log-mel. Resemblyzer's preprocessing (gain up to -30 dBFS,
  WebRTC-VAD removal of long silences) is approximated: the same gain rule, and an energy-based
  detector in place of WebRTC's VAD (no C extension at serving time).

Text (`TextFeatures`): the all-MiniLM-L6-v2 sentence embedding (`minilm.onnx` + `tokenizer.json`;
mean pooling and L2 normalisation are inside the graph) and a few lexical statistics from small
word lists written for this project. Transcripts longer than the encoder's 256 tokens are cut
into 256-token chunks whose embeddings are averaged, weighted by their token counts.
"""
from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000

# resemblyzer's hparams: the encoder was trained on exactly this front end.
MEL_WINDOW = 400  # 25 ms
MEL_HOP = 160  # 10 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s per partial window
PARTIAL_STEP = 77  # round(16000 / 1.3 / 160): resemblyzer's default rate of 1.3 partials per second
MIN_COVERAGE = 0.75  # a trailing partial window with less real audio than this is dropped
TARGET_DBFS = -30.0
DVECTOR_DIMS = 256
DVECTOR_BATCH = 32

# Energy stand-in for WebRTC's VAD, on resemblyzer's 30 ms VAD grid.
VAD_WINDOW = 480
VAD_SMOOTH = 8  # windows in the moving average
VAD_DILATE = 3  # windows kept on each side of speech (resemblyzer dilates by 7 windows in total)
VAD_RANGE_DB = 30.0  # windows this far below the loud ones count as silence (closest to WebRTC at 25-30)
VAD_FLOOR_DBFS = -70.0

EGEMAPS_DIMS = 88
# opensmile answers NaN for anything under ~0.1 s; zeros after the signal cost nothing here.
EGEMAPS_MIN_SAMPLES = SAMPLE_RATE // 4
EPS = 1e-12


# --- voice: mel front end ------------------------------------------------------------------------


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above it
    (27 mels per factor 6.4 in frequency), continuous at 1 kHz = 15 mels."""
    hz = np.asarray(hz, dtype=np.float64)
    log_part = 15.0 + 27.0 * np.log(np.maximum(hz, 1e-10) / 1000.0) / np.log(6.4)
    return np.where(hz < 1000.0, 3.0 * hz / 200.0, log_part)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel < 15.0, 200.0 * mel / 3.0, 1000.0 * np.exp((mel - 15.0) * np.log(6.4) / 27.0))


def mel_filterbank(sample_rate: int = SAMPLE_RATE, n_fft: int = MEL_WINDOW, n_mels: int = N_MELS) -> np.ndarray:
    """Triangular filters [n_mels, n_fft // 2 + 1], evenly spaced on the Slaney mel scale from 0 Hz
    to Nyquist, each scaled by 2 / (its width in Hz) so every filter has the same area."""
    bin_hz = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = _mel_to_hz(np.linspace(0.0, _hz_to_mel(sample_rate / 2.0), n_mels + 2))
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bin_hz[None] - low) / (centre - low)
    falling = (high - bin_hz[None]) / (high - centre)
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    return triangles * (2.0 / (high - low))


_FILTERBANK = mel_filterbank().T.astype(np.float32)  # [bins, mels]
# Periodic Hann: the window a DFT-based STFT expects.
_HANN = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(MEL_WINDOW) / MEL_WINDOW)).astype(np.float32)


def mel_power(audio: np.ndarray) -> np.ndarray:
    """Mel power spectrogram [1 + len // 160, 40] of 16 kHz audio; frame t is centred on sample
    160 t, the signal continued by zeros at both ends."""
    half = MEL_WINDOW // 2
    padded = np.pad(np.asarray(audio, dtype=np.float32), (half, half))
    frames = np.lib.stride_tricks.sliding_window_view(padded, MEL_WINDOW)[::MEL_HOP]
    spectrum = np.fft.rfft(frames * _HANN, axis=1)
    power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
    return power @ _FILTERBANK


# --- voice: resemblyzer-style preprocessing and partial windows ---------------------------------


def normalize_gain(audio: np.ndarray, target_dbfs: float = TARGET_DBFS) -> np.ndarray:
    """Raise quiet audio to target_dbfs RMS (never lower loud audio); silence stays silence."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if len(audio) else 0.0
    if rms <= 0.0:
        return audio
    gain_db = target_dbfs - 20.0 * np.log10(rms)
    return audio * np.float32(10.0 ** (gain_db / 20.0)) if gain_db > 0 else audio


def trim_long_silences(audio: np.ndarray) -> np.ndarray:
    """Drop silences longer than ~0.2 s, so pauses don't fill partial windows with nothing.

    Loud 30 ms windows (within VAD_RANGE_DB of the 95th percentile of window energy) are speech;
    a moving average removes isolated blips, and a few windows around speech are kept. When no
    window qualifies (silence, or noise only) the audio comes back unchanged."""
    n = len(audio) // VAD_WINDOW
    if n == 0:
        return audio
    windows = audio[: n * VAD_WINDOW].reshape(n, VAD_WINDOW)
    db = 10.0 * np.log10(np.mean(np.square(windows, dtype=np.float64), axis=1) + EPS)
    threshold = max(float(np.percentile(db, 95)) - VAD_RANGE_DB, VAD_FLOOR_DBFS)
    speech = (db > threshold).astype(np.float64)
    speech = np.convolve(speech, np.ones(VAD_SMOOTH) / VAD_SMOOTH, mode="same") >= 0.5
    speech = np.convolve(speech, np.ones(2 * VAD_DILATE + 1), mode="same") > 0
    if not speech.any():
        return audio
    return windows[speech].reshape(-1)


def partial_starts(n_samples: int) -> np.ndarray:
    """First mel frame of each 1.6 s partial window, as resemblyzer's embed_utterance splits.

    Windows start every PARTIAL_STEP frames until one reaches past the end of the audio; that
    last one is kept only if real audio covers MIN_COVERAGE of it (or it is the only one)."""
    n_frames = n_samples // MEL_HOP + 1
    last = max(0, n_frames - PARTIAL_FRAMES + PARTIAL_STEP)
    starts = np.arange(0, last + 1, PARTIAL_STEP)
    covered = (n_samples - starts[-1] * MEL_HOP) / (PARTIAL_FRAMES * MEL_HOP)
    if covered < MIN_COVERAGE and len(starts) > 1:
        starts = starts[:-1]
    return starts


def partial_mels(audio: np.ndarray) -> np.ndarray:
    """Mel frames of every partial window [windows, 160, 40]; audio shorter than the windows
    is continued with zeros (so 0.5 s gives one window, mostly padding)."""
    starts = partial_starts(len(audio))
    needed = (int(starts[-1]) + PARTIAL_FRAMES) * MEL_HOP
    if needed > len(audio):
        audio = np.pad(audio, (0, needed - len(audio)))
    mels = mel_power(audio)
    return np.stack([mels[s:s + PARTIAL_FRAMES] for s in starts])


def l2_normalize(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, EPS)


# --- voice features -----------------------------------------------------------------------------


class VoiceFeatures:
    """16 kHz mono float32 audio -> [88 eGeMAPSv02 functionals, 256-dim mean d-vector]."""

    def __init__(self, model_dir: Path, threads: int | None = None) -> None:
        import opensmile

        # onnxruntime only where a session is made: training imports this module's mel front end
        # on GPU machines that have torch but no onnxruntime.
        from core import runtime

        self.session = runtime.create_session(Path(model_dir) / "dvector.onnx", intra_op_threads=threads)
        self._input = self.session.get_inputs()[0].name
        self.smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                     feature_level=opensmile.FeatureLevel.Functionals)
        # One opensmile process per call is not documented as thread-safe: serialise it.
        self._smile_lock = threading.Lock()
        egemaps = [f"egemaps_{n}" for n in self.smile.feature_names]
        if len(egemaps) != EGEMAPS_DIMS:
            raise RuntimeError(f"opensmile eGeMAPSv02 gave {len(egemaps)} functionals, expected {EGEMAPS_DIMS}")
        self.names: list[str] = egemaps + [f"dvector_{i:03d}" for i in range(DVECTOR_DIMS)]
        self.dims: int = len(self.names)

    def egemaps(self, audio: np.ndarray) -> np.ndarray:
        """The 88 eGeMAPSv02 functionals over the whole recording; undefined ones (e.g. pitch
        statistics of a recording without voice) are 0, not NaN."""
        if len(audio) < EGEMAPS_MIN_SAMPLES:
            audio = np.pad(audio, (0, EGEMAPS_MIN_SAMPLES - len(audio)))
        with self._smile_lock:
            frame = self.smile.process_signal(audio, SAMPLE_RATE)
        values = frame.to_numpy(dtype=np.float32)[0]
        return np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)

    def dvector(self, audio: np.ndarray) -> np.ndarray:
        """The speaker embedding of raw audio: resemblyzer-style preprocessing, then `embed`."""
        return self.embed(trim_long_silences(normalize_gain(audio)))

    def embed(self, wav: np.ndarray) -> np.ndarray:
        """L2-normalised mean of the partial-window d-vectors of an already preprocessed
        waveform: the counterpart of resemblyzer's `embed_utterance`."""
        mels = partial_mels(wav)
        embeds = [self.session.run(None, {self._input: mels[i:i + DVECTOR_BATCH]})[0]
                  for i in range(0, len(mels), DVECTOR_BATCH)]
        return l2_normalize(np.concatenate(embeds).mean(axis=0)).astype(np.float32)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        audio = np.ascontiguousarray(audio, dtype=np.float32).reshape(-1)
        if not len(audio):
            raise ValueError("empty audio: the voice features need at least one sample")
        if not np.isfinite(audio).all():
            raise ValueError("audio contains NaN or Inf samples")
        return np.concatenate([self.egemaps(audio), self.dvector(audio)])


# --- text: lexical statistics -------------------------------------------------------------------

class WordList:
    """Exact words and stems ('*' at the end: any word that starts with it)."""

    def __init__(self, spec: str) -> None:
        items = spec.split()
        self.exact = frozenset(w for w in items if not w.endswith("*"))
        self.stems = tuple(w[:-1] for w in items if w.endswith("*"))

    def __contains__(self, word: str) -> bool:
        return word in self.exact or word.startswith(self.stems)


# Small lists written for this project, not a published lexicon. Stems are kept where no common
# unrelated word shares them ("pain*" would catch "painting", "happ*" "happen"); spoken fillers
# that look like sentiment ("like", "well", "kind of") are left out.
FIRST_PERSON_SINGULAR = WordList("i me my mine myself i'm im i've ive i'd i'll")
NEGATIVE_WORDS = WordList("""
    sad sadly sadness unhapp* depress* miser* lonel* alone hopeless* helpless* worthless* useless
    empty numb cry cried cries crying tears hurt* pain pains painful suffer* ache* afraid fear*
    scare* scary terrif* panic* anxi* worr* nervous* stress* tense overwhelm* angry anger mad
    furious hate* hating annoy* irritat* frustrat* upset* awful terribl* horribl* bad worse worst
    guilt* ashamed shame* embarrass* tired exhaust* fail* broke broken lost loss disappoint* sick
    dead die died dies dying death kill* regret* grief griev* bored boring weak
""")
POSITIVE_WORDS = WordList("""
    happy happier happiest happiness happily glad joy* enjoy* love loved lovely loves loving good
    great wonderful amazing awesome excellent fantastic nice fun funny laugh* smil* cheer*
    delight* pleased pleasant pleasure proud pride hope hoped hopeful hoping excit* calm* relax*
    peace* comfort* confident safe grateful thank* beautiful best win won success* optimis*
    energetic interesting friend*
""")
ABSOLUTIST_WORDS = WordList("""
    always never nothing everything everyone everybody nobody noone none all every entire
    entirely whole completely complete totally total absolutely absolute definitely constantly
    constant forever full fully must impossible ever
""")
FILLERS = WordList("um umm uh uhh er erm hmm mm ah")

LEXICAL_NAMES = (
    "log_words",  # log1p(number of words)
    "mean_word_length",  # characters per word
    "type_token_ratio",  # distinct / all words, moving average over 50-word windows when longer
    "first_person_singular_rate",  # per word
    "negative_emotion_rate",  # per word
    "positive_emotion_rate",  # per word
    "absolutist_rate",  # per word
    "filler_rate",  # per word: um, uh, er...
    "exclamation_rate",  # per sentence: sentences ending in '!'
    "question_rate",  # per sentence: sentences ending in '?'
)
TTR_WINDOW = 50
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")
_SENTENCE = re.compile(r"[^.!?]*[^.!?\s][^.!?]*([.!?]*)")


def words_of(text: str) -> list[str]:
    """Lower-cased words, apostrophes kept inside them (typographic ones folded to ')."""
    return _WORD.findall(text.lower().replace("\u2019", "'").replace("\u2018", "'"))


def type_token_ratio(words: list[str], window: int = TTR_WINDOW) -> float:
    """Moving-average type-token ratio: plain TTR falls with length, windows make transcripts of
    different lengths comparable."""
    if not words:
        return 0.0
    if len(words) <= window:
        return len(set(words)) / len(words)
    return float(np.mean([len(set(words[i:i + window])) / window for i in range(len(words) - window + 1)]))


def lexical_statistics(text: str) -> np.ndarray:
    """The LEXICAL_NAMES statistics of a transcript, float32; 0 where a rate has no denominator."""
    words = words_of(text)
    n = len(words)
    rate = (lambda lst: sum(w in lst for w in words) / n) if n else (lambda lst: 0.0)
    ends = [m.group(1) for m in _SENTENCE.finditer(text)]
    n_sent = len(ends)
    return np.array([
        np.log1p(n),
        float(np.mean([len(w) for w in words])) if n else 0.0,
        type_token_ratio(words),
        rate(FIRST_PERSON_SINGULAR),
        rate(NEGATIVE_WORDS),
        rate(POSITIVE_WORDS),
        rate(ABSOLUTIST_WORDS),
        rate(FILLERS),
        sum("!" in e for e in ends) / n_sent if n_sent else 0.0,
        sum("?" in e for e in ends) / n_sent if n_sent else 0.0,
    ], dtype=np.float32)


# --- text features ------------------------------------------------------------------------------


class TextFeatures:
    """Transcript -> [384-dim MiniLM sentence embedding, lexical statistics]."""

    MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length, [CLS] and [SEP] included
    BATCH = 16
    EMBED_DIMS = 384

    def __init__(self, model_dir: Path, threads: int | None = None) -> None:
        from tokenizers import Tokenizer

        from core import runtime

        model_dir = Path(model_dir)
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # Chunking below replaces the tokenizer's own truncation and padding.
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.cls_id = self.tokenizer.token_to_id("[CLS]")
        self.sep_id = self.tokenizer.token_to_id("[SEP]")
        self.session = runtime.create_session(model_dir / "minilm.onnx", intra_op_threads=threads)
        self.names: list[str] = ([f"minilm_{i:03d}" for i in range(self.EMBED_DIMS)]
                                 + [f"lex_{n}" for n in LEXICAL_NAMES])
        self.dims: int = len(self.names)

    def _chunks(self, text: str) -> list[list[int]]:
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        body = self.MAX_TOKENS - 2
        return [[self.cls_id, *ids[i:i + body], self.sep_id] for i in range(0, max(len(ids), 1), body)]

    def embed(self, text: str) -> np.ndarray:
        """The sentence embedding [384] (L2-normalised) of any length of text."""
        chunks = self._chunks(text)
        vectors = []
        for i in range(0, len(chunks), self.BATCH):
            batch = chunks[i:i + self.BATCH]
            width = max(len(c) for c in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            for row, chunk in enumerate(batch):
                ids[row, :len(chunk)] = chunk
                mask[row, :len(chunk)] = 1
            vectors.append(self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0])
        weights = np.array([len(c) for c in chunks], dtype=np.float32)
        return l2_normalize(weights @ np.concatenate(vectors)).astype(np.float32)

    def __call__(self, transcript: str) -> np.ndarray:
        if not isinstance(transcript, str) or not transcript.strip():
            raise ValueError("empty transcript: there is no text to take features from (skip the text modality)")
        return np.concatenate([self.embed(transcript), lexical_statistics(transcript)])
