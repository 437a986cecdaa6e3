"""The codec family's HTTP endpoints, as a mixin for any @bentoml.service (see
services/serving.py): speech to tokens, tokens to speech, and both in one go.

    curl -F audio=@speech.wav -F bitrate_kbps=2 -o speech.hark http://127.0.0.1:3000/encode
    curl -F tokens=@speech.hark -o decoded.wav http://127.0.0.1:3000/decode
    curl -F audio=@speech.wav -F bitrate_kbps=1 -o coded.wav http://127.0.0.1:3000/reconstruct
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import bentoml
import numpy as np
from bentoml.validators import ContentType
from pydantic import Field

from core import audio as audio_io
from core import codec_tokens, config
from services import metrics
from core.audio import wav_bytes
from core.codec_model import CodecModel
from services.codec_stream import codec_stream
from services.family_api import FamilyAPI, file_stem, model_getter
from services.serving import Family
from services.upload import AudioUpload, reject


NAME = "codec"
MAX_TOKEN_BYTES = codec_tokens.MAX_FILE_BYTES

_AUDIO_HELP = "the speech recording, a multipart file: WAV, FLAC, OGG, MP3, AIFF; mono or stereo, any rate"
_PARAM_HELP = {
    "bitrate_kbps": "1 (the first residual stage of each group) or 2 (all four codebooks); default 2",
    "format": "hark: a .hark token file (default); json: the codes as [frames][groups][stages] in JSON",
    "tokens": "a .hark token file made by /encode",
}
AudioField = Annotated[Optional[AudioUpload], Field(description=_AUDIO_HELP)]
TokensField = Annotated[Optional[AudioUpload], Field(description=_PARAM_HELP["tokens"])]
BitrateField = Annotated[Optional[float], Field(description=_PARAM_HELP["bitrate_kbps"])]
FormatField = Annotated[Literal["hark", "json"], Field(description=_PARAM_HELP["format"])]

class CodecAPI(FamilyAPI):
    """Codec endpoints; mix into a @bentoml.service class (see services/serving.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.codec: CodecModel = self.start_family(
            NAME, CodecModel, lambda m: m.reconstruct(np.zeros(m.frame_hop * 4, dtype=np.float32), m.bitrates_kbps[-1]))

    def _audio(self, upload: AudioUpload | None, kbps: float | None) -> tuple[Any, np.ndarray | None, float]:
        """(error or None, the decoded audio at the model's rate, the bitrate)."""
        m = self.codec
        if upload is not None:  # a missing file is the first thing to say
            kbps = m.bitrates_kbps[-1] if kbps is None else kbps
            try:
                m.stages_for(kbps)
            except ValueError as exc:
                return reject("params", f"Invalid parameters: bitrate_kbps: {exc}"), None, 0.0
        error, decoded = self.decode_upload(
            upload, m.sample_rate, audio_io.Limits.from_env(),
            missing="No audio: send the recording as the multipart file field 'audio' (curl -F audio=@speech.wav).")
        return (error, None, 0.0) if decoded is None else (None, decoded.samples, float(kbps))

    @bentoml.api(route="/encode")
    def encode(self, audio: AudioField = None, bitrate_kbps: BitrateField = None,
               format: FormatField = "hark") -> Annotated[Path, ContentType("application/octet-stream")]:
        """Encode speech into codec tokens: a .hark token file, or the codes as JSON."""
        from starlette.responses import JSONResponse, Response

        error, x, kbps = self._audio(audio, bitrate_kbps)
        if error is not None:
            return error
        t0 = time.perf_counter()
        tokens = self.codec.tokens(x, kbps)
        metrics.observe_inference(NAME, x.size / self.codec.sample_rate, time.perf_counter() - t0)
        data = codec_tokens.dumps(tokens)
        facts = {"bitrate_kbps": kbps, "frames": tokens.frames, "samples": tokens.samples,
                 "sample_rate": tokens.sample_rate, "frame_rate": tokens.frame_rate,
                 "groups": int(tokens.codes.shape[1]), "stages": int(tokens.codes.shape[2]),
                 "codebook_size": tokens.codebook_size, "file_bytes": len(data),
                 "effective_kbps": round(8 * len(data) / max(x.size / self.codec.sample_rate, 1e-9) / 1000, 4)}
        if format == "json":
            return JSONResponse({**facts, "codes": tokens.codes.tolist()})
        return Response(data, media_type="application/octet-stream", headers={
            "Content-Disposition": f'attachment; filename="{file_stem(audio, "speech")}.hark"',
            "X-Hark-Bitrate-Kbps": f"{kbps:g}", "X-Hark-Effective-Kbps": f"{facts['effective_kbps']:g}"})

    @bentoml.api(route="/decode")
    def decode(self, tokens: TokensField = None) -> Annotated[Path, ContentType("audio/wav")]:
        """Decode a .hark token file back into speech (16-bit WAV at the codec's rate)."""
        from starlette.responses import Response

        m = self.codec
        if tokens is None:
            return reject("missing_file", "No tokens: send a .hark file as the multipart file field 'tokens' "
                                          "(curl -F tokens=@speech.hark)")
        data = tokens.read_bytes()
        if len(data) > MAX_TOKEN_BYTES:
            return reject("too_large", f"A token file may have at most {MAX_TOKEN_BYTES} bytes")
        try:
            # The declared length decides, before any code is unpacked or decoded: the byte cap
            # alone would let 18 hours of tokens through.
            too_long = codec_tokens.too_long(codec_tokens.read_header(data).duration_s,
                                             config.max_audio_seconds())
            if too_long is not None:
                return reject("too_long", too_long, status=413)
            parsed = codec_tokens.loads(data)
            m.check_tokens(parsed)
        except ValueError as exc:  # TokenFileError included: refused, never decoded into noise
            return reject("bad_tokens", f"Not a token file this codec can decode: {exc}")
        t0 = time.perf_counter()
        y = m.decode(parsed.codes, samples=parsed.samples, gain_db=parsed.gain_db)
        metrics.observe_inference(NAME, y.size / m.sample_rate, time.perf_counter() - t0)
        return Response(wav_bytes(y, m.sample_rate), media_type="audio/wav", headers={
            "Content-Disposition": f'attachment; filename="{file_stem(tokens, "decoded")}.wav"'})

    @bentoml.api(route="/reconstruct")
    def reconstruct(self, audio: AudioField = None,
                    bitrate_kbps: BitrateField = None) -> Annotated[Path, ContentType("audio/wav")]:
        """Encode and decode in one call: the speech as the far end of a call at that bitrate hears it."""
        from starlette.responses import Response

        error, x, kbps = self._audio(audio, bitrate_kbps)
        if error is not None:
            return error
        t0 = time.perf_counter()
        y = self.codec.reconstruct(x, kbps)
        metrics.observe_inference(NAME, x.size / self.codec.sample_rate, time.perf_counter() - t0)
        return Response(wav_bytes(y, self.codec.sample_rate), media_type="audio/wav", headers={
            "Content-Disposition": f'attachment; filename="{file_stem(audio, "speech")}_{kbps:g}kbps.wav"',
            "X-Hark-Bitrate-Kbps": f"{kbps:g}"})


FAMILY = Family(
    name=NAME,
    routes=("/encode", "/decode", "/reconstruct"),
    model_getter=model_getter(NAME),
    field_help={"audio": _AUDIO_HELP, **_PARAM_HELP},
    streams={"codec": codec_stream},
)
