"""A run's status, message and files follow from what its steps returned, and only from that.

:func:`decide` and :func:`summarise` are pure: each case below is one thing a run's steps can
return, and what the user then reads in the summary and ``ops.runs``.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from cdf_pipeline import run_record as S
from cdf_pipeline.exceptions import LeaseLost, TenantBusy
from cdf_pipeline.ingest.files import RawFile
from cdf_pipeline.lakehouse import ops
from cdf_pipeline.pipeline.inputs import Selection
from cdf_pipeline.pipeline.outcome import STAGED, RunFacts, Steps, decide, summarise

NOW = datetime(2026, 12, 7, tzinfo=timezone.utc)
FACTS = RunFacts("acme", "r1", NOW, None, "/raw/acme", "ignore", time.monotonic())
GOOD = RawFile("suppliers", "/raw/acme/suppliers/a.parquet", "h1", rows=10)
BAD = RawFile("parts", "/raw/acme/parts/b.csv", "h2", error="not UTF-8")
NOT_DATA = RawFile("parts", "/raw/acme/parts/readme.txt", "", error="not a data file")
PASSED = S.Audit("pass_rate", True, "1.0")


def selection(*new: RawFile, failed: tuple[RawFile, ...] = (), skipped: int = 0) -> Selection:
    chosen: dict[str, list[RawFile]] = {"suppliers": [], "parts": []}
    for f in new:
        chosen[f.entity].append(f)
    return Selection(chosen, list(failed), [NOT_DATA], [], skipped, any_files=True)


def test_a_busy_tenant_is_busy_with_the_holders_words() -> None:
    busy = TenantBusy("tenant acme is busy: run by x", owner="x", purpose="run", expires_in=3)
    assert decide(Steps(busy=busy), "acme", "/raw/acme") == (S.BUSY, str(busy))


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (KeyboardInterrupt("SIGTERM"), "interrupted by SIGTERM before it finished; run it again"),
        (KeyboardInterrupt(), "interrupted by SIGINT before it finished; run it again"),
        (OSError("disk full"), "OSError during the run (disk full)"),
    ],
)
def test_an_error_fails_the_run_whatever_else_the_steps_did(
    error: BaseException, message: str
) -> None:
    steps = Steps(selection=selection(GOOD), audits=(PASSED,), published=True, error=error)
    assert decide(steps, "acme", "/raw/acme") == (S.FAILED, message)


def test_with_nothing_new_the_tenant_is_unknown_idle_or_unreadable() -> None:
    unknown = decide(Steps(selection=selection(), known=False), "acme", "/raw/acme")
    assert unknown[0] == S.UNKNOWN_TENANT and "no raw files under /raw/acme" in unknown[1]
    assert decide(Steps(selection=selection(skipped=3)), "acme", "/raw/acme") == (
        S.NOTHING_NEW,
        "nothing new to ingest for acme (3 file(s) already ingested)",
    )
    assert decide(Steps(selection=selection(failed=(BAD,))), "acme", "/raw/acme") == (
        S.FAILED,
        "nothing ingested: 1 new file(s) could not be read",
    )


def test_failed_audits_hold_the_publish_and_are_named() -> None:
    audits = (PASSED, S.Audit("suppliers.primary_key_unique", False, "2 keys written twice"))
    steps = Steps(selection=selection(GOOD), audits=audits, published=False)
    status, message = decide(steps, "acme", "/raw/acme")
    assert status == S.AUDIT_FAILED
    assert message.endswith(": suppliers.primary_key_unique (2 keys written twice)")
    assert [f.status for f in summarise(FACTS, steps).files if f.sha256 == "h1"] == [STAGED]


def test_files_that_failed_alone_make_a_published_run_partial() -> None:
    left_out = RawFile("suppliers", "/raw/acme/suppliers/c.parquet", "h3", error="rows differ")
    steps = Steps(
        selection=selection(GOOD, left_out, failed=(BAD,)),
        left_out=(left_out,),
        audits=(PASSED,),
        published=True,
    )
    assert decide(steps, "acme", "/raw/acme") == (S.PARTIAL, "2 file(s) failed, see their errors")
    outcomes = {f.file.rsplit("/", 1)[1]: f.status for f in summarise(FACTS, steps).files}
    assert outcomes == {
        "b.csv": ops.FAILED,
        "readme.txt": ops.IGNORED,
        "c.parquet": ops.FAILED,
        "a.parquet": ops.INGESTED,
    }
    clean = Steps(selection=selection(GOOD), audits=(PASSED,), published=True)
    assert decide(clean, "acme", "/raw/acme") == (S.SUCCEEDED, "")


def test_the_publishing_record_claims_the_files_it_publishes_and_no_end() -> None:
    counts = {"suppliers": S.EntityCounts(read=10, inserted=10)}
    steps = Steps(selection=selection(GOOD), entities=counts, audits=(PASSED,))
    journal = summarise(FACTS, steps, publishing=True)
    assert (journal.status, journal.finished_at, journal.seconds) == (S.PUBLISHING, None, 0.0)
    assert [(f.sha256, f.status) for f in journal.files if f.sha256] == [("h1", ops.INGESTED)]
    assert journal.total("inserted") == 10


def test_a_run_that_lost_its_lease_counts_nothing() -> None:
    counts = {"suppliers": S.EntityCounts(read=10, inserted=10)}
    steps = Steps(
        selection=selection(GOOD), entities=counts, audits=(PASSED,), error=LeaseLost("taken")
    )
    summary = summarise(FACTS, steps)
    assert summary.status == S.FAILED and "LeaseLost" in summary.message
    assert (summary.entities, summary.audits) == ({}, [])
    assert not [f for f in summary.files if f.status == ops.INGESTED]
