"""Throwaway servers that the test suite starts itself (CI runs no services)."""
