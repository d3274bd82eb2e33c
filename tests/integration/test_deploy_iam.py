"""The stack's IAM policies are the ones the code needs: enough to run, nothing to spare.

A moto server that enforces IAM (``/moto-api/reset-auth``: every request after the setup is
checked against the caller's policies) gets the stack (tests/servers/cloudformation.py). The
aws profile then runs as the stack's roles, with credentials from ``sts:AssumeRole``; removing
any one statement of the listener or Spark job role makes a named step fail with the
preflight's one-line error (the listener's landing read: the landing step, per object), and any
statement of the Lambda role its code uses makes the handler report the object as failed.

What moto cannot show, and what stands in for it here:

- moto evaluates S3 resources (bucket and key ARNs) and SQS queue ARNs, but checks every Glue
  request against the resource ``*``, which no scoped ARN matches: the Glue statements are put
  on moto with ``"Resource": "*"`` (their actions unchanged), and their resource scoping is
  checked by template assertion only (tests/integration/test_deploy_stack.py);
- moto checks some S3 requests against their operation's name, not the IAM action AWS checks
  (``s3:HeadObject`` for ``s3:GetObject``, ``s3:ListObjectsV2`` and ``s3:HeadBucket`` for
  ``s3:ListBucket``, ...): on moto each statement also allows those names
  (:data:`MOTO_S3_ALIASES`), so removing the statement removes them too;
- a role's trust policy names its AWS service (EMR, ECS, Lambda), which a test cannot be: each
  trust policy is replaced by one naming the test's user, and the services are asserted on the
  template;
- moto's signature check leaves out ``User-Agent``, which the AWS SDK v1 under Spark's S3A signs:
  the server runs from tests/servers/moto_signing.py, which makes it check the signed headers
  as sent;
- a role's statements used only by AWS's own machinery (the Lambda role's queue polling by the
  event source mapping, its log writing by the runtime) have no code path to fail here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from servers.cloudformation import REGION, Stack, deploy, rewrite_role_policies_as_json, synthesize
from support.environment import cli_env, free_port, require

pytestmark = [
    pytest.mark.deploy,
    pytest.mark.s3,
    pytest.mark.sqs,
    pytest.mark.catalogs,
    pytest.mark.filterwarnings("ignore:Tried to parse AWS.*not supported:UserWarning"),
]

REPO = Path(__file__).resolve().parents[2]
TENANT = "acme"
#: IAM action (what AWS checks) -> the names moto 5.2 checks for the same requests.
MOTO_S3_ALIASES = {
    "s3:ListBucket": ("s3:ListObjectsV2", "s3:ListObjects", "s3:HeadBucket"),
    "s3:GetObject": ("s3:HeadObject",),
    "s3:PutObject": (
        "s3:CreateMultipartUpload",
        "s3:UploadPart",
        "s3:CompleteMultipartUpload",
        "s3:CopyObject",
    ),
    "s3:DeleteObject": ("s3:DeleteObjects",),
}


@dataclass
class IamStack:
    """The stack on an IAM-enforcing moto, and a user allowed only to assume its roles."""

    endpoint: str
    stack: Stack
    policies: dict[str, dict[str, dict[str, Any]]]
    user_key: dict[str, str]
    #: logical id -> ARN, read before the checks are on (the setup user has no IAM rights).
    role_arns: dict[str, str]

    def enforce(self, on: bool) -> None:
        """IAM checks on (every request) or off (setup and policy edits)."""
        count = b"0" if on else b"inf"
        # Not form-encoded: moto reads the raw body as the number of unchecked requests.
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth", data=count,
            headers={"Content-Type": "application/octet-stream"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200

    def role_env(self, logical: str, **more: str) -> dict[str, str]:
        """A ``cdf`` child process's environment as the role (temporary credentials)."""
        import boto3

        sts = boto3.client(
            "sts", endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id=self.user_key["AccessKeyId"],
            aws_secret_access_key=self.user_key["SecretAccessKey"],
        )  # fmt: skip
        session = f"test-{logical}"
        creds = sts.assume_role(RoleArn=self.role_arns[logical], RoleSessionName=session)
        creds = creds["Credentials"]
        return cli_env(
            AWS_ACCESS_KEY_ID=creds["AccessKeyId"],
            AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
            AWS_SESSION_TOKEN=creds["SessionToken"],
            AWS_REGION=REGION,
            AWS_ENDPOINT_URL=self.endpoint,
            **self.stack.cdf_settings(),
            **more,
        )


def start_moto(log_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A moto server of its own (IAM enforcement is process-wide), checks off until enforced."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = (log_dir / "moto.log").open("w")
    env = {k: v for k, v in os.environ.items() if k != "INITIAL_NO_AUTH_ACTION_COUNT"}
    server = Path(__file__).resolve().parents[1] / "servers" / "moto_signing.py"
    cmd = [sys.executable, str(server), "-H", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
            return proc, endpoint
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                require(False, "the IAM-enforcing moto server did not start")
            time.sleep(0.2)  # polling the server's start-up, not waiting for a result


@pytest.fixture(scope="module")
def iam_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IamStack]:
    proc, endpoint = start_moto(tmp_path_factory.mktemp("iam-moto"))
    try:
        setup = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
        env = f"iam{uuid.uuid4().hex[:6]}"
        stack = deploy(endpoint, f"cdf-{env}", synthesize([TENANT]), {"EnvironmentName": env},
                       **setup)  # fmt: skip
        policies = rewrite_role_policies_as_json(stack)
        iam = stack.clients["iam"]
        for role, named in policies.items():
            for name, doc in named.items():
                put_policy(iam, role, name, doc)
        user = iam.create_user(UserName="operator")["User"]
        for role in (stack.physical[k] for k in stack.resources_of("AWS::IAM::Role")):
            trust = {
                "Effect": "Allow",
                "Principal": {"AWS": user["Arn"]},
                "Action": "sts:AssumeRole",
            }
            iam.update_assume_role_policy(
                RoleName=role,
                PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [trust]}),
            )
        arns = {k: stack.arn(k) for k in stack.resources_of("AWS::IAM::Role")}
        assume = {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": sorted(arns.values())}
        iam.put_user_policy(
            UserName="operator", PolicyName="assume-stack-roles",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [assume]}),
        )  # fmt: skip
        key = iam.create_access_key(UserName="operator")["AccessKey"]
        yield IamStack(endpoint, stack, policies, key, arns)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def on_moto(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` as moto can check it: Glue statements on ``*``, S3 actions with moto's names
    for them (see the module doc)."""
    out = []
    for st in doc["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        if all(a.startswith("glue:") for a in actions):
            st = {**st, "Resource": "*"}
        aliases = [alias for a in actions for alias in MOTO_S3_ALIASES.get(a, ())]
        out.append({**st, "Action": [*actions, *aliases]})
    return {**doc, "Statement": out}


def put_policy(iam: Any, role: str, name: str, doc: dict[str, Any]) -> None:
    iam.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=json.dumps(on_moto(doc)))


def drop_files(iam_stack: IamStack, tmp_path: Path, seed: int = 42) -> int:
    """A tiny generated tenant in its landing prefix (as the setup user, before enforcing)."""
    from cdf_generator.api import generate

    gen = generate([TENANT], 120, 120, seed=seed, root_uri=str(tmp_path / "gen"))
    s3, bucket = iam_stack.stack.clients["s3"], iam_stack.stack.outputs["LandingBucketName"]
    for path in map(Path, gen.files):
        entity = str(path).split("entity=")[1].split("/")[0]
        s3.put_object(Bucket=bucket, Key=f"{TENANT}/{entity}/{path.name}", Body=path.read_bytes())
    return len(gen.files)


def cdf(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdf_pipeline.cli", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def drain(stack: Stack) -> None:
    """Delete every visible message of the landing queue (PurgeQueue allows one a minute)."""
    sqs, url = stack.clients["sqs"], stack.outputs["LandingQueueUrl"]
    while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for m in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def listen_args(stack: Stack, *more: str) -> list[str]:
    out = stack.outputs
    return ["listen", "--profile", "aws", "--queue", out["LandingQueueUrl"],
            "--dlq", out["DeadLetterQueueUrl"], *more]  # fmt: skip


@pytest.mark.slow
def test_the_listener_role_lands_and_runs_end_to_end(iam_stack: IamStack, tmp_path: Path) -> None:
    files = drop_files(iam_stack, tmp_path)
    iam_stack.enforce(True)
    try:
        env = iam_stack.role_env("ListenerRole")
        args = listen_args(iam_stack.stack, "--idle-exit", "6", "--wait", "1", "--json")
        proc = cdf(args, env, timeout=900)
    finally:
        iam_stack.enforce(False)
    output = proc.stdout + proc.stderr
    docs = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert proc.returncode == 0 and docs and docs[-1].get("total"), output[-4000:]
    runs = [t["run"] for b in docs[:-1] for t in b["tenants"] if t["run"]]
    assert docs[-1]["landed"] == files and [r["status"] for r in runs] == ["SUCCEEDED"], docs
    assert env["AWS_SECRET_ACCESS_KEY"] not in output


#: The Lambda role's statements its code uses; the other two are used by AWS's machinery (the
#: event source mapping polls the queue, the runtime writes the logs), not by the handler.
LAMBDA_CODE_STATEMENTS = (
    "ListBuckets",
    "ReadTenantLanding",
    "WriteRaw",
    "AppendManifest",
    "GlueManifestTable",
)


def lambda_event(stack: Stack, key: str) -> dict[str, Any]:
    """An SQS-trigger event carrying S3's notification for ``key``, as Lambda delivers it."""
    from urllib.parse import quote_plus

    bucket = stack.outputs["LandingBucketName"]
    s3 = {"bucket": {"name": bucket}, "object": {"key": quote_plus(key), "size": 1}}
    record = {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": s3}
    body = json.dumps({"Records": [record]})
    return {"Records": [{"messageId": "m1", "body": body, "eventSource": "aws:sqs"}]}


@pytest.mark.slow
def test_the_lambda_role_lands_a_file(
    iam_stack: IamStack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The handler (no Spark) as the stack's Lambda role; its manifest table is made first by a
    Spark job as the listener role (``cdf land`` on an empty landing zone), as in a deployment."""
    from cdf_pipeline.landing.lambda_handler import handler

    iam_stack.enforce(True)
    try:
        env = iam_stack.role_env("ListenerRole")
        made = cdf(["land", "--tenant", TENANT, "--profile", "aws"], env, timeout=900)
        assert made.returncode == 0, made.stderr[-3000:]
        key = f"{TENANT}/suppliers/lambda-{uuid.uuid4().hex[:8]}.csv"
        iam_stack.enforce(False)
        body = b"supplier_id,tenant_id\n01J0000000000000000000000A,acme\n"
        s3 = iam_stack.stack.clients["s3"]
        s3.put_object(Bucket=iam_stack.stack.outputs["LandingBucketName"], Key=key, Body=body)
        iam_stack.enforce(True)
        for name, value in iam_stack.role_env("LambdaHandlerRole", CDF_PROFILE="aws").items():
            monkeypatch.setenv(name, value)
        response = handler(lambda_event(iam_stack.stack, key), None)
        # Each statement the handler's code uses, removed in turn: a fresh object fails to land.
        denied = {}
        for sid in LAMBDA_CODE_STATEMENTS:
            iam_stack.enforce(False)
            fresh = f"{TENANT}/suppliers/lambda-{uuid.uuid4().hex[:8]}.csv"
            s3.put_object(Bucket=iam_stack.stack.outputs["LandingBucketName"], Key=fresh,
                          Body=body.replace(b"0A", sid.encode()[:2].upper()))  # fmt: skip
            caplog.clear()
            with Without(iam_stack, "LambdaHandlerRole", sid):
                try:
                    answer = json.dumps(handler(lambda_event(iam_stack.stack, fresh), None))
                except Exception as exc:  # a failure outside the per-tenant step raises
                    answer = f"raised {type(exc).__name__}: {exc}"
            # The reason is in the answer or, for one object, in the landing step's log line.
            denied[sid] = f"{answer}\n{caplog.text}"
            iam_stack.enforce(True)
    finally:
        iam_stack.enforce(False)
        drain(iam_stack.stack)  # the uploads' events: no listener of this module should get them
    assert response["batchItemFailures"] == [], response
    assert response["tenants"][TENANT]["landed"] == 1, response
    for sid, outcome in denied.items():
        assert "ACCESS_DENIED" in outcome or "AccessDenied" in outcome, (sid, outcome)
        assert outcome.startswith("raised") or '"batchItemFailures": [{' in outcome, (sid, outcome)


#: (role, statement Sid) -> (the command whose preflight or step fails, what its line names).
#: The preflight reads what a run needs before Spark starts (tests/.../preflight.py): the
#: queues, the buckets, a probe key under raw and warehouse, Glue's databases.
REMOVALS: dict[tuple[str, str], tuple[str, str]] = {
    ("ListenerRole", "ListBuckets"): ("listen", "raw location: cannot reach bucket"),
    ("ListenerRole", "WriteRaw"): ("listen", "raw location: cannot read under"),
    ("ListenerRole", "WriteTables"): ("listen", "warehouse location: cannot read under"),
    ("ListenerRole", "GlueListDatabases"): ("listen", "refused GetDatabases (AccessDenied)"),
    ("ListenerRole", "GlueTables"): ("listen", "refused GetDatabase on"),
    ("ListenerRole", "ConsumeLandingQueue"): ("listen", "error: queue https://"),
    ("ListenerRole", "DeadLetter"): ("listen", "error: dead-letter queue https://"),
    ("SparkJobRole", "ListRawAndLakehouse"): ("run", "raw location: cannot reach bucket"),
    ("SparkJobRole", "ReadRaw"): ("run", "raw location: cannot read under"),
    ("SparkJobRole", "WriteTables"): ("run", "warehouse location: cannot read under"),
    ("SparkJobRole", "GlueListDatabases"): ("run", "refused GetDatabases (AccessDenied)"),
    ("SparkJobRole", "GlueTables"): ("run", "refused GetDatabase on"),
}


def test_every_statement_of_the_two_spark_roles_is_covered() -> None:
    """A statement added to the template without a removal case fails here; the listener's
    ReadTenantLanding is checked by its own test below (the preflight cannot know tenants)."""
    template = synthesize([TENANT])["Resources"]
    found = {
        (role, st["Sid"])
        for role in ("ListenerRole", "SparkJobRole")
        for policy in template[role]["Properties"]["Policies"]
        for st in policy["PolicyDocument"]["Statement"]
    }
    assert found == set(REMOVALS) | {("ListenerRole", "ReadTenantLanding")}


class Without:
    """The role's policies on moto with one statement removed, restored on exit."""

    def __init__(self, iam_stack: IamStack, role: str, sid: str) -> None:
        self.iam_stack, self.role, self.sid = iam_stack, iam_stack.stack.physical[role], sid

    def __enter__(self) -> None:
        iam = self.iam_stack.stack.clients["iam"]
        for name, doc in self.iam_stack.policies[self.role].items():
            kept = [st for st in doc["Statement"] if st.get("Sid") != self.sid]
            assert len(kept) == len(doc["Statement"]) - 1, (self.role, self.sid)
            put_policy(iam, self.role, name, {**doc, "Statement": kept})
        self.iam_stack.enforce(True)

    def __exit__(self, *exc: object) -> None:
        self.iam_stack.enforce(False)
        iam = self.iam_stack.stack.clients["iam"]
        for name, doc in self.iam_stack.policies[self.role].items():
            put_policy(iam, self.role, name, doc)


@pytest.mark.parametrize(("role", "sid"), sorted(REMOVALS))
def test_removing_a_statement_fails_a_named_step(iam_stack: IamStack, role: str, sid: str) -> None:
    command, needle = REMOVALS[(role, sid)]
    stack = iam_stack.stack
    args = listen_args(stack, "--idle-exit", "1", "--wait", "0") if command == "listen" else [
        "run", "--tenant", TENANT, "--profile", "aws"]  # fmt: skip
    with Without(iam_stack, role, sid):
        env = iam_stack.role_env(role)
        proc = cdf(args, env, timeout=300)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(f"cdf {command}: error:") and needle in lines[0], lines[0]
    assert "AccessDenied" in lines[0] or "ACCESS_DENIED" in lines[0], lines[0]
    assert env["AWS_SECRET_ACCESS_KEY"] not in proc.stderr + proc.stdout


@pytest.mark.slow
def test_without_read_tenant_landing_the_landing_step_fails(
    iam_stack: IamStack, tmp_path: Path
) -> None:
    """The listener cannot know its tenants before events arrive, so no preflight reads a
    landing prefix: the landing step is the one that fails, one line per object; nothing
    lands, no run."""
    files = drop_files(iam_stack, tmp_path, seed=7)
    # --max-receives 1: a failing message goes to the DLQ at once, so none is left behind.
    args = listen_args(iam_stack.stack, "--idle-exit", "4", "--wait", "1", "--json",
                       "--max-receives", "1")  # fmt: skip
    with Without(iam_stack, "ListenerRole", "ReadTenantLanding"):
        env = iam_stack.role_env("ListenerRole")
        proc = cdf(args, env, timeout=600)
    total = json.loads(proc.stdout.splitlines()[-1])
    assert proc.returncode == 1 and total["total"], proc.stderr[-3000:]
    assert (total["failed"], total["landed"], total["runs"]) == (files, 0, 0), total
    assert total["dead_lettered"] == files, total  # one event per object
    landing = iam_stack.stack.outputs["LandingBucketName"]
    failed = [ln for ln in proc.stderr.splitlines() if f"FAILED s3://{landing}/{TENANT}/" in ln]
    assert len(failed) == files and all("ACCESS_DENIED" in ln for ln in failed), failed
    assert env["AWS_SECRET_ACCESS_KEY"] not in proc.stdout + proc.stderr
