"""The model-neighbours benchmark runs end to end on a small catalogue and reports what it measured."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import model_neighbours  # noqa: E402


def test_a_small_run_prints_the_table_and_a_result_line_with_exact_recall_for_the_full_scan(capsys):
    environment = dict(os.environ)
    model_neighbours.main(
        [
            "--items",
            "4000",
            "--exact",
            "500",
            "--probes",
            "70",
            "--also-probes",
            "4",
            "--pool",
            "400",
            "--requests",
            "20",
            "--styles",
            "40",
            "--no-doc",
        ]
    )
    out = capsys.readouterr().out
    result = out.strip().splitlines()[-1]
    fields = dict(part.split("=") for part in result.removeprefix("RESULT ").split())
    assert set(fields) == {"neighbours_p95_ms", "exact_p95_ms", "recall8", "items"} and fields["items"] == "4000"
    assert float(fields["recall8"]) == 1.0  # 70 probes of 63 cells: every cell, the exact answers
    assert "popularity pool 400" in out and "cells, 4 probed" in out
    # the run leaves the suite's environment alone (later tests start subprocesses with it)
    assert dict(os.environ) == environment
