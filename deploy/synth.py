"""Render deploy/stack.yaml into a deployable CloudFormation template for a list of tenants.

CloudFormation has no loop over a list parameter outside the ``AWS::LanguageExtensions``
transform, so the tenants' landing prefixes are expanded here, as CDK does at synth time: each
``{"cdf::TenantLandingObjects": <bucket>}`` becomes one object ARN per tenant prefix, and each
``{"cdf::TenantLandingNotifications": <queue>}`` one S3 -> SQS notification per tenant prefix.
Everything else passes through unchanged. Needs only PyYAML, so CI can render and lint the
stack without installing the project.

    python deploy/synth.py --tenants acme,globex --output cdf-stack.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

SOURCE = Path(__file__).with_name("stack.yaml")
#: The tenant id rule of cdf_pipeline.tenants (a landing prefix is a tenant id).
TENANT_ID = re.compile(r"^[a-z][a-z0-9_]{1,31}$")
OBJECTS, NOTIFICATIONS = "cdf::TenantLandingObjects", "cdf::TenantLandingNotifications"
TENANTS_METADATA = "cdf:TenantLandingPrefixes"


def synthesize(tenants: list[str], source: Path = SOURCE) -> dict[str, Any]:
    """The template for ``tenants`` (their ids are their landing prefixes).

    Raises:
        ValueError: no tenants, a duplicate, or an id the pipeline would refuse.
    """
    bad = [t for t in tenants if not TENANT_ID.match(t)]
    if not tenants or bad or len(set(tenants)) != len(tenants):
        raise ValueError(
            f"tenants must be distinct tenant ids ([a-z][a-z0-9_]{{1,31}}), got {tenants!r}"
        )
    template = yaml.safe_load(source.read_text())
    template.setdefault("Metadata", {})[TENANTS_METADATA] = list(tenants)
    return _expand(template, tenants)


def _expand(node: Any, tenants: list[str]) -> Any:
    if isinstance(node, list):
        return [_expand(item, tenants) for item in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {OBJECTS}:
        return [{"Fn::Sub": f"${{{node[OBJECTS]}.Arn}}/{t}/*"} for t in tenants]
    if set(node) == {NOTIFICATIONS}:
        return [
            {
                "Event": "s3:ObjectCreated:*",
                "Filter": {"S3Key": {"Rules": [{"Name": "prefix", "Value": f"{t}/"}]}},
                "Queue": {"Fn::GetAtt": [node[NOTIFICATIONS], "Arn"]},
            }
            for t in tenants
        ]
    return {key: _expand(value, tenants) for key, value in node.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", required=True, help="comma-separated tenant ids")
    parser.add_argument("--output", "-o", help="file to write (default: stdout)")
    args = parser.parse_args(argv)
    try:
        template = synthesize([t.strip() for t in args.tenants.split(",") if t.strip()])
    except ValueError as exc:
        parser.error(str(exc))
    text = json.dumps(template, indent=1) + "\n"
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
