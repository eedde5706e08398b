"""Marketing segments: load and validate `segments.yml`, and the `c360 segments` command (list, sizes, deltas, export).

The definitions are the single source for three consumers: dbt (which builds `marts.segment_members` from the
`where` rules; it gets them from `segments_dbt_var()`), the exports (consent rule, columns, destination)
and this command line. Each `where` is a rule of the language in c360/marketing/segment_rules.py: parsed, checked against an
allow-list and rendered; dbt receives the rendered SQL (`Segment.where_sql`), never the text as written.
"""

from __future__ import annotations

import logging
import re
import string
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

from c360.config import PROJECT_ROOT
from c360.marketing.segment_rules import SCORE_COLUMNS as RULE_SCORE_COLUMNS
from c360.marketing.segment_rules import RuleError, compile_rule, describe_error
from c360.pipeline.warehouse import (
    relation_exists as relation_exists,  # re-export: c360.pipeline.report imports it from here
)

log = logging.getLogger(__name__)

DEFAULT_SEGMENTS_FILE = PROJECT_ROOT / "segments.yml"

# required_consent -> the segment_members column that must be true. "none" exports everyone, emails still gated.
CONSENTS: dict[str, str | None] = {"marketing": "marketing_consent", "none": None}
DESTINATIONS = ("crm", "ads", "analytics")
SCORE_COLUMNS = ("churn_probability", "churn_decile", "p_alive", "predicted_value_eur", "value_decile")
RECOMMENDATION_COLUMNS = ("rec_1", "rec_2", "rec_3")
# Personal data besides the email: exported only for consenting customers, like the email.
CONTACT_COLUMNS = ("first_name", "last_name")
OPTIONAL_COLUMNS = SCORE_COLUMNS + RECOMMENDATION_COLUMNS + CONTACT_COLUMNS
DEFAULT_COLUMNS = SCORE_COLUMNS + RECOMMENDATION_COLUMNS

SEGMENT_FIELDS = ("name", "description", "where", "required_consent", "destination", "columns")
REQUIRED_FIELDS = ("name", "description", "where", "required_consent", "destination")
TOP_LEVEL_KEYS = ("version", "segments", "per_category")
TEMPLATE_PLACEHOLDERS = ("category", "slug", "category_sql")

# Lower-case identifiers: they become file names, dbt values and column values, so keep them boring.
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class SegmentConfigError(ValueError):
    """segments.yml is invalid; the message lists every problem with the segment and field it concerns."""


@dataclass(frozen=True)
class Segment:
    name: str
    description: str
    where: str  # the rule as written in segments.yml
    required_consent: str  # a key of CONSENTS
    destination: str  # one of DESTINATIONS
    columns: tuple[str, ...]  # optional export columns, in file order
    where_sql: str = ""  # the rule rendered from its checked tree: what dbt and `c360 segments check` run

    @property
    def consent_column(self) -> str | None:
        return CONSENTS[self.required_consent]

    def as_dict(self) -> dict[str, Any]:
        """The definition as segments.yml holds it (loadable again); `where_sql` is derived, so not included."""
        d = asdict(self)
        d["columns"] = list(self.columns)
        del d["where_sql"]
        return d


# ----------------------------------------------------------------------------------------------- loading


def load_segments(path: str | Path | None = None) -> list[Segment]:
    """Read and validate the segments file (default: segments.yml at the repository root).

    Raises SegmentConfigError naming the file, the segment and the field of every problem found.
    """
    import yaml  # imported here: `c360 --help` stays fast

    path = Path(path or DEFAULT_SEGMENTS_FILE)
    if not path.exists():
        raise SegmentConfigError(f"{path}: segments file not found")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SegmentConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_segments(doc, source=str(path))


def parse_segments(doc: Any, source: str = "segments.yml") -> list[Segment]:
    """Validate an already-parsed document (a dict) and expand the per-category template."""
    errors: list[str] = []
    if not isinstance(doc, dict):
        raise SegmentConfigError(f"{source}: expected a mapping with a 'segments' list at the top level")
    for key in doc:
        # `x-...` keys hold YAML anchors (shared column lists); everything else must be known.
        if key not in TOP_LEVEL_KEYS and not str(key).startswith("x-"):
            errors.append(f"unknown top-level key {key!r}; allowed: {', '.join(TOP_LEVEL_KEYS)} (or x-* for anchors)")
    if doc.get("version", 1) != 1:
        errors.append(f"version {doc.get('version')!r} is not supported; expected 1")

    raw_segments = doc.get("segments") or []
    if not isinstance(raw_segments, list):
        errors.append("'segments' must be a list of segment mappings")
        raw_segments = []
    segments: list[Segment] = []
    for i, item in enumerate(raw_segments):
        seg = _parse_one(item, f"segments[{i}]", errors)
        if seg is not None:
            segments.append(seg)
    generated = _expand_per_category(doc["per_category"], errors) if "per_category" in doc else []
    segments.extend(generated)

    # Count names of invalid entries too, so a duplicate is reported together with the other problems.
    names = [item["name"].strip() for item in raw_segments
             if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"].strip()]
    seen: dict[str, int] = {}
    for name in names + [g.name for g in generated]:
        seen[name] = seen.get(name, 0) + 1
    errors.extend(f"segment {n!r}: the name is defined {k} times; names must be unique" for n, k in seen.items() if k > 1)
    if not segments and not errors:
        errors.append("no segments defined")
    if errors:
        raise SegmentConfigError(f"{source} is invalid:\n  - " + "\n  - ".join(errors))
    return segments


def _label(item: Any, where: str) -> str:
    name = item.get("name") if isinstance(item, dict) else None
    return f"segment {name!r} ({where})" if isinstance(name, str) and name else f"segment at {where}"


def _parse_one(item: Any, where: str, errors: list[str]) -> Segment | None:
    if not isinstance(item, dict):
        errors.append(f"{where}: expected a mapping with fields {', '.join(SEGMENT_FIELDS)}, got {type(item).__name__}")
        return None
    label = _label(item, where)
    before = len(errors)
    for key in item:
        if key not in SEGMENT_FIELDS:
            errors.append(f"{label}: unknown field {key!r}; allowed: {', '.join(SEGMENT_FIELDS)}")
    for key in REQUIRED_FIELDS:
        value = item.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            errors.append(f"{label}: field {key!r} is missing or empty")
        elif not isinstance(value, str):
            errors.append(f"{label}: field {key!r} must be text, got {type(value).__name__}")
    if len(errors) > before:
        return None

    name, where_sql = item["name"].strip(), item["where"].strip()
    if not NAME_RE.match(name):
        errors.append(f"{label}: field 'name' {name!r} is not an identifier: use lower-case letters, digits and _, "
                      "starting with a letter (at most 63 characters)")
    rendered = ""
    try:
        rendered = compile_rule(where_sql).sql
    except RuleError as exc:
        errors.append(f"{label}: field 'where' {where_sql!r}: {describe_error(exc)}")
    consent = item["required_consent"].strip()
    if consent not in CONSENTS:
        errors.append(f"{label}: field 'required_consent' is {consent!r}; expected one of: {', '.join(CONSENTS)}")
    destination = item["destination"].strip()
    if destination not in DESTINATIONS:
        errors.append(f"{label}: field 'destination' is {destination!r}; expected one of: {', '.join(DESTINATIONS)}")
    columns = item.get("columns", list(DEFAULT_COLUMNS))
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        errors.append(f"{label}: field 'columns' must be a list of column names")
        columns = []
    for col in columns:
        if col not in OPTIONAL_COLUMNS:
            errors.append(f"{label}: field 'columns' has unknown column {col!r}; allowed: {', '.join(OPTIONAL_COLUMNS)}")
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        errors.append(f"{label}: field 'columns' lists {', '.join(dupes)} more than once")
    if len(errors) > before:
        return None
    return Segment(name=name, description=item["description"].strip(), where=where_sql, required_consent=consent,
                   destination=destination, columns=tuple(columns), where_sql=rendered)


def predicate_problem(where_sql: str) -> str | None:
    """Why a `where` rule cannot be used, with the allowed vocabulary (None when it is a valid rule).

    The same check as load_segments (c360/marketing/segment_rules.py): one function decides for the command line, the
    nightly and dbt's input.
    """
    try:
        compile_rule(where_sql)
    except RuleError as exc:
        return describe_error(exc)
    return None


def _slug(category: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", category.lower()).strip("_")
    return slug if slug and slug[0].isalpha() else f"c_{slug}"


def _expand_per_category(block: Any, errors: list[str]) -> list[Segment]:
    """One segment per listed category, from a template whose text fields may use {category} {slug} {category_sql}."""
    if not isinstance(block, dict):
        errors.append("per_category: expected a mapping with 'categories' and 'template'")
        return []
    for key in block:
        if key not in ("categories", "template"):
            errors.append(f"per_category: unknown key {key!r}; allowed: categories, template")
    categories, template = block.get("categories"), block.get("template")
    if not isinstance(categories, list) or not categories or not all(isinstance(c, str) and c.strip() for c in categories):
        errors.append("per_category: 'categories' must be a non-empty list of category names")
        return []
    if not isinstance(template, dict):
        errors.append("per_category: 'template' must be a segment mapping")
        return []
    for key, value in template.items():
        if isinstance(value, str):
            for _, field_name, _, _ in string.Formatter().parse(value):
                if field_name is not None and field_name not in TEMPLATE_PLACEHOLDERS:
                    errors.append(f"per_category: template field {key!r} uses unknown placeholder {{{field_name}}}; "
                                  f"allowed: {', '.join('{' + p + '}' for p in TEMPLATE_PLACEHOLDERS)}")
                    return []
    out = []
    for category in categories:
        # the warehouse stores categories in lower case (stg_shop__products): compare with that form, whatever the
        # capitalisation in segments.yml
        stored = category.strip().lower()
        values = {"category": category, "slug": _slug(category), "category_sql": "'" + stored.replace("'", "''") + "'"}
        item = {k: (v.format(**values) if isinstance(v, str) else v) for k, v in template.items()}
        seg = _parse_one(item, f"per_category[{category!r}]", errors)
        if seg is not None:
            out.append(seg)
    return out


def segment_definitions(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The validated definitions as plain dicts (name, description, where, required_consent, destination, columns)."""
    return [s.as_dict() for s in load_segments(path)]


def segments_dbt_var(path: str | Path | None = None) -> dict[str, Any]:
    """The dbt var for the segment models: `dbt build --vars "$(json.dumps(segments_dbt_var()))"`.

    `{"segments": [{"name", "where", "required_consent", "consent_column"}, ...]}`, `where` being the SQL rendered
    from the checked rule (never the text as written). dbt needs only what decides membership; export columns and
    destinations stay on the Python side. Raises SegmentConfigError on an invalid file: call it before any dbt run.
    """
    return {"segments": [{"name": s.name, "where": s.where_sql, "required_consent": s.required_consent,
                          "consent_column": s.consent_column} for s in load_segments(path)]}


def get_segment(segments: list[Segment], name: str) -> Segment:
    for s in segments:
        if s.name == name:
            return s
    raise SegmentConfigError(f"no segment named {name!r}; defined: {', '.join(s.name for s in segments)}")


# -------------------------------------------------------------------------------------- warehouse queries


def latest_segment_date(con) -> date | None:
    if not relation_exists(con, "marts.segment_members"):
        return None
    return con.execute("SELECT max(as_of_date) FROM marts.segment_members").fetchone()[0]


def segment_sizes(con, as_of_date: date, segments: list[Segment]) -> list[dict[str, Any]]:
    """Per defined segment: members, members with marketing consent, rows its export will have, entered, exited."""
    counts = {}
    if relation_exists(con, "marts.segment_members"):
        counts = {r[0]: r[1:] for r in con.execute(
            """SELECT segment, count(*), count(*) FILTER (WHERE marketing_consent IS TRUE)
               FROM marts.segment_members WHERE as_of_date = $1 GROUP BY segment""", [as_of_date]).fetchall()}
    deltas = segment_deltas(con, as_of_date)
    out = []
    for s in segments:
        members, consenting = counts.get(s.name, (0, 0))
        out.append({"segment": s.name, "members": members, "with_marketing_consent": consenting,
                    "exportable": consenting if s.consent_column else members,
                    "required_consent": s.required_consent, "destination": s.destination,
                    **deltas.get(s.name, {"entered": 0, "exited": 0})})
    return out


def segment_deltas(con, as_of_date: date) -> dict[str, dict[str, int]]:
    """{segment: {"entered": n, "exited": m}} for the date (all members, before any consent filter).

    Counted from marts.segment_changes, the one derivation of the changes (dbt); {} before dbt built it."""
    if not relation_exists(con, "marts.segment_changes"):
        return {}
    rows = con.execute("SELECT segment, change, count(*) FROM marts.segment_changes WHERE as_of_date = $1 "
                       "GROUP BY 1, 2", [as_of_date]).fetchall()
    out: dict[str, dict[str, int]] = {}
    for segment, change, n in rows:
        out.setdefault(segment, {"entered": 0, "exited": 0})[change] = n
    return out


# What the predicates are evaluated over: the date's feature snapshot plus the scores (types for binding).
PREDICATE_TABLE = "feature_store.customer_features"
SCORE_TYPES = RULE_SCORE_COLUMNS


def check_predicates(con, segments: list[Segment], table: str = PREDICATE_TABLE) -> list[str]:
    """Bind every predicate against a warehouse table plus the score columns it lacks (zero rows read).

    Returns one message per predicate that does not bind (unknown column, type error).
    """
    schema, _, name = table.partition(".")
    have = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = $1 "
                                      "AND table_name = $2", [schema, name]).fetchall()}
    extra = "".join(f", NULL::{t} AS {c}" for c, t in SCORE_TYPES.items() if c not in have)
    relation = f"(SELECT *{extra} FROM {table} LIMIT 0)"
    problems = []
    for s in segments:
        try:
            # Select the expression itself: DuckDB would silently cast e.g. an integer to boolean in WHERE.
            kind = str(con.execute(f"SELECT ({s.where_sql}) AS p FROM {relation}").description[0][1])
        except Exception as exc:  # duckdb raises Binder/Catalog/Conversion errors; all mean "fix the predicate"
            problems.append(f"segment {s.name!r}: field 'where' fails against {table}: {str(exc).splitlines()[0]}")
            continue
        if kind.upper() not in ("BOOLEAN", "BOOL"):
            problems.append(f"segment {s.name!r}: field 'where' is of type {kind}, not a true/false condition "
                            f"(e.g. write `orders_count > 0`, not `orders_count`)")
    return problems
