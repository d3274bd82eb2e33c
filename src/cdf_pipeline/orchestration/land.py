"""Landing from settings: one tenant's landing zone into raw (``cdf land``), and S3 events from an
SQS queue landed and run as they arrive (``cdf listen``)."""

from __future__ import annotations

from collections.abc import Callable

from cdf_pipeline import telemetry
from cdf_pipeline.config import Settings
from cdf_pipeline.landing.land import LandSummary
from cdf_pipeline.landing.listen import ListenOptions
from cdf_pipeline.landing.listen_report import BatchReport, ListenSummary
from cdf_pipeline.orchestration.session import spark_session


def land(
    settings: Settings,
    tenant: str,
    *,
    source: str | None = None,
    after_land: str | None = None,
    archive_uri: str | None = None,
) -> LandSummary:
    """Check the landing plan and the lakehouse, then land the tenant's new objects in a session
    of its own, recording each in the landing manifest."""
    from cdf_pipeline.lakehouse.tables import TableNames, ensure_tables
    from cdf_pipeline.landing.land import land_tenant, plan_landing
    from cdf_pipeline.landing.spark_manifest import SparkManifest
    from cdf_pipeline.preflight import check_run
    from cdf_pipeline.storage import storage_for

    with telemetry.stage("cdf.land", **{telemetry.TENANT: tenant}):
        # Both before Spark starts: a wrong source or setting costs a second, not a JVM.
        plan_landing(
            settings, tenant, source=source, after_land=after_land, archive_uri=archive_uri
        )
        check_run(settings, storage_for(settings), create_root=True)
        with spark_session(settings, f"cdf-land-{tenant}") as spark:
            names = TableNames.of(settings)
            ensure_tables(spark, names)
            return land_tenant(
                SparkManifest(spark, names),
                settings,
                tenant,
                source=source,
                after_land=after_land,
                archive_uri=archive_uri,
            )


def listen_queue(
    settings: Settings,
    queue_url: str,
    options: ListenOptions,
    *,
    dlq: str | None,
    settings_for: Callable[[str], Settings],
    on_listening: Callable[[], None],
    on_batch: Callable[[BatchReport], None],
) -> ListenSummary:
    """Check the queue (a missing one fails before a JVM starts) and the lakehouse, then land
    and run each batch's tenants until a signal or ``options`` end the loop.

    ``settings_for`` loads a tenant's settings; ``on_listening`` is called once the session is up
    and the signal handlers are installed, ``on_batch`` after each batch.
    """
    from cdf_pipeline.lakehouse.tables import TableNames, ensure_tables
    from cdf_pipeline.landing.listen import LandAndRun, Router, Stopper, listen
    from cdf_pipeline.landing.queue import Queue, sqs_client
    from cdf_pipeline.preflight import check_run
    from cdf_pipeline.storage import storage_for

    client = sqs_client(settings, queue_url, wait_seconds=options.wait)
    queue = Queue(client, queue_url, dlq)
    queue.check()  # a missing queue is exit 2 before a JVM starts
    check_run(settings, storage_for(settings), create_root=True)
    router = Router(settings, settings_for)
    stopper = Stopper()
    with spark_session(settings, "cdf-listen") as spark:
        ensure_tables(spark, TableNames.of(settings))
        stopper.install()
        on_listening()
        return listen(
            queue,
            router,
            LandAndRun(spark, router.settings_for),
            options,
            stopper=stopper,
            on_batch=on_batch,
        )
