"""The rule editor behind the segments page: preview a new or changed segment's size, then save it to segments.yml.

A rule is checked by the rule language (c360/marketing/segment_rules.py: sqlglot parse + allow-list) before anything runs; the
preview evaluates the *rendered* rule on the warehouse copy over the same input dbt's segment_members uses (the
date's feature snapshot left-joined to the date's scores; a rule naming a score only admits scored customers).
Saving edits segments.yml as text - its comments and YAML anchors are the marketing team's documentation - then
re-reads the result with c360.marketing.segments.load_segments' validation and writes it atomically (temp file + rename), only
when the file has not changed since the editor was opened.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from c360.marketing.segment_rules import SCORE_COLUMNS, RuleError, compile_rule, describe_error
from c360.marketing.segments import CONSENTS, DESTINATIONS, NAME_RE, SegmentConfigError, parse_segments


class RuleRefused(ValueError):
    """The definition cannot be previewed or saved; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class Draft:
    name: str
    description: str
    where: str
    required_consent: str
    destination: str


@dataclass(frozen=True)
class Preview:
    as_of_date: date
    members: int
    with_consent: int
    where_sql: str
    needs_scores: bool


def check_draft(draft: Draft):
    """The compiled rule of a draft, or RuleRefused naming the field and the problem."""
    if not NAME_RE.match(draft.name or ""):
        raise RuleRefused(f"name {draft.name!r} is not an identifier: use lower-case letters, digits and _, starting "
                          "with a letter (at most 63 characters)")
    if not draft.description.strip():
        raise RuleRefused("description is empty: say in one sentence who is in the segment and what it is for")
    if draft.required_consent not in CONSENTS:
        raise RuleRefused(f"required_consent {draft.required_consent!r}: expected one of {', '.join(CONSENTS)}")
    if draft.destination not in DESTINATIONS:
        raise RuleRefused(f"destination {draft.destination!r}: expected one of {', '.join(DESTINATIONS)}")
    try:
        return compile_rule(draft.where)
    except RuleError as exc:
        raise RuleRefused(f"rule refused: {describe_error(exc)}") from None


def preview_size(con, draft: Draft, day: date) -> Preview:
    """Members (and members with marketing consent) the draft would have on `day`, on the warehouse copy `con`."""
    rule = check_draft(draft)
    needs_scores = any(c in SCORE_COLUMNS for c in rule.columns)
    score_cols = ", ".join(f"s.{c}" for c in SCORE_COLUMNS)
    sql = f"""
        WITH candidates AS (
            SELECT f.*, {score_cols}, s.customer_id IS NOT NULL AS is_scored
            FROM feature_store.customer_features f
            LEFT JOIN (SELECT * FROM marts.customer_scores WHERE as_of_date = $1) s ON s.customer_id = f.customer_id
            WHERE f.as_of_date = $1)
        SELECT count(*), count(*) FILTER (WHERE marketing_consent IS TRUE)
        FROM candidates WHERE ({rule.sql}){' AND is_scored' if needs_scores else ''}"""
    try:
        members, consenting = con.execute(sql, [day]).fetchone()
    except Exception as exc:  # a type error the allow-list cannot see (lower(orders_count)): the binder's words
        raise RuleRefused(f"rule refused by the warehouse on {day}: {str(exc).splitlines()[0]}") from None
    return Preview(day, int(members), int(consenting), rule.sql, needs_scores)


def bind_draft(snapshot, draft: Draft) -> None:
    """Bind the rule against the warehouse copy's feature snapshot, as `c360 segments check` does: a rule inside the
    language can still be a type error (lower(orders_count)) that would stop the nightly's dbt build. Skipped only
    when there is no copy or no snapshot table yet (nothing to bind against)."""
    from c360.marketing.segments import PREDICATE_TABLE, check_predicates, relation_exists

    rule = check_draft(draft)
    if snapshot is None:
        return
    segment = parse_segments({"segments": [{"name": draft.name, "description": draft.description or "-",
                                            "where": rule.source, "required_consent": draft.required_consent,
                                            "destination": draft.destination}]})
    con = snapshot.connect()
    try:
        if not relation_exists(con, PREDICATE_TABLE):
            return
        problems = check_predicates(con, segment)
    finally:
        con.close()
    if problems:
        raise RuleRefused(f"rule refused by the warehouse, nothing was saved: {'; '.join(problems)}")


# ------------------------------------------------------------------------------------------------ saving


def file_version(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def explicit_names(doc: dict) -> list[str]:
    """Names listed under `segments:` (editable here); per_category ones come from the template."""
    return [s.get("name") for s in doc.get("segments") or [] if isinstance(s, dict)]


def _scalar(value: str) -> str:
    """A YAML scalar for one line: plain when it reads back unchanged, else double-quoted (JSON is valid YAML)."""
    import yaml

    if "\n" not in value and value == value.strip() and "#" not in value \
            and not value.startswith(("*", "&", "!", "'", '"', "{", "[", "|", ">", "%", "@", "`", "-", "?")):
        try:
            if yaml.safe_load(f"k: {value}") == {"k": value}:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value, ensure_ascii=False)


def _segments_block(lines: list[str]) -> tuple[int, int]:
    """(first line after `segments:`, end of the list): the list ends at the next top-level key, before the
    comments and blank lines that introduce it."""
    start = next((i for i, line in enumerate(lines) if re.match(r"^segments:\s*(#.*)?$", line)), None)
    if start is None:
        raise RuleRefused("segments.yml has no top-level `segments:` list to add to; add one by hand first")
    end = len(lines)
    for i in range(start + 1, len(lines)):
        if lines[i] and not lines[i][0].isspace() and not lines[i].startswith(("#", "-")):
            end = i
            break
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")) \
            and not lines[end - 1].startswith(" "):
        end -= 1
    return start + 1, end


def _item_bounds(lines: list[str], lo: int, hi: int, name: str) -> tuple[int, int, str]:
    """Lines [a, b) of the list item named `name` and the indentation of its fields."""
    for i in range(lo, hi):
        m = re.match(r"^(\s*)- name:\s*(.+?)\s*(#.*)?$", lines[i])
        if m and m.group(2).strip("'\"") == name:
            dash = len(m.group(1))
            b = i + 1
            while b < hi and not re.match(rf"^\s{{0,{dash}}}- ", lines[b]) and \
                    not (lines[b].strip() and len(lines[b]) - len(lines[b].lstrip()) <= dash
                         and not lines[b].lstrip().startswith("#")):
                b += 1
            return i, b, " " * (dash + 2)
    raise RuleRefused(f"segment {name!r} is not in segments.yml's `segments:` list")


def _set_field(lines: list[str], a: int, b: int, indent: str, key: str, value: str) -> None:
    """Replace `key:` (and its continuation lines) inside item lines [a, b), or add it after the name line."""
    new = f"{indent}{key}: {_scalar(value)}"
    for i in range(a, b):
        depth = len(lines[i]) - len(lines[i].lstrip())
        if i > a and depth == len(indent) and lines[i].lstrip().startswith(f"{key}:"):
            j = i + 1
            while j < b and lines[j].strip() and len(lines[j]) - len(lines[j].lstrip()) > len(indent):
                j += 1
            lines[i:j] = [new]
            return
    lines.insert(a + 1, new)


def edited_text(text: str, draft: Draft) -> str:
    """segments.yml's text with the draft added (new name) or its fields replaced (existing name); comments, anchors
    and every other segment are kept byte for byte."""
    import yaml

    doc = yaml.safe_load(text) or {}
    lines = text.splitlines()
    lo, hi = _segments_block(lines)
    fields = {"description": draft.description.strip(), "where": draft.where.strip(),
              "required_consent": draft.required_consent, "destination": draft.destination}
    if draft.name in explicit_names(doc):
        a, b, indent = _item_bounds(lines, lo, hi, draft.name)
        for key in ("destination", "required_consent", "where", "description"):  # reverse: each lands after name
            _set_field(lines, a, b, indent, key, fields[key])
            a, b, indent = _item_bounds(lines, lo, len(lines), draft.name)
    else:
        item_indent = next((re.match(r"^(\s*)- ", lines[i]).group(1) for i in range(lo, hi)
                            if re.match(r"^\s*- ", lines[i])), "  ")
        block = ["", f"{item_indent}- name: {draft.name}"] + \
                [f"{item_indent}  {k}: {_scalar(v)}" for k, v in fields.items()]
        lines[hi:hi] = block
    return "\n".join(lines) + "\n"


def save_draft(path: Path, draft: Draft, expected_version: str, generated: set[str]) -> str:
    """Validate and write the draft into segments.yml; returns the new file's version. Raises RuleRefused."""
    import yaml

    check_draft(draft)
    if draft.name in generated:
        raise RuleRefused(f"segment {draft.name!r} is generated from segments.yml's per_category template: edit the "
                          "template (or the category list) in the file itself")
    text = path.read_text(encoding="utf-8")
    if file_version(text) != expected_version:
        raise RuleRefused(f"{path} changed since the editor was opened (someone else saved, or the file was edited): "
                          "reload the page and apply your change again")
    new_text = edited_text(text, draft)
    try:
        saved = {s.name: s for s in parse_segments(yaml.safe_load(new_text), source=str(path))}
    except (SegmentConfigError, yaml.YAMLError) as exc:
        raise RuleRefused(f"segments.yml would be invalid, nothing was saved: {exc}") from None
    got = saved.get(draft.name)
    if got is None or (got.description, got.where, got.required_consent, got.destination) != (
            draft.description.strip(), draft.where.strip(), draft.required_consent, draft.destination):
        raise RuleRefused(f"could not place segment {draft.name!r} in {path} safely (unusual layout): nothing was "
                          "saved; edit the file by hand")
    atomic_write(path, new_text.encode("utf-8"))
    return file_version(new_text)


def atomic_write(path: Path, data: bytes) -> None:
    """Temp file in the same folder, flushed to disk, then renamed over `path` with its permissions: a reader (the
    nightly loading segments.yml) sees the old file or the new one, never half of one."""
    import os
    import tempfile

    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
