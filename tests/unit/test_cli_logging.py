"""What the ``cdf`` command lets through to its log when the user stops it."""

from __future__ import annotations

import logging
import signal
import sys

import pytest

from cdf_pipeline.cli.main import _quiet_gateway_interrupt
from cdf_pipeline.exceptions import Interrupted


def _logged(message: str, error: BaseException) -> logging.LogRecord:
    """The record ``logging.exception(message)`` makes while ``error`` is being handled."""
    try:
        raise error
    except BaseException:
        return logging.getLogger().makeRecord(
            "root", logging.ERROR, __file__, 1, message, (), sys.exc_info()
        )


@pytest.mark.parametrize(
    "error", [Interrupted(signal.SIGTERM, "SIGTERM"), KeyboardInterrupt()], ids=["term", "int"]
)
def test_a_stop_the_user_asked_for_hides_py4js_traceback(error: BaseException) -> None:
    record = _logged("KeyboardInterrupt while sending command.", error)
    assert not _quiet_gateway_interrupt(record)


def test_other_errors_keep_their_traceback() -> None:
    # The same words with another error, and another message with an interrupt, both stay.
    assert _quiet_gateway_interrupt(
        _logged("KeyboardInterrupt while sending command.", RuntimeError("boom"))
    )
    assert _quiet_gateway_interrupt(
        _logged("Exception while sending command.", KeyboardInterrupt())
    )
