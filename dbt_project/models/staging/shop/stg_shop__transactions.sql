-- One row per landed transaction-line version: typed, contract defaults applied, with the version's validity.
-- Older versions are kept (flagged, not dropped) because the feature store must see each line as it was known
-- on any past date; `is_latest` selects the current version (updated_at desc nulls last, then arrival).

-- The SQL is macros/transaction_versions.sql: the incremental order models call it with a filter, so that
-- they rank only the versions of the orders they rebuild.

{{ transaction_versions() }}
