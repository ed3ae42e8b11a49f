"""A gRPC client no one on the Meridian team wrote: Python grpcio with stubs generated from
Meridian's .proto files at run time (grpcio-tools). It lists the services through server
reflection, creates a workload as a tenant, reads it back, and prints one JSON line with what
it saw. Usage: grpc_client.py ENDPOINT CA_PEM TOKEN PROTO_DIR
"""

import importlib
import json
import os
import sys
import tempfile

import grpc
from grpc_tools import protoc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc


def generate(proto_dir, out_dir):
    files = [
        os.path.join("meridian", "v1", name)
        for name in sorted(os.listdir(os.path.join(proto_dir, "meridian", "v1")))
        if name.endswith(".proto")
    ]
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    code = protoc.main(
        ["grpc_tools.protoc", f"-I{proto_dir}", f"-I{include}",
         f"--python_out={out_dir}", f"--grpc_python_out={out_dir}"] + files
    )
    if code != 0:
        raise SystemExit(f"protoc failed with {code}")
    sys.path.insert(0, out_dir)


def main():
    endpoint, ca_path, token, proto_dir = sys.argv[1:5]
    out_dir = tempfile.mkdtemp(prefix="meridian-py-")
    generate(proto_dir, out_dir)
    placement_pb2 = importlib.import_module("meridian.v1.placement_pb2")
    placement_grpc = importlib.import_module("meridian.v1.placement_pb2_grpc")
    domain_pb2 = importlib.import_module("meridian.v1.domain_pb2")

    with open(ca_path, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    channel = grpc.secure_channel(endpoint, creds)
    metadata = [("authorization", f"Bearer {token}")]

    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = reflect.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), metadata=metadata
    )
    services = sorted(s.name for a in answers for s in a.list_services_response.service)

    stub = placement_grpc.PlacementServiceStub(channel)
    spec = domain_pb2.WorkloadSpec(
        name="python-job",
        kind=domain_pb2.WORKLOAD_KIND_BATCH_JOB,
        replicas=1,
        priority=1,
        resources=domain_pb2.Resources(
            accelerator=domain_pb2.Accelerator(
                whole_gpus=domain_pb2.Accelerator.WholeGpus(model="H100-80GB", count=1)
            ),
            cpu_cores=2,
            memory_mib=4096,
        ),
        constraints=domain_pb2.Constraints(),
    )
    created = stub.CreateWorkload(
        placement_pb2.CreateWorkloadRequest(spec=spec), metadata=metadata, timeout=10
    ).workload
    got = stub.GetWorkload(
        placement_pb2.GetWorkloadRequest(id=created.id), metadata=metadata, timeout=10
    ).workload

    # Another tenant's ID from this client: not found, like any missing one.
    try:
        stub.GetWorkload(placement_pb2.GetWorkloadRequest(id="wl-000000000000"),
                         metadata=metadata, timeout=10)
        missing = "OK"
    except grpc.RpcError as e:
        missing = e.code().name
    # No token at all.
    try:
        stub.GetWorkload(placement_pb2.GetWorkloadRequest(id=created.id), timeout=10)
        anonymous = "OK"
    except grpc.RpcError as e:
        anonymous = e.code().name

    print(json.dumps({
        "services": services,
        "created": created.id,
        "read_back": got.id,
        "tenant": got.tenant,
        "name": got.spec.name,
        "missing": missing,
        "anonymous": anonymous,
    }))


if __name__ == "__main__":
    main()
