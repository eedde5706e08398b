"""Consent-aware segment exports for marketing: CSV + Parquet + deltas per segment and a manifest (docs/exports.md)."""

from c360.marketing.exports.export import (
    ExportError,
    ExportHeld,
    export_segments,
    read_manifest,
    verify_export,
)

__all__ = ["ExportError", "ExportHeld", "export_segments", "read_manifest", "verify_export"]
