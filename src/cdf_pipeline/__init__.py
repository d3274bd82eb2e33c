"""cdf-pipeline: multi-tenant supplier and parts data into trusted Apache Iceberg tables."""

__version__ = "0.1.0"
