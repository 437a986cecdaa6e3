"""`bentoml build` works offline and yields a GPU image definition without torch.

Builds the real bento (services.hark:Hark with the shipped artifacts) in a throw-away
BENTOML_HOME, then reads what `bentoml containerize` would build: bento.yaml, the generated
Dockerfile and the Python requirements. No Docker engine is needed.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from hark import REPO_ROOT, cli

ARTIFACTS = REPO_ROOT / "artifacts"
GPU_REQUIREMENTS = REPO_ROOT / "requirements" / "serve-gpu.txt"
NEVER_IN_IMAGE = {"torch", "torchaudio", "torchvision", "tensorflow", "basic-pitch", "onnxruntime"}


def requirements(text: str) -> dict[str, Requirement]:
    """Requirement lines of a requirements file (comments and pip options skipped), by name."""
    reqs: dict[str, Requirement] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            reqs[canonicalize_name(req.name)] = req
    return reqs


def test_gpu_requirements_follow_the_serve_extra() -> None:
    # The image must run what `make serve` runs: same pins, only the onnxruntime build differs.
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    expected = requirements("\n".join(project["dependencies"] + project["optional-dependencies"]["serve"]))
    ort = expected.pop("onnxruntime")
    got = requirements(GPU_REQUIREMENTS.read_text())
    gpu = got.pop("onnxruntime-gpu")
    assert gpu.specifier == ort.specifier, "onnxruntime-gpu and onnxruntime should be the same release"
    assert {"cuda", "cudnn"} <= gpu.extras, "CUDA and cuDNN come from pip wheels on a plain base image"
    assert {n: str(r) for n, r in got.items()} == {n: str(r) for n, r in expected.items()}


def _offline_env(bentoml_home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        BENTOML_HOME=str(bentoml_home),
        BENTOML_DO_NOT_TRACK="True",
        # Any attempt to reach a package index or hub fails fast instead of passing by luck.
        HTTP_PROXY="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
        http_proxy="http://127.0.0.1:9",
        https_proxy="http://127.0.0.1:9",
        NO_PROXY="",
        no_proxy="",
        PIP_NO_INDEX="1",
        UV_OFFLINE="1",
        HF_HUB_OFFLINE="1",
    )
    return env


@pytest.fixture(scope="module")
def bento(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Register the shipped artifacts and build the bento; returns the bento directory."""
    missing = [p for p in ("services/hark.py", "services/model_store.py") if not (REPO_ROOT / p).is_file()]
    if missing:
        pytest.skip(f"not in this checkout yet: {', '.join(missing)}")
    families = [f for f, spec in cli.FAMILIES.items() if spec.serve]
    absent = [f for f in families if not (ARTIFACTS / f / "card.json").is_file()]
    if absent:
        pytest.skip(f"no shipped artifacts for: {', '.join(absent)} (run `hark export FAMILY`)")

    home = tmp_path_factory.mktemp("bentoml_home")
    env = _offline_env(home)
    register = subprocess.run(
        [sys.executable, "-m", "hark.cli", "serve", "all", "--register-only"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert register.returncode == 0, register.stdout + register.stderr
    build = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "--output", "tag"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    versions = list((home / "bentos" / "hark").iterdir())
    versions = [v for v in versions if v.is_dir() and not v.is_symlink() and v.name != "latest"]
    assert len(versions) == 1, versions
    return versions[0]


def test_bento_serves_every_family(bento: Path) -> None:
    info = yaml.safe_load((bento / "bento.yaml").read_text())
    assert info["service"] == cli.ALL_SERVICE
    assert info["entry_service"] == cli.ALL_SERVICE.split(":")[1]
    routes = {r["route"] for r in info["schema"]["routes"]}
    for spec in cli.FAMILIES.values():
        if spec.serve:
            # Every endpoint of the family's own service is in the all-families bento.
            module, _, name = spec.serve.partition(":")
            service = getattr(importlib.import_module(module), name)
            missing = {api.route for api in service.apis.values()} - routes
            assert not missing, f"{spec.serve} endpoints missing from the bento: {sorted(missing)}"


def test_bento_carries_the_shipped_models(bento: Path) -> None:
    info = yaml.safe_load((bento / "bento.yaml").read_text())
    tags = {m["tag"] for s in info["services"] for m in s["models"]} | {m["tag"] for m in info["models"]}
    names = {tag.split(":")[0] for tag in tags}
    for family, spec in cli.FAMILIES.items():
        if spec.serve:
            assert any(family in name for name in names), f"no {family} model in {sorted(tags)}"
    # The models must be the ones just registered, so containerize can copy them.
    store = bento.parents[2] / "models"
    for tag in tags:
        name, version = tag.split(":")
        assert (store / name / version).is_dir(), f"{tag} is not in the model store"


def test_image_is_a_plain_python_base_with_onnxruntime_gpu(bento: Path) -> None:
    dockerfile = (bento / "env" / "docker" / "Dockerfile").read_text()
    assert "FROM python:3.11-slim " in dockerfile
    # The LD_LIBRARY_PATH in bentofile.yaml points into this venv.
    assert "uv venv --python 3.11 /app/.venv" in dockerfile
    assert "ENV LD_LIBRARY_PATH=" in dockerfile
    ld_path = next(e["value"] for e in yaml.safe_load((REPO_ROOT / "bentofile.yaml").read_text())["envs"]
                   if e["name"] == "LD_LIBRARY_PATH")
    assert "/app/.venv/lib/python3.11/site-packages/nvidia/cu13/lib" in ld_path.split(":")
    assert "/app/.venv/lib/python3.11/site-packages/nvidia/cudnn/lib" in ld_path.split(":")
    for env in ("NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "HARK_HOST"):
        assert f"ENV {env}=" in dockerfile

    reqs = requirements((bento / "env" / "python" / "requirements.txt").read_text())
    assert "onnxruntime-gpu" in reqs
    assert not NEVER_IN_IMAGE & set(reqs), sorted(NEVER_IN_IMAGE & set(reqs))
    assert str(reqs["bentoml"].specifier) == "==1.4.40"


def test_bento_source_is_only_what_the_service_needs(bento: Path) -> None:
    src = bento / "src"
    assert (src / "services" / "hark.py").is_file()
    assert (src / "hark" / "cli.py").is_file()
    for family, spec in cli.FAMILIES.items():
        if spec.serve:
            assert (src / "artifacts" / family / "card.json").is_file()
    top = {p.name for p in src.iterdir()}
    assert not top & {".venv", "training", "models", "export", "benchmarks", "tests", "data", "runs"}, top
    assert not list(src.rglob("__pycache__"))
