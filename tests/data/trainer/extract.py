"""Regenerate trainjob-<version>.json.gz: the TrainJob schema of each supported Kubeflow Trainer
release, from that release's generated API models (PyPI `kubeflow-trainer-api==<version>`), made
strict (additionalProperties: false on every object with properties, as the CRD's structural schema
prunes or rejects unknown fields; IntOrString/Quantity as the bare values they are on the
wire). Usage, once per release:
    pip download --no-deps -d /tmp/kta kubeflow-trainer-api==2.1.0 && unzip -o -d /tmp/kta/x /tmp/kta/*.whl
    PYTHONPATH=/tmp/kta/x python tests/data/trainer/extract.py v2.1
"""

import gzip
import json
import sys
from pathlib import Path


def strict(node):
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            node["additionalProperties"] = False
        for v in node.values():
            strict(v)
    elif isinstance(node, list):
        for v in node:
            strict(v)
    return node


def unwrap_one_of(schema: dict) -> dict:
    """The generator wraps IntOrString and Quantity in classes holding `actual_instance`; on the wire
    (and in the CRD: x-kubernetes-int-or-string) they are the bare int/number/string."""
    for name, d in schema["$defs"].items():
        inner = d.get("properties", {}).get("actual_instance")
        if inner:
            schema["$defs"][name] = {"anyOf": [t for t in inner["anyOf"] if t != {"type": "null"}]}
    return schema


def main(version: str) -> None:
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

    schema = unwrap_one_of(strict(TrainerV1alpha1TrainJob.model_json_schema(by_alias=True)))
    out = Path(__file__).with_name(f"trainjob-{version}.json.gz")
    out.write_bytes(gzip.compress(json.dumps(schema, sort_keys=True).encode(), mtime=0))
    print(out, out.stat().st_size)


if __name__ == "__main__":
    main(sys.argv[1])
