"""A very short run of benchmarks.serving against the shared test server."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import Server

from benchmarks import serving


def test_serving_benchmark_drives_every_family(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "serving.json"
    assert serving.main(["--url", server.url, "--pid", str(server.proc.pid), "--duration", "1.5",
                         "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["load"]) == {"transcriber", "codec", "extractor", "classifier"}
    for family, row in result["load"].items():
        assert row["requests"] >= 1 and row["errors"] == 0, (family, row)
        assert 0 < row["p50_s"] <= row["p99_s"]
        # the idle workers give their peak back: within 20 % of where they started
        assert row["rss_mb_start"] > 0 and row["rss_mb_end"] <= 1.2 * row["rss_mb_start"]
    assert result["meta"]["duration_s"] == 1.5


def test_workers_give_back_the_memory_of_the_longest_requests(server: Server, tmp_path: Path) -> None:
    # The shared server's limit is 30 s (and 2 MB uploads); the benchmark's default run is 600 s.
    out = tmp_path / "max.json"
    assert serving.main(["--url", server.url, "--pid", str(server.proc.pid), "--max-size", "20",
                         "--out", str(out)]) == 0
    m = json.loads(out.read_text())["max_size"]
    assert m["seconds"] == 20 and m["rss_mb_warm"] > 0
    for family in ("extractor", "transcriber"):
        assert m[family]["status"] == 200, m
        assert m[family]["rss_mb_after"] <= 1.2 * m["rss_mb_warm"], m
