"""PostgreSQL I/O below every user of it: landing, the tenant lease store and the generator.

``connection`` checks a ``postgresql://`` URI (never one with a password), connects through ADBC
(libpq) and turns libpq's failures into one clear line; ``arrow`` maps landing-table columns to
the contract's Arrow types and streams them into Parquet; ``cursor`` says which rows a pull takes
and where the next one starts; ``pull`` is the incremental pull of one entity's table into one
Parquet file. Nothing here knows the raw zone or the landing manifest (``landing.pg_land`` does).
"""
