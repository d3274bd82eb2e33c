"""Helpers the tests share, imported by name (``from support.lakes import make_lake``).

``conftest.py`` keeps the fixtures (and the session's set-up of the JVMs the tests start); the
fixtures use these helpers too, but no test imports from ``conftest``. ``servers/`` holds the
throwaway servers (PostgreSQL, a REST catalog, a Spark cluster) the integration tests start.
"""
