"""The classifier family served alone:

    bentoml serve services.classifier:Classifier      # http://127.0.0.1:3000, /ui, /metrics

The endpoint lives in services/classifier_api.py so that services/hark.py can compose it.
"""
from __future__ import annotations

import bentoml

from core import config
from services.classifier_api import FAMILY, ClassifierAPI
from services.serving import finish


@bentoml.service(**config.service_config())
class Classifier(ClassifierAPI):
    """hark classifier: speech- and text-based classification, fused per recording (research use only)."""


finish(Classifier, [FAMILY])
