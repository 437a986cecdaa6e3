"""hark: train small audio models, export them to ONNX and serve them with BentoML.

The package itself stays import-light (no torch, no bentoml) so that the `hark` console
script starts fast and works in a serve-only install; see `hark.cli`.
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

# Repository root when hark runs from a checkout or an editable install; the shipped
# models live under it in artifacts/.
REPO_ROOT: Path = Path(__file__).resolve().parents[1]
