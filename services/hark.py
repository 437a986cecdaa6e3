"""Every hark family behind one port: what `make serve` / `hark serve all` runs.

    bentoml serve services.hark:Hark        # http://127.0.0.1:3000: all APIs, /ui, /metrics

A family joins by adding its API class to the bases of `Hark` and its `Family` to `FAMILIES`
(see services/serving.py); the demo page gets one tab per family.
"""
from __future__ import annotations

import bentoml

from core import config
from services.classifier_api import FAMILY as CLASSIFIER
from services.classifier_api import ClassifierAPI
from services.codec_api import FAMILY as CODEC
from services.codec_api import CodecAPI
from services.extractor_api import FAMILY as EXTRACTOR
from services.extractor_api import ExtractorAPI
from services.serving import finish
from services.transcriber_api import FAMILY as TRANSCRIBER
from services.transcriber_api import TranscriberAPI

FAMILIES = [TRANSCRIBER, EXTRACTOR, CODEC, CLASSIFIER]


@bentoml.service(**config.service_config())
class Hark(TranscriberAPI, ExtractorAPI, CodecAPI, ClassifierAPI):
    """hark: small audio models served with BentoML (one endpoint group per model family)."""

    # Until artifacts/extractor exists (`hark export extractor`), serve the other families and
    # answer the extractor's routes with 503, instead of failing every worker at start-up.
    extractor_optional = True


finish(Hark, FAMILIES)
