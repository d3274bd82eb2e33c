"""What each ``cdf`` command does once its arguments are read, as functions of settings.

Each function here owns a command's whole course: the checks before Spark starts (``preflight``),
the session (built here and stopped here, however the work ends), the work itself (``pipeline``,
``landing``, ``lakehouse``, ``dq_report``) and the result it returns. The ``cli`` package above
turns arguments into settings, calls one of these and prints what it returns; nothing here reads
arguments or prints.
"""
