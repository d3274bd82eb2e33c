"""The ``cdf`` command line: arguments in, one call below, the result printed, an exit code out.

``main`` is the entry point (the parser, logging, telemetry, signals, and the package's errors
to one line and an exit code from ``cdf_pipeline.exit_codes``); ``common`` is what the commands
share (the parser class, ``--profile``/``--root``/``--json`` and the other shared options, the
positive-integer validator, settings from arguments, the summary printer); every other module is
one command, which registers its parser and calls ``cdf_pipeline.orchestration`` (or a package
below it) to do the work. ``python -m cdf_pipeline.cli`` runs ``main``.
"""
