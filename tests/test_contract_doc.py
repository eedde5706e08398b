"""The landing contract page and the code that enforces it must agree."""

from __future__ import annotations

import re
from pathlib import Path

from c360.config import get_settings
from c360.ingest.contract import ENTITIES, REASONS
from c360.ingest.load import _rules

DOC = (Path(__file__).resolve().parent.parent / "docs" / "landing_contract.md").read_text()


def test_every_reason_the_code_can_give_is_documented_in_order():
    documented = re.findall(r"^\| `([a-z_]+)` \|", DOC, flags=re.M)
    assert documented == list(REASONS)
    # return_without_sale and duplicate_row are decided after the row rules (against raw and the whole load)
    produced = {r for e in ENTITIES.values() for r, _, _ in _rules(e, get_settings())}
    produced |= {"return_without_sale", "duplicate_row"}
    assert produced == set(REASONS)


def test_every_column_is_documented():
    for entity in ENTITIES.values():
        section = DOC.split(f"## {entity.name} ")[1].split("\n## ")[0]
        for col in entity.column_names:
            assert re.search(rf"\b{col}\b", section), f"{entity.name}.{col} missing from docs/landing_contract.md"
