"""The efficacy report of record gives the app's JPEG download beside lossless (issue 30): docs/efficacy/
latent.json has a column at the quality ridpixels.OUTPUT_FORMATS offers, for RID and for encoder PGD-50.
The name is derived from that table, so changing the quality without re-running the report's latent
table (the command in docs/efficacy/README.md, "The JPEG download") fails here. No model runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ridpixels import OUTPUT_FORMATS

DOCS = Path(__file__).resolve().parents[1] / "docs" / "efficacy"
DOWNLOAD = f"jpeg{OUTPUT_FORMATS['jpeg']['quality']}"


def test_the_latent_report_gives_the_offered_jpeg_quality_for_rid_and_encoder_pgd():
    latent = json.loads((DOCS / "latent.json").read_text())
    rows = latent["rows"]["taef2"]
    for method in ("RID", "encoder-PGD-50"):
        purified = rows[method].get("purified", {})
        assert DOWNLOAD in purified, (f"docs/efficacy/latent.json has no {DOWNLOAD} for {method}: the app offers JPEG at "
                                      f"quality {OUTPUT_FORMATS['jpeg']['quality']}; re-run the latent table")
        shift, kept = purified[DOWNLOAD], rows[method]["kept_pct"][DOWNLOAD]
        assert math.isfinite(shift) and shift > 0 and math.isfinite(kept), (method, shift, kept)
    assert "JPEG download" in latent["notes"][DOWNLOAD]


def test_the_docs_quote_the_figure_of_record():
    rid = json.loads((DOCS / "latent.json").read_text())["rows"]["taef2"]["RID"]
    readme = (DOCS / "README.md").read_text()
    assert "## The JPEG download" in readme
    assert f"{rid['purified'][DOWNLOAD]:.3f}" in readme and f"{rid['shift']:.3f}" in readme
    assert f"{DOWNLOAD} (JPEG download)" in (DOCS / "report.txt").read_text()
