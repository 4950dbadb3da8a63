"""The complete-the-look search benchmark runs end to end on a small catalogue and reports what it measured."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import complement_search  # noqa: E402


def test_a_small_run_with_every_cell_probed_finds_the_same_partners_as_scoring_every_code(capsys, settings):
    # 3,000 products past an exact size of 500: an inverted file of 55 cells, every one probed
    settings.VISREC = {**settings.VISREC, "MODEL_NEIGHBOUR_EXACT": 500, "COMPLEMENT_PROBES": 60}
    complement_search.main(
        ["--items", "3000", "--requests", "12", "--styles", "30", "--prior-weight", "0", "--probes", "2", "--no-doc"]
    )
    out = capsys.readouterr().out
    fields = dict(part.split("=") for part in out.strip().splitlines()[-1].removeprefix("RESULT ").split())
    assert set(fields) == {"index_p95_ms", "every_code_p95_ms", "recall40", "items"} and fields["items"] == "3000"
    assert float(fields["recall40"]) == 1.0
    probed_two = next(line for line in out.splitlines() if line.startswith("| index (served) | 2 |"))
    assert float(probed_two.split("|")[-2]) < 1.0  # 2 of 55 cells miss some of the best partners
