"""The codec family served alone:

    bentoml serve services.codec:Codec      # http://127.0.0.1:3000, /ui, /metrics, /stream/codec

The endpoints live in services/codec_api.py so that services/hark.py can compose them.
"""
from __future__ import annotations

import bentoml

from core import config
from services.codec_api import FAMILY, CodecAPI
from services.serving import finish


@bentoml.service(**config.service_config())
class Codec(CodecAPI):
    """hark codec: 16 kHz speech to GRVQ tokens at 1 or 2 kbps and back, offline or streamed."""


finish(Codec, [FAMILY])
