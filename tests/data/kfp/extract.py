"""Regenerate backend-<version>.binpb: the KFP backend's own protobuf schemas of one release, the
ones its API server parses a pipeline with (`pipeline_spec.proto`: the IR and PlatformSpec;
`kubernetes_executor_config.proto`: each executor's Kubernetes config), as a FileDescriptorSet.

Source: the release's generated Python modules, PyPI `kfp-pipeline-spec==<version>` and
`kfp-kubernetes==<version>`. Both are built from the kubeflow/pipelines tag `<version>`
(`api/v2alpha1/pipeline_spec.proto`, `kubernetes_platform/proto/kubernetes_executor_config.proto`),
and the backend of that tag compiles the same in-tree files (go.mod: `replace
github.com/kubeflow/pipelines/api => ./api`, `.../kubernetes_platform => ./kubernetes_platform`).
The serialized descriptor embedded in each `_pb2.py` is protoc's output for that tag's .proto, so no
protoc is needed here or in CI. Usage, once per release:
    pip download --no-deps -d /tmp/kfpw kfp-pipeline-spec==2.15.0 kfp-kubernetes==2.15.0
    python tests/data/kfp/extract.py 2.15.0 /tmp/kfpw/*.whl
"""

import ast
import hashlib
import json
import sys
import zipfile
from pathlib import Path

from google.protobuf import any_pb2, descriptor_pb2, duration_pb2, struct_pb2
from google.rpc import status_pb2

MODULES = {"kfp/pipeline_spec/pipeline_spec_pb2.py": "pipeline_spec.proto",
           "kfp/kubernetes/kubernetes_executor_config_pb2.py": "kubernetes_executor_config.proto"}
HERE = Path(__file__).parent


def serialized_file(source: str) -> bytes:
    """The bytes literal passed to AddSerializedFile(...) in a generated _pb2 module (read, not imported:
    two releases of the same .proto cannot share Python's default descriptor pool)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "AddSerializedFile":
            return ast.literal_eval(node.args[0])
    raise ValueError("no AddSerializedFile call")


def main(version: str, wheels: list[str]) -> None:
    files = {}  # dependencies first: a pool builds a file only after its imports
    for module in (any_pb2, duration_pb2, struct_pb2, status_pb2):  # stable well-known/googleapis protos
        files[module.DESCRIPTOR.name] = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(files[module.DESCRIPTOR.name])
    sources = []
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as z:
            for member, proto in MODULES.items():  # pipeline_spec first: the other imports it
                if member in z.namelist():
                    fd = descriptor_pb2.FileDescriptorProto.FromString(serialized_file(z.read(member).decode()))
                    assert fd.name == proto, (fd.name, proto)
                    files[proto] = fd
        sources.append({"wheel": Path(wheel).name, "sha256": hashlib.sha256(Path(wheel).read_bytes()).hexdigest()})
    missing = set(MODULES.values()) - set(files)
    if missing:
        raise SystemExit(f"{sorted(missing)} not found in {wheels}")
    order = [*(n for n in files if n not in MODULES.values()), *MODULES.values()]
    fds = descriptor_pb2.FileDescriptorSet(file=[files[n] for n in order])
    (HERE / f"backend-{version}.binpb").write_bytes(fds.SerializeToString(deterministic=True))
    index = HERE / "SOURCES.json"
    known = json.loads(index.read_text()) if index.exists() else {}
    known[version] = {"tag": f"kubeflow/pipelines {version}", "from": sources}
    index.write_text(json.dumps(dict(sorted(known.items())), indent=2) + "\n")
    print(HERE / f"backend-{version}.binpb")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
