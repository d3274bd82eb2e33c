"""The process exit codes of every ``cdf`` command, declared once.

The results below the CLI (a run's summary, a landing, a listener's life, a maintenance report)
each sum themselves up as one of these, and the CLI maps the package's errors to them, so a
scheduler reads the same number for the same outcome whichever command it ran.
"""

from __future__ import annotations

#: Done, or nothing to do.
EXIT_OK = 0
#: Something failed: a file, an audit, a run, a check, a step (the command's output says which).
EXIT_FAILED = 1
#: Bad arguments or configuration, or an unknown tenant: a typo a scheduler must not show green.
EXIT_USAGE = 2
#: A tenant was busy (another run or maintenance held its lease): nothing done for it; try later.
EXIT_BUSY = 3
#: A signal stopped the process: 128 + the signal's number, as a shell reports it.
EXIT_SIGNAL_BASE = 128
#: Ctrl-C (SIGINT).
EXIT_INTERRUPTED = EXIT_SIGNAL_BASE + 2
