"""Deploy deploy/stack.yaml to moto's CloudFormation on loopback, and fill in what moto leaves out.

moto's ``create_stack`` reaches CREATE_COMPLETE without building some resource types at all,
and it ignores some bucket properties. Nothing of the template is skipped silently here:

- :data:`MOTO_UNBUILT` lists the resource types moto does not build; the deploy asserts that
  exactly those are missing from the stack (a moto that starts building one fails the test, so
  the list stays true). Each is applied through the service's ordinary API from the template's
  own properties, or, where that cannot mean anything on moto, only checked by assertion on the
  template (tests/integration/test_deploy_stack.py);
- :data:`MOTO_IGNORED_BUCKET_PROPERTIES`: bucket properties moto's CloudFormation ignores,
  applied through the S3 API from the template's values;
- moto keeps a role's inline policies as a Python ``repr`` (single quotes), which its own IAM
  enforcement then cannot parse as JSON: :func:`rewrite_role_policies_as_json` puts the same
  documents back as JSON.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
REGION, ACCOUNT, PARTITION = "us-east-1", "123456789012", "aws"

#: Resource types moto 5.2's CloudFormation does not build ("No Moto CloudFormation support"),
#: and what the tests do instead.
MOTO_UNBUILT = {
    "AWS::Glue::Database": "applied with glue.create_database from the template's DatabaseInput",
    "AWS::SQS::QueuePolicy": "applied with sqs.set_queue_attributes(Policy=...) from the template",
    "AWS::S3::BucketPolicy": (
        "template assertion only: the policies deny requests without TLS (aws:SecureTransport), "
        "and moto on loopback serves plain HTTP"
    ),
}
#: Bucket properties moto's CloudFormation ignores, applied through the S3 API instead.
MOTO_IGNORED_BUCKET_PROPERTIES = (
    "VersioningConfiguration",
    "PublicAccessBlockConfiguration",
    "NotificationConfiguration",
)


def synthesize(tenants: list[str]) -> dict[str, Any]:
    """deploy/synth.py's template for ``tenants`` (the module loaded from the checkout)."""
    spec = importlib.util.spec_from_file_location("cdf_deploy_synth", REPO / "deploy" / "synth.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.synthesize(tenants))


@dataclass
class Stack:
    """A deployed stack: its outputs, its resources' physical ids, and boto3 clients."""

    name: str
    template: dict[str, Any]
    parameters: dict[str, str]
    outputs: dict[str, str]
    physical: dict[str, str]
    clients: dict[str, Any] = field(repr=False)

    def cdf_settings(self) -> dict[str, str]:
        """The ``cdf`` settings a user takes from the stack's outputs (as the docs map them),
        and a small local Spark for a test's child process."""
        out = self.outputs
        return {
            "CDF_ROOT": out["Root"],
            "CDF__STORAGE__RAW": out["RawUri"],
            "CDF__LANDING__URI": out["LandingUri"],
            "CDF__CATALOG__NAMESPACE_PREFIX": out["NamespacePrefix"],
            "CDF__SPARK__MASTER": "local[2]",
            "CDF__SPARK__SHUFFLE_PARTITIONS": "2",
        }

    def resources_of(self, rtype: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.template["Resources"].items() if r["Type"] == rtype}

    def arn(self, logical: str) -> str:
        """``Fn::GetAtt [logical, Arn]`` as CloudFormation resolves it."""
        rtype = self.template["Resources"][logical]["Type"]
        physical = self.physical[logical]
        if rtype == "AWS::S3::Bucket":
            return f"arn:{PARTITION}:s3:::{physical}"
        if rtype == "AWS::SQS::Queue":
            attrs = self.clients["sqs"].get_queue_attributes(
                QueueUrl=physical, AttributeNames=["QueueArn"]
            )
            return str(attrs["Attributes"]["QueueArn"])
        if rtype == "AWS::IAM::Role":
            return str(self.clients["iam"].get_role(RoleName=physical)["Role"]["Arn"])
        raise NotImplementedError(f"Arn of {rtype}")

    def resolve(self, node: Any) -> Any:
        """The template's value with Ref, Fn::Sub and Fn::GetAtt resolved against this stack."""
        if isinstance(node, list):
            return [self.resolve(n) for n in node]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Ref"}:
            return self._ref(node["Ref"])
        if set(node) == {"Fn::GetAtt"}:
            logical, attribute = node["Fn::GetAtt"]
            assert attribute == "Arn", attribute
            return self.arn(logical)
        if set(node) == {"Fn::Sub"}:
            text, extra = node["Fn::Sub"], {}
            if isinstance(text, list):
                text, extra = text[0], {k: self.resolve(v) for k, v in text[1].items()}
            return re.sub(r"\$\{([^}]+)\}", lambda m: self._var(m.group(1), extra), text)
        return {k: self.resolve(v) for k, v in node.items()}

    def _ref(self, name: str) -> str:
        pseudo = {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": PARTITION}
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self.physical[name]

    def _var(self, name: str, extra: dict[str, Any]) -> str:
        if name in extra:
            return str(extra[name])
        if name.endswith(".Arn"):
            return self.arn(name[: -len(".Arn")])
        return self._ref(name)


def deploy(
    endpoint: str, name: str, template: dict[str, Any], parameters: dict[str, str], **creds: str
) -> Stack:
    """``create_stack`` on moto, outputs read back, then what moto leaves out applied (above).

    Raises:
        AssertionError: the stack did not complete, or moto built other resources than expected.
    """
    import boto3

    kw: dict[str, Any] = {"endpoint_url": endpoint, "region_name": REGION, **creds}
    clients = {s: boto3.client(s, **kw) for s in ("cloudformation", "s3", "sqs", "glue", "iam")}
    cfn = clients["cloudformation"]
    cfn.create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    [described] = cfn.describe_stacks(StackName=name)["Stacks"]
    assert described["StackStatus"] == "CREATE_COMPLETE", described
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    summaries = cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]
    physical = {
        s["LogicalResourceId"]: s["PhysicalResourceId"]
        for s in summaries
        if s.get("LogicalResourceId")
    }
    expected = {k for k, r in template["Resources"].items() if r["Type"] not in MOTO_UNBUILT}
    assert set(physical) == expected, (
        "moto built other resources than tests/servers/cloudformation.py expects: update "
        f"MOTO_UNBUILT (built {sorted(physical)}, expected {sorted(expected)})"
    )
    stack = Stack(name, template, parameters, outputs, physical, clients)
    _apply_what_moto_leaves_out(stack)
    return stack


def _apply_what_moto_leaves_out(stack: Stack) -> None:
    s3, sqs, glue = stack.clients["s3"], stack.clients["sqs"], stack.clients["glue"]
    for logical, resource in stack.resources_of("AWS::S3::Bucket").items():
        props, bucket = stack.resolve(resource["Properties"]), stack.physical[logical]
        if "VersioningConfiguration" in props:
            s3.put_bucket_versioning(
                Bucket=bucket, VersioningConfiguration=props["VersioningConfiguration"]
            )
        if "PublicAccessBlockConfiguration" in props:
            s3.put_public_access_block(
                Bucket=bucket,
                PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"],
            )
        if "NotificationConfiguration" in props:
            queues = props["NotificationConfiguration"]["QueueConfigurations"]
            s3.put_bucket_notification_configuration(
                Bucket=bucket,
                NotificationConfiguration={
                    "QueueConfigurations": [_queue_notice(q) for q in queues]
                },
            )
    for resource in stack.resources_of("AWS::Glue::Database").values():
        props = stack.resolve(resource["Properties"])
        glue.create_database(CatalogId=props["CatalogId"], DatabaseInput=props["DatabaseInput"])
    for resource in stack.resources_of("AWS::SQS::QueuePolicy").values():
        props = stack.resolve(resource["Properties"])
        for url in props["Queues"]:
            sqs.set_queue_attributes(
                QueueUrl=url, Attributes={"Policy": json.dumps(props["PolicyDocument"])}
            )


def _queue_notice(cfn: dict[str, Any]) -> dict[str, Any]:
    """A CloudFormation ``QueueConfiguration`` in the S3 API's shape."""
    api: dict[str, Any] = {"QueueArn": cfn["Queue"], "Events": [cfn["Event"]]}
    if "Filter" in cfn:
        rules = cfn["Filter"]["S3Key"]["Rules"]
        api["Filter"] = {"Key": {"FilterRules": [dict(r) for r in rules]}}
    return api


def rewrite_role_policies_as_json(stack: Stack) -> dict[str, dict[str, dict[str, Any]]]:
    """Every role's inline policies put back as JSON; returns role -> policy name -> document."""
    iam = stack.clients["iam"]
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for logical in stack.resources_of("AWS::IAM::Role"):
        role = stack.physical[logical]
        for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
            raw = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
            doc = raw if isinstance(raw, dict) else _parse_policy(raw)
            iam.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=json.dumps(doc))
            out.setdefault(role, {})[name] = doc
    return out


def _parse_policy(text: str) -> dict[str, Any]:
    try:
        return dict(json.loads(text))
    except json.JSONDecodeError:  # moto's CloudFormation stored repr(dict)
        return dict(ast.literal_eval(text))
