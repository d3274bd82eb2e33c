"""Landing zones: customer data (an S3 prefix, a folder, a PostgreSQL database) into the raw zone.

``cdf land`` copies each new landing file into raw as an exact copy named by its content hash (or,
from PostgreSQL, pulls new rows by a cursor into a Parquet file), and records every object it saw
in the landing manifest (``ops.landed_files``). ``cdf listen`` does the same for S3 events.
"""
