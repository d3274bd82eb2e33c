"""The ``cdf`` command: one entry point, one sub-command per capability.

Each sub-command module of this package exposes ``register(subparsers)``, which adds its parser
and sets ``func(args) -> int``. Errors the package raises on purpose become one clear line on
stderr and a non-zero exit code (2 for bad arguments or configuration); nothing reaches the user
as a traceback.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from cdf_pipeline import __version__, telemetry
from cdf_pipeline.cli.common import Parser
from cdf_pipeline.exceptions import CdfError, ConfigError, InputError, Interrupted
from cdf_pipeline.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE

#: How long a SIGTERM waits for Spark to cancel its jobs before the run unwinds anyway.
CANCEL_WAIT_S = 10.0
logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    from cdf_pipeline.cli import (
        contracts,
        generate,
        jars,
        land,
        listen,
        maintain,
        migrate,
        quarantine,
        report,
        run,
        runs,
    )

    parser = Parser(
        prog="cdf",
        description="Multi-tenant supplier and parts data into trusted Apache Iceberg tables.",
    )
    parser.add_argument("--version", action="version", version=f"cdf-pipeline {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    subs.required = True
    # The order of `cdf --help`: the generator first, then the others by name.
    for command in (
        generate,
        contracts,
        jars,
        land,
        listen,
        maintain,
        migrate,
        quarantine,
        report,
        run,
        runs,
    ):
        command.register(subs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``cdf`` command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # py4j logs every gateway call at DEBUG and its shutdown at INFO (after the --json line,
    # which must stay last on stdout: spark-submit merges the driver's stderr into stdout).
    logging.getLogger("py4j").setLevel(logging.WARNING)
    # boto3 announces where it found credentials on every client: noise for a CLI user.
    logging.getLogger("botocore").setLevel(logging.WARNING)
    logging.getLogger().addFilter(_quiet_gateway_interrupt)
    traced = _start_telemetry(args)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        return int(args.func(args))
    except (ConfigError, InputError) as exc:
        print(f"cdf {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CdfError as exc:
        print(f"cdf {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Interrupted as exc:
        print(f"cdf {args.command}: stopped by {exc.name}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"cdf {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if traced:
            telemetry.finish()  # flush and stop, bounded by the export timeout


def _stop_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (what Kubernetes, systemd and most schedulers send first) stops a command as
    Ctrl-C does: Spark's jobs are cancelled (as pyspark does on SIGINT), and the exception unwinds
    the run, which records itself FAILED and releases its tenant lease. Exit 143."""
    _cancel_spark_jobs()
    raise Interrupted(signum, "SIGTERM")


def _cancel_spark_jobs() -> None:
    """Cancel Spark's running jobs from a thread of its own, waiting at most ``CANCEL_WAIT_S``.

    A signal handler runs on the main thread, which is most often inside a py4j call: a second
    call from there reuses that call's connection and fails ("reentrant call"). Another thread
    gets a gateway connection of its own.
    """
    from pyspark import SparkContext

    context = SparkContext._active_spark_context
    if context is None:
        return

    def cancel() -> None:
        try:
            context.cancelAllJobs()
        except Exception:  # the JVM may be gone already; stopping is what matters
            logger.debug("could not cancel Spark jobs on SIGTERM", exc_info=True)

    canceller = threading.Thread(target=cancel, name="cdf-cancel-jobs", daemon=True)
    canceller.start()
    canceller.join(CANCEL_WAIT_S)


def _quiet_gateway_interrupt(record: logging.LogRecord) -> bool:
    """Drop py4j's "KeyboardInterrupt while sending command." record.

    py4j logs it on the root logger, at ERROR and with a traceback, whenever a signal stops the
    main thread inside a gateway call: on every Ctrl-C or SIGTERM during a run. The stop is the
    user's own, and the command says so in one line; the traceback would only alarm.
    """
    interrupted = record.exc_info is not None and isinstance(record.exc_info[1], KeyboardInterrupt)
    return not (interrupted and str(record.msg).startswith("KeyboardInterrupt while sending"))


def _start_telemetry(args: argparse.Namespace) -> bool:
    """Install OpenTelemetry for commands that take a ``--profile`` (run, runs, generate).

    Whether anything was installed. The sub-command loads its settings again and reports
    configuration errors itself, so a bad profile, root or tenant here just leaves telemetry off.
    Never raises.
    """
    profile = getattr(args, "profile", None)
    if profile is None:
        return False
    from cdf_pipeline.config import load_settings

    out = getattr(args, "out", None)
    root = getattr(args, "root", None) or (out if out and "://" not in out else None)
    try:
        settings = load_settings(
            profile, tenant=getattr(args, "tenant", None), overrides={"root": root} if root else {}
        )
    except CdfError:
        return False
    from cdf_pipeline.telemetry import setup as telemetry_setup

    return telemetry_setup.install(settings) is not None
