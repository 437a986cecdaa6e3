"""deploy/ parses and holds what a cluster needs, checked offline (no cluster, no network)."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from services.metrics import PREFIX

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def load(name: str) -> dict:
    return yaml.safe_load((DEPLOY / "k8s" / name).read_text())


def test_deployment_has_a_gpu_and_probes_on_open_paths() -> None:
    d = load("deployment.yaml")
    assert d["kind"] == "Deployment" and d["apiVersion"] == "apps/v1"
    spec = d["spec"]["template"]["spec"]
    assert d["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
    (container,) = spec["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["HARK_HOST"] == "0.0.0.0"
    mounts = {m["name"] for m in container["volumeMounts"]}
    assert mounts <= {v["name"] for v in spec["volumes"]}


def test_service_and_hpa_point_at_the_deployment() -> None:
    deployment, service, hpa = load("deployment.yaml"), load("service.yaml"), load("hpa.yaml")
    assert service["kind"] == "Service"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert hpa["kind"] == "HorizontalPodAutoscaler"
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_scrape_config_keeps_the_hark_pods() -> None:
    (job,) = load("prometheus-scrape.yaml")["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    keep = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    assert any(r["regex"] == "hark" for r in keep)


def test_dashboard_queries_hark_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "hark-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert dashboard["uid"] and len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for metric in ("audio_seconds_total", "inference_seconds_bucket", "rejected_requests_total", "model_info"):
        assert any(f"{PREFIX}_{metric}" in e for e in exprs), metric
