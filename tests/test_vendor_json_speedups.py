"""The adapters' fast JSON (msgspec) must write and read exactly what the standard library does: vendor_extra is
compared byte for byte by analysts' diffs and by re-loads (a changed text would look like a changed row)."""

from __future__ import annotations

import json
import math

import pytest

from c360.ingest.vendors.common import extra_json, loads, pruned


def _reference(remainder: dict) -> str | None:
    rest = pruned(remainder)
    return json.dumps(rest, ensure_ascii=False, separators=(",", ":")) if rest else None


@pytest.mark.parametrize("value", [
    {"a": "x", "b": "", "c": None, "d": {}, "e": [], "f": {"g": "", "h": [None, "", {}]}},
    {"price": 49.9, "big": 1e16, "small": 1e-5, "tiny": -2.5e-7, "zero": 0.0, "neg": -0.0, "int": 2**70},
    {"nan": float("nan"), "inf": float("inf"), "ninf": [float("-inf")]},
    {"text": "é\u2028\x00\x1f\"\\/😀", "nested": {"list": [1, "two", 3.5, True, False, None]}},
    {"lone": "\ud800"},  # msgspec refuses lone surrogates; json.dumps writes them
    {"keys": {1: "int key", "s": 2}},  # not from JSON, but a mapping may build one
])
def test_extra_json_is_the_standard_librarys_text(value):
    assert extra_json(value) == _reference(value)


def test_extra_json_of_nothing_left_is_null():
    assert extra_json({"a": "", "b": {"c": None}}) is None


@pytest.mark.parametrize("line", ['{"a":1,"a":2}', '{"x":1e400}', '{"n":12345678901234567890123}',
                                  '{"s":"\\ud800"}', '{"v":NaN}', '[1,2]', '  {"k": "é"}  '])
def test_loads_reads_what_json_loads_reads(line):
    got, want = loads(line), json.loads(line)
    assert json.dumps(got) == json.dumps(want)
    if isinstance(want, dict) and "v" in want:
        assert math.isnan(got["v"])


@pytest.mark.parametrize("line", ['{"a":', "not json", '{"a":1} x'])
def test_loads_refuses_what_json_loads_refuses(line):
    with pytest.raises(ValueError):
        loads(line)


def test_snowplow_tsv_fast_path_maps_like_the_generic_one():
    from datetime import date

    from c360.ingest.vendors.snowplow import FIELDS, map_record, map_tsv_record, parse_tsv
    from c360dev.generate.vendors import encode, journeys

    lines, _ = encode("snowplow", journeys(date(2026, 3, 10), visitors=20))
    for line in lines:
        generic = map_record(dict(zip(FIELDS, line.split("\t"), strict=True)), "snowplow")
        assert map_tsv_record(parse_tsv(line), "snowplow") == generic
        assert generic["vendor_extra"] and '"contexts":[' in generic["vendor_extra"]
