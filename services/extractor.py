"""The extractor family served alone:

    bentoml serve services.extractor:Extractor      # http://127.0.0.1:3000, /ui, /metrics, /stream/extractor

The endpoints live in services/extractor_api.py so that services/hark.py can compose them.
"""
from __future__ import annotations

import bentoml

from core import config
from services.extractor_api import FAMILY, ExtractorAPI
from services.serving import finish


@bentoml.service(**config.service_config())
class Extractor(ExtractorAPI):
    """hark extractor: target speech hearing. Enroll a voice from a noisy binaural clip, then hear
    only that voice in binaural mixtures, offline or streamed in 8 ms chunks."""


finish(Extractor, [FAMILY])
