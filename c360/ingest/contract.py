"""The landing contract as code: entities, their columns and types, and the validation rules with their reasons.

docs/landing_contract.md describes the same thing for people; tests check the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # DuckDB type in raw.<table>
    required: bool = False
    pii: bool = False
    # False: filled by ingestion (a vendor adapter), not accepted in a landed file of the project's own format
    landed: bool = True


@dataclass(frozen=True)
class Entity:
    name: str  # landing folder name
    table: str  # raw table name
    columns: tuple[Column, ...]
    formats: tuple[str, ...]
    required_entity: bool = False
    # columns whose value is an event time, checked for parse errors and for being in the future
    timestamp_columns: tuple[str, ...] = ()
    numeric_columns: tuple[str, ...] = ()
    # the first timestamp that says when the row happened (used for future_timestamp and history spreading)
    event_time_column: str | None = None
    # key that identifies a duplicate; None = the whole landed record
    duplicate_key: tuple[str, ...] | None = None
    extra: dict = field(default_factory=dict)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def landed_column_names(self) -> list[str]:
        return [c.name for c in self.columns if c.landed]

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]


TABLE_FORMATS = (".csv", ".csv.gz", ".parquet")
JSON_FORMATS = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson", ".ndjson.gz")
# Snowplow's enriched events as tab-separated lines without header (tracking/snowplow/ only)
TSV_FORMATS = (".tsv", ".tsv.gz")

TRANSACTIONS = Entity(
    name="transactions",
    table="transactions",
    required_entity=True,
    formats=TABLE_FORMATS,
    columns=(
        Column("order_id", "VARCHAR", required=True),
        Column("customer_id", "VARCHAR", required=True),
        Column("ordered_at", "TIMESTAMPTZ", required=True),
        Column("amount", "DECIMAL(18,4)"),
        Column("quantity", "INTEGER"),
        Column("unit_price", "DECIMAL(18,4)"),
        Column("line_id", "INTEGER"),
        Column("product_id", "VARCHAR"),
        Column("discount", "DECIMAL(18,4)"),
        Column("currency", "VARCHAR"),
        Column("line_type", "VARCHAR"),
        Column("returned_at", "TIMESTAMPTZ"),
        Column("status", "VARCHAR"),
        Column("channel", "VARCHAR"),
        Column("is_test", "BOOLEAN"),
        Column("updated_at", "TIMESTAMPTZ"),
    ),
    timestamp_columns=("ordered_at", "returned_at", "updated_at"),
    numeric_columns=("amount", "quantity", "unit_price", "discount", "line_id"),
    event_time_column="ordered_at",
)

CUSTOMERS = Entity(
    name="customers",
    table="customers",
    formats=TABLE_FORMATS,
    columns=(
        Column("customer_id", "VARCHAR", required=True),
        Column("email", "VARCHAR", pii=True),
        Column("first_name", "VARCHAR", pii=True),
        Column("last_name", "VARCHAR", pii=True),
        Column("signup_at", "TIMESTAMPTZ"),
        Column("country", "VARCHAR"),
        Column("acquisition_channel", "VARCHAR"),
        Column("marketing_consent", "BOOLEAN"),
        Column("consent_updated_at", "TIMESTAMPTZ"),
        Column("updated_at", "TIMESTAMPTZ"),
    ),
    timestamp_columns=("signup_at", "consent_updated_at", "updated_at"),
    event_time_column="updated_at",
)

PRODUCTS = Entity(
    name="products",
    table="products",
    formats=TABLE_FORMATS,
    columns=(
        Column("product_id", "VARCHAR", required=True),
        Column("name", "VARCHAR"),
        Column("category", "VARCHAR"),
        Column("subcategory", "VARCHAR"),
        Column("brand", "VARCHAR"),
        Column("price", "DECIMAL(18,4)"),
        Column("currency", "VARCHAR"),
        Column("updated_at", "TIMESTAMPTZ"),
    ),
    timestamp_columns=("updated_at",),
    numeric_columns=("price",),
    event_time_column="updated_at",
)

TRACKING = Entity(
    name="tracking",
    table="tracking_events",
    formats=JSON_FORMATS,
    columns=(
        Column("event_id", "VARCHAR", required=True),
        Column("event_type", "VARCHAR", required=True),
        Column("occurred_at", "TIMESTAMPTZ", required=True),
        Column("anonymous_id", "VARCHAR", required=True),
        Column("customer_id", "VARCHAR"),
        Column("page_url", "VARCHAR"),
        Column("product_id", "VARCHAR"),
        Column("search_query", "VARCHAR"),
        Column("order_id", "VARCHAR"),
        Column("quantity", "INTEGER"),
        Column("device_type", "VARCHAR"),
        Column("os", "VARCHAR"),
        Column("browser", "VARCHAR"),
        Column("referrer", "VARCHAR"),
        Column("utm_source", "VARCHAR"),
        Column("utm_medium", "VARCHAR"),
        Column("utm_campaign", "VARCHAR"),
        # set by the vendor adapters (docs/tracking_vendors.md); null for the project's own format
        Column("vendor", "VARCHAR", landed=False),
        Column("vendor_event_name", "VARCHAR", landed=False),
        # JSON object: every vendor field not mapped; may hold what the vendor was sent about a person (traits)
        Column("vendor_extra", "VARCHAR", landed=False, pii=True),
    ),
    timestamp_columns=("occurred_at",),
    numeric_columns=("quantity",),
    event_time_column="occurred_at",
    duplicate_key=("event_id",),
)

ENTITIES: dict[str, Entity] = {e.name: e for e in (TRANSACTIONS, CUSTOMERS, PRODUCTS, TRACKING)}

LINE_TYPES = ("sale", "return")
ORDER_STATUSES = ("completed", "cancelled")
EVENT_TYPES = (
    "page_view",
    "product_view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "checkout",
    "purchase",
    "login",
    # an event a vendor adapter does not map: kept, its raw name in vendor_event_name (docs/tracking_vendors.md)
    "other",
)

# Vendor tracking lands under tracking/<vendor>/dt=D/ (docs/tracking_vendors.md); the adapter of each folder is in
# c360/ingest/vendors/. RudderStack sends Segment's spec, so both use the Segment adapter.
TRACKING_VENDORS = ("snowplow", "segment", "rudderstack", "ga4")

# Columns every raw table carries besides the landed ones.
METADATA_COLUMNS = (
    Column("_source_file", "VARCHAR"),
    Column("_source_line", "BIGINT"),
    Column("_dt", "DATE"),
    Column("_run_date", "DATE"),
    Column("_loaded_at", "TIMESTAMPTZ"),
    Column("_row_hash", "UHUGEINT")  # md5 of the landed record (or of the duplicate key),
)

def schema_problem(entity: Entity, names: list[str]) -> str | None:
    """What is wrong with a file's columns (its header, Parquet schema or JSON keys), or None.

    A file must carry every required column (for transactions: amount, or quantity and unit_price, too) and no
    column the contract does not know: a renamed column (customer_id -> cust_id) is a changed extract, and
    loading it by guesswork would silently lose or invent values.
    """
    present = set(names)
    missing = [c for c in entity.required_columns if c not in present]
    if entity.name == "transactions" and "amount" not in present and not {"quantity", "unit_price"} <= present:
        missing.append("amount (or quantity and unit_price)")
    known = set(entity.landed_column_names)
    unknown = sorted({n for n in names if n not in known})
    if not missing and not unknown:
        return None
    parts = []
    if missing:
        parts.append("missing column(s) " + ", ".join(missing))
    if unknown:
        parts.append("unknown column(s) " + ", ".join(unknown))
    return "; ".join(parts) + f" (contract columns: {', '.join(entity.landed_column_names)})"


# Rows whose quarantine is expected and says nothing about the extract's health: they do not count towards the
# quarantine rate that fails an entity (a re-sent file is all duplicates; an erasure quarantines a customer).
EXPECTED_REASONS = ("erased_customer", "test_order", "duplicate_row", "bot_traffic")

# Quarantine reasons, in the order they are checked. docs/landing_contract.md lists the same.
REASONS = (
    "schema_mismatch",
    "malformed_record",
    "erased_customer",
    "missing_required",
    "missing_customer_id",
    "invalid_timestamp",
    "invalid_number",
    "missing_amount",
    "invalid_value",
    "unknown_currency",
    "date_out_of_range",
    "no_fx_rate",
    "negative_quantity",
    "future_timestamp",
    "bot_traffic",
    "test_order",
    "return_without_sale",
    "duplicate_row",
)
