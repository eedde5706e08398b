"""The segment rule language: a `where` of segments.yml parsed into a tree, checked against an allow-list, rendered.

Marketing edits segments.yml, and its rules used to be pasted into dbt's SQL as written: a rule could close the
predicate's parenthesis and `union` rows of its own (with `marketing_consent` forced to true), or call
`read_text('/etc/passwd')`. Now each rule is parsed by sqlglot (DuckDB dialect) - a maintained SQL parser, not
regular expressions, so quoting, nesting and operator precedence are the parser's problem - and every node of the
tree must be on the allow-list below. The SQL dbt receives is rendered from that checked tree, never the raw text,
so whatever the parser did not understand as part of the tree cannot reach the warehouse.

The vocabulary (docs/exports.md#segment-rules):
  columns    the date's feature snapshot (the enforced contract of feature_store.customer_features,
             dbt_project/models/feature_store/_feature_store__models.yml, which docs/feature_store.md lists) and the
             score columns (SCORE_COLUMNS) - except PROTECTED_COLUMNS: ids, consent and contact data
  literals   numbers, 'text', true/false/null, date 'YYYY-MM-DD', timestamp '...', interval 30 day
  operators  = <> != < <= > >= is [not] distinct from, and or not, + - * / %, in (literals), between,
             is [not] null / true / false, like, ilike, parentheses
  functions  FUNCTIONS
A rule is a condition (true/false): it cannot assign or select columns, so it cannot change what a member row holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

# The score columns (and their types) a rule may use besides the feature snapshot's (dbt: segment_members.sql's
# `candidates`; the dbt macro segment_score_columns() names the same ones to tell which rules need the date's scores).
SCORE_COLUMNS = {"churn_probability": "DOUBLE", "churn_decile": "INTEGER", "p_alive": "DOUBLE",
                 "expected_purchases": "DOUBLE", "predicted_value_eur": "DOUBLE", "value_decile": "INTEGER"}

# Columns a rule may not read, with the reason given to whoever wrote it.
PROTECTED_COLUMNS = {
    "customer_id": "it is the customer's id: a segment is a rule over behaviour and scores, not a hand-picked "
                   "list of people",
    "person_id": "it is the person's id (the identity graph's key): a segment is a rule over behaviour and scores, "
                 "not a hand-picked list of people",
    "marketing_consent": "consent is applied by the segment's required_consent at export, never by a rule (a rule "
                         "on it could only build a list of the people who refused marketing)",
    "email": "contact data is not segment input; the export adds it for consenting customers only",
    "first_name": "contact data is not segment input; the export adds it for consenting customers only",
    "last_name": "contact data is not segment input; the export adds it for consenting customers only",
}

# Harmless scalar functions: sqlglot expression class name -> the name shown to users. sqlglot maps aliases to
# the same class (ifnull -> coalesce, ceiling -> ceil, len -> length, datediff -> date_diff); anything it does not
# know becomes exp.Anonymous and is refused, as are all table, file, network and system functions.
FUNCTIONS = {"Coalesce": "coalesce", "Abs": "abs", "Round": "round", "Floor": "floor", "Ceil": "ceil",
             "Least": "least", "Greatest": "greatest", "Lower": "lower", "Upper": "upper", "Length": "length",
             "DateDiff": "date_diff"}
# At most this many arguments (as DuckDB takes them): sqlglot silently drops extra arguments of some functions
# (round, date_diff), and a rule must run as written, not as a shortened version of it.
MAX_ARGS = {"abs": 1, "lower": 1, "upper": 1, "length": 1, "len": 1, "floor": 1, "ceil": 1, "ceiling": 1,
            "round": 2, "date_diff": 3, "datediff": 3}
DATE_PARTS = ("day", "week", "month", "year")
INTERVAL_UNITS = DATE_PARTS + tuple(p + "s" for p in DATE_PARTS)
TYPED_LITERALS = ("DATE", "TIMESTAMP", "TIMESTAMPNTZ")

_COMPARISONS = ("EQ", "NEQ", "GT", "GTE", "LT", "LTE", "NullSafeEQ", "NullSafeNEQ")
_CONDITIONS = _COMPARISONS + ("Between", "In", "Is", "Like", "ILike")
_ARITHMETIC = ("Add", "Sub", "Mul", "Div", "Mod", "Neg")
# walked generically: every Expression child is checked in turn
_OPERATORS = frozenset(_CONDITIONS + _ARITHMETIC + ("And", "Or", "Not", "Paren") + tuple(FUNCTIONS))

VOCABULARY = (
    "A rule is one true/false condition over the segment input columns (docs/exports.md#segment-rules) using: "
    "comparisons (= <> != < <= > >=, is [not] distinct from), and / or / not, arithmetic (+ - * / %), "
    "in (a list of literals), between ... and ..., is [not] null / true / false, like / ilike, parentheses; "
    "literals (numbers, 'text', true, false, null, date 'YYYY-MM-DD', timestamp '...', interval 30 day); "
    f"functions {', '.join(FUNCTIONS.values())}."
)


class RuleError(ValueError):
    """A rule is outside the language; `offending` is the text at fault, `reason` says why."""

    def __init__(self, offending: str, reason: str, *, list_columns: bool = False):
        self.offending, self.reason, self.list_columns = offending, reason, list_columns
        super().__init__(f"{offending!r} is refused: {reason}")


@dataclass(frozen=True)
class Rule:
    source: str  # as written in segments.yml
    sql: str  # rendered from the checked tree: what dbt and `c360 segments check` run
    columns: tuple[str, ...]  # the input columns it reads, sorted


# ------------------------------------------------------------------------------------------------ columns


def contract_file() -> Path:
    """The feature snapshot's contract: in the configured dbt project when it holds the models, else in the
    repository's own (a DBT_PROJECT_DIR that only holds a target/ folder, as some tests and deployments use)."""
    from c360.config import PROJECT_ROOT, get_settings

    rel = Path("models") / "feature_store" / "_feature_store__models.yml"
    configured = Path(get_settings().dbt_project_dir) / rel
    return configured if configured.exists() else PROJECT_ROOT / "dbt_project" / rel


@lru_cache(maxsize=4)
def _contract_columns(path: str, mtime: float) -> dict[str, str]:
    import yaml

    spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    model = next((m for m in spec.get("models", []) if m.get("name") == "customer_features"), None)
    if not model or not model.get("columns"):
        raise RuntimeError(f"{path}: no customer_features model with columns; the segment rules read them from there")
    return {c["name"]: str(c.get("data_type", "")).lower() for c in model["columns"]}


def input_columns() -> dict[str, str]:
    """The columns a rule may read -> their type ('' when unknown): the feature snapshot's contract plus the
    score columns, minus PROTECTED_COLUMNS. The contract (a dbt-enforced one) is the single list; docs/feature_store.md
    is tested to name exactly its columns."""
    path = contract_file()
    columns = dict(_contract_columns(str(path), path.stat().st_mtime))
    columns.update({c: t.lower() for c, t in SCORE_COLUMNS.items()})
    for c in PROTECTED_COLUMNS:
        columns.pop(c, None)
    return columns


# ------------------------------------------------------------------------------------------------ compile


def compile_rule(text: str) -> Rule:
    """Parse, check and render one rule. Raises RuleError naming the offending text and why."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError

    if not isinstance(text, str) or not text.strip():
        raise RuleError(str(text), "the rule is empty")
    text = text.strip()
    # Refused anywhere, even inside a quoted text: the dbt macro (second line of defence) refuses them in the
    # rendered SQL too, so a rule passing here never fails there.
    for token, what in ((";", "a ';' (statement separator)"), ("--", "a '--' comment"), ("/*", "a '/*' comment")):
        if token in text:
            raise RuleError(token, f"the rule contains {what}; write a single expression without ';' or comments")
    dialect = sqlglot.Dialect.get_or_raise("duckdb")
    try:
        tokens = dialect.tokenize(text)
    except TokenError as exc:
        raise RuleError(text, f"it is not valid SQL: {str(exc).splitlines()[0]}") from None
    # Two passes so that the most telling problem is named: in `x > 1) union all select ...` the union, not the ')'.
    for tok in tokens:
        if tok.comments:
            raise RuleError(tok.text, "the rule contains a comment; write a single expression without comments")
        kind = tok.token_type.name
        if kind in ("SELECT", "UNION", "INTERSECT", "EXCEPT", "FROM", "WITH", "JOIN", "VALUES", "TABLE", "PIVOT",
                    "UNPIVOT", "SUMMARIZE", "DESCRIBE", "SHOW"):
            raise RuleError(tok.text, "queries, subqueries and set operations (select, union, from, ...) are not "
                                      "allowed: a rule is a condition over the segment input columns")
        if kind == "STAR" and _is_star(tokens, tok):
            raise RuleError(tok.text, "'*' (all columns) is not allowed: name the columns (a * b, between two "
                                      "values, is multiplication)")
    depth = 0
    for tok in tokens:
        kind = tok.token_type.name
        if kind == "L_PAREN":
            depth += 1
        elif kind == "R_PAREN":
            depth -= 1
            if depth < 0:
                raise RuleError(text[: tok.end + 1][-40:], f"unbalanced parentheses: the ')' at character "
                                                           f"{tok.start + 1} closes nothing")
    if depth > 0:
        raise RuleError(text[-40:], f"unbalanced parentheses: {depth} '(' never closed")
    _check_arity(text, tokens)
    try:
        trees = sqlglot.parse(text, dialect="duckdb")
    except ParseError as exc:
        err = (exc.errors or [{}])[0]
        near = (err.get("highlight") or "").strip() or text
        raise RuleError(near, f"it is not valid SQL: {err.get('description', str(exc).splitlines()[0])} "
                              f"(line {err.get('line', '?')}, column {err.get('col', '?')})") from None
    except RecursionError:
        raise RuleError(text[:40], "it is nested too deeply") from None
    trees = [t for t in trees if t is not None]
    if len(trees) != 1:
        raise RuleError(text, "a rule is exactly one expression")
    tree = trees[0]
    columns = input_columns()
    used: set[str] = set()
    try:
        checked = _check(tree, columns, used, exp)
        if not _is_condition(checked, columns, exp):
            raise RuleError(checked.sql(dialect="duckdb"), "it is not a true/false condition (e.g. write "
                                                            "`orders_count > 0`, not `orders_count`)")
        rendered = checked.sql(dialect="duckdb", comments=False)
    except RecursionError:
        raise RuleError(text[:40], "it is nested too deeply") from None
    return Rule(source=text, sql=rendered, columns=tuple(sorted(used)))


def _check_arity(text: str, tokens) -> None:
    """Refuse a call of a known function with more arguments than it takes (see MAX_ARGS)."""
    for i, tok in enumerate(tokens[:-1]):
        limit = MAX_ARGS.get(tok.text.lower())
        if limit is None or tokens[i + 1].token_type.name != "L_PAREN":
            continue
        depth, args = 0, 1
        for later in tokens[i + 1:]:
            kind = later.token_type.name
            depth += kind == "L_PAREN"
            depth -= kind == "R_PAREN"
            if depth == 1 and kind == "COMMA":
                args += 1
            if depth == 0:
                if args > limit:
                    raise RuleError(text[tok.start: later.end + 1], f"{tok.text.lower()}() takes at most {limit} "
                                                                    f"argument{'s' if limit > 1 else ''}")
                break


def _is_star(tokens, tok) -> bool:
    """A '*' not between two operands (`a * b` is multiplication; `*`, `t.*`, `count(*)`, `* replace` are stars)."""
    i = tokens.index(tok)
    before = tokens[i - 1].token_type.name if i > 0 else None
    after = tokens[i + 1].token_type.name if i + 1 < len(tokens) else None
    operand_end = ("VAR", "NUMBER", "STRING", "R_PAREN", "IDENTIFIER")
    operand_start = ("VAR", "NUMBER", "STRING", "L_PAREN", "IDENTIFIER", "DASH", "PLUS")
    return not (before in operand_end and after in operand_start)


def _literalish(node, exp) -> bool:
    if isinstance(node, exp.Neg):
        return isinstance(node.this, exp.Literal) and not node.this.is_string
    return isinstance(node, (exp.Literal, exp.Boolean, exp.Null)) or _typed_literal(node, exp)


def _typed_literal(node, exp) -> bool:
    """date '2025-01-31' / timestamp '...': a Cast of a quoted literal to a date type, nothing else attached."""
    return (isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal) and node.this.is_string
            and isinstance(node.to, exp.DataType) and node.to.this.name in TYPED_LITERALS
            and not node.to.expressions and _no_other_args(node, ("this", "to"), exp))


def _no_other_args(node, keys: tuple[str, ...], exp) -> bool:
    """Whether the node carries no expression besides `keys` (flags such as safe=False do not count)."""
    return not any(isinstance(v, (exp.Expression, list)) and v for k, v in node.args.items() if k not in keys)


def _check(node, columns: dict[str, str], used: set[str], exp):
    """Return the node, with columns replaced by canonical unquoted names; raise RuleError on anything else."""
    name = type(node).__name__
    if isinstance(node, exp.Column):
        if not _no_other_args(node, ("this",), exp):
            raise RuleError(node.sql(dialect="duckdb"), "table-qualified references are not allowed: write the "
                                                        "column name alone")
        if not isinstance(node.this, exp.Identifier):
            raise RuleError(node.sql(dialect="duckdb"), "only plain column names are allowed")
        col = node.this.name.lower()
        if col in PROTECTED_COLUMNS:
            raise RuleError(node.this.name, f"this column cannot be used in a rule: {PROTECTED_COLUMNS[col]}")
        if col not in columns:
            raise RuleError(node.this.name, "unknown column: a rule reads only the segment input columns",
                            list_columns=True)
        used.add(col)
        return exp.column(col)
    if isinstance(node, (exp.Literal, exp.Boolean, exp.Null)):
        return node
    if _typed_literal(node, exp):
        return node
    if isinstance(node, exp.Cast):
        raise RuleError(node.sql(dialect="duckdb"), "casts are not allowed (only typed literals such as "
                                                    "date '2025-01-31')")
    if isinstance(node, exp.Interval):
        unit = node.args.get("unit")
        if not isinstance(node.this, exp.Literal) or not isinstance(unit, exp.Var) \
                or unit.name.lower() not in INTERVAL_UNITS or not _no_other_args(node, ("this", "unit"), exp):
            raise RuleError(node.sql(dialect="duckdb"), "an interval is a number and a unit: interval 30 day "
                                                        f"(units: {', '.join(INTERVAL_UNITS)})")
        return node
    if isinstance(node, exp.DateDiff):
        unit = node.args.get("unit")
        if not isinstance(unit, exp.Var) or unit.name.lower() not in DATE_PARTS \
                or not _no_other_args(node, ("this", "expression", "unit"), exp):
            raise RuleError(node.sql(dialect="duckdb"), "date_diff takes a date part and two dates: "
                                                        f"date_diff('day', a, b) (parts: {', '.join(DATE_PARTS)})")
        node.set("this", _check(node.this, columns, used, exp))
        node.set("expression", _check(node.expression, columns, used, exp))
        return node
    if isinstance(node, exp.In):
        items = node.expressions
        if not items or not _no_other_args(node, ("this", "expressions"), exp):
            raise RuleError(node.sql(dialect="duckdb"), "in (...) takes a list of literals, e.g. "
                                                        "country in ('DE', 'AT')")
        for item in items:
            if not _literalish(item, exp):
                raise RuleError(item.sql(dialect="duckdb"), "in (...) takes a list of literals only")
        node.set("this", _check(node.this, columns, used, exp))
        return node
    if isinstance(node, exp.Is) and not isinstance(node.expression, (exp.Null, exp.Boolean)):
        raise RuleError(node.sql(dialect="duckdb"), "'is' takes null, true or false")
    if name not in _OPERATORS:
        raise RuleError(node.sql(dialect="duckdb"), _refusal(node, exp))
    for key, child in list(node.args.items()):
        if isinstance(child, exp.Expression):
            node.set(key, _check(child, columns, used, exp))
        elif isinstance(child, list):
            node.set(key, [_check(c, columns, used, exp) if isinstance(c, exp.Expression) else c for c in child])
    return node


def _refusal(node, exp) -> str:
    if isinstance(node, (exp.Query, exp.Subquery, exp.Exists)):
        return "subqueries are not allowed: a rule is a condition over the segment input columns"
    if isinstance(node, exp.Star):
        return "'*' is not allowed: name the columns"
    if isinstance(node, exp.PropertyEQ):
        return "assignments are not allowed: a rule is a condition, it cannot set columns"
    if isinstance(node, exp.Func):
        fname = node.sql_name() if not isinstance(node, exp.Anonymous) else node.name
        return f"function {fname.lower()}() is not allowed; allowed functions: {', '.join(FUNCTIONS.values())}"
    if isinstance(node, exp.Placeholder):
        return "parameters are not allowed: write the value"
    return f"{type(node).__name__} expressions are not part of the rule language"


def _is_condition(node, columns: dict[str, str], exp) -> bool:
    """Whether the checked tree yields true/false (a boolean column, a comparison, or and/or/not of those)."""
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, (exp.And, exp.Or)):
        return _is_condition(node.this, columns, exp) and _is_condition(node.expression, columns, exp)
    if isinstance(node, exp.Not):
        return _is_condition(node.this, columns, exp)
    if isinstance(node, exp.Column):
        return columns.get(node.name) == "boolean"
    return isinstance(node, exp.Boolean) or type(node).__name__ in _CONDITIONS


def describe_error(err: RuleError) -> str:
    """The RuleError with the vocabulary (and the column list when a column was refused) for the user."""
    out = f"{err}. {VOCABULARY}"
    if err.list_columns:
        out += f" Columns: {', '.join(sorted(input_columns()))}."
    return out
