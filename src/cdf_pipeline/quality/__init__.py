"""Pure DataFrame -> DataFrame transforms: normalise, validate, deduplicate, check foreign keys.

All are built from Spark Column expressions (no Python UDFs, nothing collected to the driver), so
they chain with ``df.transform`` and are tested with chispa.
"""
