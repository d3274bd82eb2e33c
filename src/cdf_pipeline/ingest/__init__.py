"""Finding a tenant's raw files, hashing them, and reading them into normalised DataFrames."""
