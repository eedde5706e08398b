"""The segments page for marketing (`c360 ui`, docs/ui.md): sizes, trends, previews, downloads and a rule editor.

It never opens the live warehouse: the nightly is DuckDB's single writer, so the page reads a consistent copy of the
file (c360/marketing/ui/snapshot.py) and the published export files, and holds no lock the nightly could need.
"""
