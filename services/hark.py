"""Every hark family behind one port: what `make serve` / `hark serve all` runs.

    bentoml serve services.hark:Hark        # http://127.0.0.1:3000: all APIs, /ui, /metrics

A family joins by adding its API mixin to the bases of `Hark` and its `Family` to `FAMILIES`
(see services/serving.py); the demo page gets one tab per family.
"""
from __future__ import annotations

import bentoml

from services import config
from services.classifier_api import FAMILY as CLASSIFIER
from services.classifier_api import ClassifierAPI
from services.codec_api import FAMILY as CODEC
from services.codec_api import CodecAPI
from services.serving import finish
from services.transcriber_api import FAMILY as TRANSCRIBER
from services.transcriber_api import TranscriberAPI

FAMILIES = [TRANSCRIBER, CODEC, CLASSIFIER]


@bentoml.service(**config.service_config())
class Hark(TranscriberAPI, CodecAPI, ClassifierAPI):
    """hark: small audio models served with BentoML (one endpoint group per model family)."""


finish(Hark, FAMILIES)
