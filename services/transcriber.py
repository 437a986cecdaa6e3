"""The transcriber family served alone:

    bentoml serve services.transcriber:Transcriber      # http://127.0.0.1:3000, /ui, /metrics

The endpoints live in services/transcriber_api.py so that services/hark.py can compose them
without building this service's demo page too.
"""
from __future__ import annotations

import bentoml

from core import config
from services.serving import finish
from services.transcriber_api import FAMILY, TranscriberAPI


@bentoml.service(**config.service_config())
class Transcriber(TranscriberAPI):
    """hark transcriber: polyphonic, instrument-agnostic note transcription (audio to notes / MIDI)."""


finish(Transcriber, [FAMILY])
