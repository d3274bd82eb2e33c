"""Everything that touches the catalog and the tables: DDL, MERGE, quarantine, ops records.

The only package that writes to Iceberg; transforms in ``quality`` stay pure.
"""
