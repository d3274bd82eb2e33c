"""The CloudFormation stack (deploy/stack.yaml via deploy/synth.py): linted, asserted, deployed.

The template is synthesized for two tenants, linted with cfn-lint, checked by assertions for
what moto cannot show, then deployed to moto's CloudFormation on loopback. The real path runs
against what the stack created, named only by its outputs: a file dropped in the landing bucket
is announced on the stack's queue by S3's notification, ``cdf listen`` lands it and runs the
tenant, silver appears in the stack's Glue database; a poison message reaches the stack's
dead-letter queue, both through the listener and through the queue's own redrive policy.

What moto does not build (tests/servers/cloudformation.py, ``MOTO_UNBUILT``): Glue databases
and the queue policy are applied through their APIs from the template; the TLS-only bucket
policies are checked here by assertion only. Bucket versioning, public access blocks and the
notification, which moto's CloudFormation ignores, are applied through the S3 API and then
read back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from servers.cloudformation import (
    MOTO_IGNORED_BUCKET_PROPERTIES,
    MOTO_UNBUILT,
    REGION,
    Stack,
    deploy,
    synthesize,
)
from support.environment import cli_env, require

from cdf_pipeline.lakehouse.tables import NAMESPACES
from cdf_pipeline.landing.listen import DEFAULT_MAX_RECEIVES, DEFAULT_VISIBILITY_S

pytestmark = [
    pytest.mark.deploy,
    # moto's server warns for each type in MOTO_UNBUILT; the deploy asserts the same set.
    pytest.mark.filterwarnings("ignore:Tried to parse AWS.*not supported:UserWarning"),
]

REPO = Path(__file__).resolve().parents[2]
TENANTS = ["acme", "globex"]
AWS_KEY, AWS_SECRET = "AKIADEPLOYTESTKEY", "deploy-secret-never-printed"
CREDS = {"aws_access_key_id": AWS_KEY, "aws_secret_access_key": AWS_SECRET}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return synthesize(TENANTS)


def of_type(template: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == rtype}


def statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(role, statement) for every statement of every role's inline policies."""
    return [
        (role, st)
        for role, r in of_type(template, "AWS::IAM::Role").items()
        for policy in r["Properties"].get("Policies", [])
        for st in policy["PolicyDocument"]["Statement"]
    ]


# --- the template itself --------------------------------------------------------------------


def test_the_synthesized_template_passes_cfn_lint(tmp_path: Path) -> None:
    lint = Path(sys.executable).with_name("cfn-lint")
    require(lint.exists(), "cfn-lint is not installed (pip install -e '.[dev]')")
    out = tmp_path / "cdf-stack.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "synth.py"), "--tenants", ",".join(TENANTS),
         "--output", str(out)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    linted = subprocess.run([str(lint), str(out)], capture_output=True, text=True, timeout=300)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    # The linter does read it: a broken reference is reported.
    broken = json.loads(out.read_text())
    broken["Outputs"]["RawBucketName"]["Value"] = {"Ref": "NoSuchResource"}
    out.write_text(json.dumps(broken))
    linted = subprocess.run([str(lint), str(out)], capture_output=True, text=True, timeout=300)
    assert linted.returncode != 0 and "NoSuchResource" in linted.stdout


def test_synth_refuses_what_the_pipeline_would_not_accept_as_a_tenant() -> None:
    for tenants in (["Acme"], [], ["acme", "acme"], ["acme/x"]):
        with pytest.raises(ValueError, match="tenant ids"):
            synthesize(tenants)


def test_buckets_are_encrypted_versioned_private_and_tls_only(template: dict[str, Any]) -> None:
    buckets = of_type(template, "AWS::S3::Bucket")
    assert set(buckets) == {"LandingBucket", "RawBucket", "LakehouseBucket"}
    for props in (b["Properties"] for b in buckets.values()):
        [rule] = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
        assert set(props["PublicAccessBlockConfiguration"].values()) == {True}
        assert len(props["PublicAccessBlockConfiguration"]) == 4
    # AWS::S3::BucketPolicy is not built by moto: checked here only (MOTO_UNBUILT).
    policies = of_type(template, "AWS::S3::BucketPolicy")
    assert {p["Properties"]["Bucket"]["Ref"] for p in policies.values()} == set(buckets)
    for p in policies.values():
        [deny] = p["Properties"]["PolicyDocument"]["Statement"]
        assert deny["Effect"] == "Deny" and deny["Principal"] == "*"
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_queue_redrive_and_notification_match_what_cdf_listen_expects(
    template: dict[str, Any],
) -> None:
    queue = template["Resources"]["LandingQueue"]["Properties"]
    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["LandingDeadLetterQueue", "Arn"]}
    # The listener dead-letters first (with its reason), SQS's redrive is the backstop.
    assert redrive["maxReceiveCount"] > DEFAULT_MAX_RECEIVES
    assert queue["VisibilityTimeout"] >= DEFAULT_VISIBILITY_S
    notices = template["Resources"]["LandingBucket"]["Properties"]["NotificationConfiguration"]
    assert [q["Filter"]["S3Key"]["Rules"] for q in notices["QueueConfigurations"]] == [
        [{"Name": "prefix", "Value": f"{t}/"}] for t in TENANTS
    ]
    # S3 may send to the queue only for this stack's landing bucket.
    [policy] = of_type(template, "AWS::SQS::QueuePolicy").values()
    [allow] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert (allow["Principal"], allow["Action"]) == (
        {"Service": "s3.amazonaws.com"},
        "sqs:SendMessage",
    )
    assert "landing" in allow["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::Sub"]
    assert template["Resources"]["LandingBucket"]["DependsOn"] == "LandingQueuePolicy"


def test_glue_databases_are_the_catalogs_namespaces(template: dict[str, Any]) -> None:
    names = {
        r["Properties"]["DatabaseInput"]["Name"]["Fn::Sub"]
        for r in of_type(template, "AWS::Glue::Database").values()
    }
    assert names == {f"cdf_${{EnvironmentName}}_{ns}" for ns in NAMESPACES}


def test_roles_name_every_action_and_trust_only_their_service(template: dict[str, Any]) -> None:
    found = statements(template)
    assert {role for role, _ in found} == {"SparkJobRole", "ListenerRole", "LambdaHandlerRole"}
    for role, st in found:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        assert st["Effect"] == "Allow" and st.get("Sid"), (role, st)
        assert not [a for a in actions if "*" in a], (role, st)
        assert "NotAction" not in st and "NotResource" not in st
    trusts = {
        role: r["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"]
        for role, r in of_type(template, "AWS::IAM::Role").items()
    }
    assert trusts == {
        "SparkJobRole": ["emr-serverless.amazonaws.com", "ec2.amazonaws.com"],
        "ListenerRole": ["ec2.amazonaws.com", "ecs-tasks.amazonaws.com"],
        "LambdaHandlerRole": "lambda.amazonaws.com",
    }
    landing = [st for role, st in found if st["Sid"] == "ReadTenantLanding"]
    assert len(landing) == 2 and all(
        st["Resource"] == [{"Fn::Sub": f"${{LandingBucket.Arn}}/{t}/*"} for t in TENANTS]
        for st in landing
    )


# --- deployed to moto, and used --------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(s3_endpoint: str, template: dict[str, Any]) -> Stack:
    env = f"ci{uuid.uuid4().hex[:6]}"
    return deploy(s3_endpoint, f"cdf-{env}", template, {"EnvironmentName": env}, **CREDS)


def test_what_the_stack_created_is_what_the_template_says(stack: Stack) -> None:
    s3, sqs, glue = (stack.clients[s] for s in ("s3", "sqs", "glue"))
    out = stack.outputs
    buckets = [out[k] for k in ("LandingBucketName", "RawBucketName", "LakehouseBucketName")]
    for bucket in buckets:
        enc = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
        assert enc["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        # Ignored by moto's CloudFormation, applied through the S3 API (MOTO_IGNORED_...):
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert set(block.values()) == {True}
    assert "NotificationConfiguration" in MOTO_IGNORED_BUCKET_PROPERTIES
    notices = s3.get_bucket_notification_configuration(Bucket=out["LandingBucketName"])
    prefixes = [
        q["Filter"]["Key"]["FilterRules"][0]["Value"] for q in notices["QueueConfigurations"]
    ]
    assert sorted(prefixes) == [f"{t}/" for t in TENANTS]

    attrs = sqs.get_queue_attributes(QueueUrl=out["LandingQueueUrl"], AttributeNames=["All"])
    redrive = json.loads(attrs["Attributes"]["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == stack.arn("LandingDeadLetterQueue")
    assert int(redrive["maxReceiveCount"]) == 10
    assert json.loads(attrs["Attributes"]["Policy"])["Statement"][0]["Action"] == "sqs:SendMessage"
    # Glue databases (MOTO_UNBUILT: applied through the API) under the output's prefix.
    prefix = out["NamespacePrefix"]
    assert {d["Name"] for d in glue.get_databases()["DatabaseList"]} >= {
        f"{prefix}{ns}" for ns in NAMESPACES
    }
    assert set(MOTO_UNBUILT) == {r["Type"] for k, r in stack.template["Resources"].items()
                                 if k not in stack.physical}  # fmt: skip


def test_the_queue_redrive_moves_a_poison_message_to_the_stacks_dlq(stack: Stack) -> None:
    """SQS's own redrive (the Lambda trigger's only one): received maxReceiveCount times and
    never deleted, the message moves to the stack's dead-letter queue."""
    sqs, out = stack.clients["sqs"], stack.outputs
    body = f"poison {uuid.uuid4().hex}"
    sqs.send_message(QueueUrl=out["LandingQueueUrl"], MessageBody=body)
    received = 0
    for _ in range(20):  # each receive makes it visible again at once (VisibilityTimeout=0)
        got = sqs.receive_message(QueueUrl=out["LandingQueueUrl"], VisibilityTimeout=0,
                                  WaitTimeSeconds=0).get("Messages", [])  # fmt: skip
        for m in got:
            if m["Body"] == body:
                received += 1
            else:  # S3's s3:TestEvent, sent when the notification was set: not this test's
                sqs.delete_message(
                    QueueUrl=out["LandingQueueUrl"], ReceiptHandle=m["ReceiptHandle"]
                )
        if not got:
            break
    assert received == 10
    dead = sqs.receive_message(QueueUrl=out["DeadLetterQueueUrl"], MaxNumberOfMessages=10,
                               WaitTimeSeconds=1).get("Messages", [])  # fmt: skip
    assert [m["Body"] for m in dead] == [body]
    sqs.delete_message(QueueUrl=out["DeadLetterQueueUrl"], ReceiptHandle=dead[0]["ReceiptHandle"])


def stack_env(stack: Stack, endpoint: str, **more: str) -> dict[str, str]:
    """A ``cdf`` child process configured only from the stack's outputs."""
    return cli_env(
        AWS_ACCESS_KEY_ID=AWS_KEY,
        AWS_SECRET_ACCESS_KEY=AWS_SECRET,
        AWS_REGION=REGION,
        AWS_ENDPOINT_URL=endpoint,
        **stack.cdf_settings(),
        **more,
    )


def drop_tenant_files(stack: Stack, tmp_path: Path, tenant: str) -> list[str]:
    """A tiny generated tenant, uploaded to its landing prefix: the keys."""
    from cdf_generator.api import generate

    gen = generate([tenant], 120, 120, root_uri=str(tmp_path / "gen"))
    keys = []
    for path in map(Path, gen.files):
        entity = str(path).split("entity=")[1].split("/")[0]
        key = f"{tenant}/{entity}/{path.name}"
        stack.clients["s3"].put_object(
            Bucket=stack.outputs["LandingBucketName"], Key=key, Body=path.read_bytes()
        )
        keys.append(key)
    return keys


@pytest.mark.slow
@pytest.mark.s3
@pytest.mark.sqs
@pytest.mark.catalogs
def test_a_dropped_file_lands_runs_and_publishes_through_the_stack(
    stack: Stack, s3_endpoint: str, tmp_path: Path
) -> None:
    from pyiceberg.catalog import load_catalog
    from pyiceberg.expressions import EqualTo

    out, sqs = stack.outputs, stack.clients["sqs"]
    keys = drop_tenant_files(stack, tmp_path, "acme")
    assert len(keys) == 2
    poison = "{ not an S3 event"
    sqs.send_message(QueueUrl=out["LandingQueueUrl"], MessageBody=poison)

    proc = subprocess.run(
        [sys.executable, "-m", "cdf_pipeline.cli", "listen", "--profile", "aws",
         "--queue", out["LandingQueueUrl"], "--dlq", out["DeadLetterQueueUrl"],
         "--idle-exit", "6", "--wait", "1", "--max-receives", "2", "--retry-after", "1", "--json"],
        cwd=REPO, env=stack_env(stack, s3_endpoint), capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    docs = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert docs and docs[-1].get("total"), output[-4000:]
    total = docs[-1]
    assert proc.returncode == 1, output[-4000:]  # the poison message was dead-lettered
    assert (total["landed"], total["failed"], total["dead_lettered"]) == (2, 0, 1), total
    runs = [t["run"] for b in docs[:-1] for t in b["tenants"] if t["run"]]
    assert [r["status"] for r in runs] == ["SUCCEEDED"], runs

    # Silver in the stack's Glue database, as many rows as the run reported.
    catalog = load_catalog(
        "check", type="glue",
        **{"glue.endpoint": s3_endpoint, "glue.region": REGION, "glue.access-key-id": AWS_KEY,
           "glue.secret-access-key": AWS_SECRET, "s3.endpoint": s3_endpoint,
           "s3.path-style-access": "true", "s3.access-key-id": AWS_KEY,
           "s3.secret-access-key": AWS_SECRET, "s3.region": REGION},
    )  # fmt: skip
    for entity in ("suppliers", "parts"):
        table = catalog.load_table(f"{out['NamespacePrefix']}silver.{entity}")
        assert table.location().startswith(f"{out['Root']}/warehouse/")
        rows = table.scan(row_filter=EqualTo("tenant_id", "acme"), selected_fields=("tenant_id",))
        inserted = runs[0]["entities"][entity]["inserted"]
        assert inserted > 0 and rows.to_arrow().num_rows == inserted, entity
    # The raw copies are in the stack's raw bucket, under the RawUri output's prefix.
    raw = stack.clients["s3"].list_objects_v2(Bucket=out["RawBucketName"], Prefix="raw/")
    assert len([o for o in raw.get("Contents", []) if not o["Key"].endswith("/")]) == 2

    # The poison message is in the stack's dead-letter queue, body intact, reason attached.
    dead = sqs.receive_message(QueueUrl=out["DeadLetterQueueUrl"], MaxNumberOfMessages=10,
                               WaitTimeSeconds=2, MessageAttributeNames=["All"])  # fmt: skip
    [msg] = [m for m in dead["Messages"] if m["Body"] == poison]
    assert msg["MessageAttributes"]["cdf.reason"]["StringValue"].startswith("malformed message")
    assert AWS_SECRET not in output
