"""Generates the tallyq gRPC stubs from ../../proto at run time (nothing
generated is committed) and imports them.

    from tallyq_stubs import pb, rpc   # messages, services
"""

import importlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))
OUT = os.path.join(HERE, "generated")


def _generate():
    from grpc_tools import protoc

    package_dir = os.path.join(PROTO_ROOT, "tallyq", "v1")
    files = sorted(
        os.path.join("tallyq", "v1", name)
        for name in os.listdir(package_dir)
        if name.endswith(".proto")
    )
    os.makedirs(OUT, exist_ok=True)
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"--python_out={OUT}",
            f"--grpc_python_out={OUT}",
            *files,
        ]
    )
    if code != 0:
        raise SystemExit(f"protoc failed ({code}) on {files}")
    return [os.path.splitext(os.path.basename(f))[0] for f in files]


class _Namespace:
    """All generated modules of one kind (`_pb2` or `_pb2_grpc`) as one."""

    def __init__(self, modules):
        self._modules = modules

    def __getattr__(self, name):
        for module in self._modules:
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(name)


_names = _generate()
sys.path.insert(0, OUT)
pb = _Namespace([importlib.import_module(f"tallyq.v1.{n}_pb2") for n in _names])
rpc = _Namespace([importlib.import_module(f"tallyq.v1.{n}_pb2_grpc") for n in _names])
