"""Synthetic, deterministic, labelled supplier and parts data (numpy + pyarrow, vectorized)."""
