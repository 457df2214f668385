"""Where the gateway learns a backend's API: its protobuf descriptors and the proto comments.

The descriptors come from the backend itself, by gRPC server reflection, so a service that
adds an annotated RPC gets its REST route without a new gateway. While a backend cannot be
reached, the descriptors of the generated code installed beside the gateway (`cbapi.<name>`)
stand in, so that backend's routes exist and answer 503 rather than 404.

Generated code and reflection carry no comments, so the comments for the OpenAPI document are
read from the .proto sources, compiled once with grpcio-tools' protoc.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import pkgutil
import tempfile
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

log = logging.getLogger("gateway")

# Services every gRPC server carries that are not part of any API.
_INFRASTRUCTURE = ("grpc.health.", "grpc.reflection.")


@dataclass(frozen=True)
class Schema:
    """The API of one backend: a descriptor pool of its own and the services it serves."""

    backend: str
    pool: descriptor_pool.DescriptorPool
    services: tuple[ServiceDescriptor, ...]
    # "reflection" (asked the backend) or "installed" (the gateway's generated code).
    source: str
    # Identifies the descriptor set, so an unchanged API is not rebuilt on refresh.
    digest: str = ""


@dataclass
class Comments:
    """Leading comments of proto symbols, by full name (`pkg.Message.field`, `pkg.Service.Method`)."""

    by_symbol: dict[str, str] = field(default_factory=dict)

    def get(self, symbol: str) -> str:
        return self.by_symbol.get(symbol, "")


class ReflectionError(Exception):
    """The backend's reflection service could not give a usable descriptor set."""


async def _ask(stub: reflection_pb2_grpc.ServerReflectionStub, request: reflection_pb2.ServerReflectionRequest,
               timeout: float) -> reflection_pb2.ServerReflectionResponse:
    async def one() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield request

    call = stub.ServerReflectionInfo(one(), timeout=timeout)
    async for response in call:
        if response.HasField("error_response"):
            raise ReflectionError(response.error_response.error_message or "reflection error")
        return response
    raise ReflectionError("reflection answered nothing")


async def from_reflection(backend: str, channel: grpc.aio.Channel, timeout: float = 2.0) -> Schema:
    """Ask a backend for its services and the files that define them (with all dependencies)."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    listed = await _ask(stub, reflection_pb2.ServerReflectionRequest(list_services=""), timeout)
    names = [s.name for s in listed.list_services_response.service if not s.name.startswith(_INFRASTRUCTURE)]
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    for name in names:
        reply = await _ask(stub, reflection_pb2.ServerReflectionRequest(file_containing_symbol=name), timeout)
        for raw in reply.file_descriptor_response.file_descriptor_proto:
            proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
            files.setdefault(proto.name, proto)
    # A server may leave out dependencies it assumes we know; ask for each missing one.
    missing = _missing_dependencies(files)
    while missing:
        for filename in missing:
            reply = await _ask(stub, reflection_pb2.ServerReflectionRequest(file_by_filename=filename), timeout)
            for raw in reply.file_descriptor_response.file_descriptor_proto:
                proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
                files.setdefault(proto.name, proto)
        still = _missing_dependencies(files)
        if still & missing:
            raise ReflectionError(f"backend does not serve {sorted(still & missing)}")
        missing = still
    pool = build_pool(files.values())
    services = tuple(pool.FindServiceByName(n) for n in names)
    return Schema(backend, pool, services, "reflection", _digest(files.values()))


def _missing_dependencies(files: dict[str, descriptor_pb2.FileDescriptorProto]) -> set[str]:
    return {dep for f in files.values() for dep in f.dependency if dep not in files}


def _digest(files: Iterable[descriptor_pb2.FileDescriptorProto]) -> str:
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.name):
        h.update(f.SerializeToString(deterministic=True))
    return h.hexdigest()


def build_pool(files: Iterable[descriptor_pb2.FileDescriptorProto]) -> descriptor_pool.DescriptorPool:
    """A fresh pool holding `files`, added in dependency order.

    One pool per backend: two services may be built from different versions of a shared file."""
    by_name = {f.name: f for f in files}
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(name: str, chain: tuple[str, ...]) -> None:
        if name in added:
            return
        if name in chain:
            raise ReflectionError(f"circular import of {name}")
        proto = by_name[name]
        for dep in proto.dependency:
            add(dep, (*chain, name))
        pool.Add(proto)
        added.add(name)

    for name in by_name:
        add(name, ())
    return pool


def from_installed(backend: str) -> Schema | None:
    """The services of the generated package `cbapi.<backend>` installed with the gateway."""
    try:
        package = importlib.import_module(f"cbapi.{backend}")
    except ImportError:
        return None
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    services: list[str] = []
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(info.name)
        file_descriptor = module.DESCRIPTOR
        _collect(file_descriptor, files)
        services += [s.full_name for s in file_descriptor.services_by_name.values()]
    if not services:
        return None
    pool = build_pool(files.values())
    return Schema(backend, pool, tuple(pool.FindServiceByName(n) for n in services), "installed",
                  _digest(files.values()))


def _collect(file_descriptor: object, into: dict[str, descriptor_pb2.FileDescriptorProto]) -> None:
    name: str = file_descriptor.name  # type: ignore[attr-defined]
    if name in into:
        return
    for dep in file_descriptor.dependencies:  # type: ignore[attr-defined]
        _collect(dep, into)
    proto = descriptor_pb2.FileDescriptorProto()
    file_descriptor.CopyToProto(proto)  # type: ignore[attr-defined]
    into[name] = proto


def default_proto_path() -> Path | None:
    """The repository's `protos/` next to the installed generated code, when it is there."""
    with contextlib.suppress(ImportError):
        import cbapi

        for base in cbapi.__path__:
            candidate = Path(base).resolve().parent / "protos"
            if candidate.is_dir():
                return candidate
    return None


def load_comments(proto_path: Path | None) -> Comments:
    """Compile the .proto sources under `proto_path` with source info and collect the comments.

    Missing sources or a failed compile give no comments, never an error: they only document."""
    if proto_path is None or not proto_path.is_dir():
        return Comments()
    try:
        return _compile_comments(proto_path, sorted(p.relative_to(proto_path).as_posix()
                                                    for p in proto_path.rglob("*.proto")))
    except Exception as exc:  # the docs go without comments rather than the gateway without routes
        log.warning("proto comments unavailable", extra={"proto_path": str(proto_path), "error": str(exc)})
        return Comments()


def _compile_comments(root: Path, files: Sequence[str]) -> Comments:
    import grpc_tools
    from google.api import annotations_pb2
    from grpc_tools import protoc

    googleapis = Path(annotations_pb2.__file__).resolve().parent.parent.parent
    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.binpb"
        args = ["protoc", f"-I{root}", f"-I{googleapis}", f"-I{well_known}", f"--descriptor_set_out={out}",
                "--include_source_info", *files]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed")
        descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    comments = Comments()
    for proto in descriptor_set.file:
        _file_comments(proto, comments.by_symbol)
    return comments


# Field numbers in descriptor.proto that lead to named symbols.
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MESSAGE_FIELD, _MESSAGE_NESTED, _MESSAGE_ENUM = 2, 3, 4
_ENUM_VALUE, _SERVICE_METHOD = 2, 2


def _file_comments(proto: descriptor_pb2.FileDescriptorProto, out: dict[str, str]) -> None:
    symbols: dict[tuple[int, ...], str] = {}
    prefix = f"{proto.package}." if proto.package else ""

    def message(path: tuple[int, ...], m: descriptor_pb2.DescriptorProto, name: str) -> None:
        symbols[path] = name
        for i, f in enumerate(m.field):
            symbols[(*path, _MESSAGE_FIELD, i)] = f"{name}.{f.name}"
        for i, nested in enumerate(m.nested_type):
            message((*path, _MESSAGE_NESTED, i), nested, f"{name}.{nested.name}")
        for i, e in enumerate(m.enum_type):
            enum((*path, _MESSAGE_ENUM, i), e, f"{name}.{e.name}")

    def enum(path: tuple[int, ...], e: descriptor_pb2.EnumDescriptorProto, name: str) -> None:
        symbols[path] = name
        for i, v in enumerate(e.value):
            symbols[(*path, _ENUM_VALUE, i)] = f"{name}.{v.name}"

    for i, m in enumerate(proto.message_type):
        message((_FILE_MESSAGE, i), m, prefix + m.name)
    for i, e in enumerate(proto.enum_type):
        enum((_FILE_ENUM, i), e, prefix + e.name)
    for i, s in enumerate(proto.service):
        symbols[(_FILE_SERVICE, i)] = prefix + s.name
        for j, meth in enumerate(s.method):
            symbols[(_FILE_SERVICE, i, _SERVICE_METHOD, j)] = f"{prefix}{s.name}.{meth.name}"
    for location in proto.source_code_info.location:
        name = symbols.get(tuple(location.path))
        text = (location.leading_comments or location.trailing_comments).strip()
        if name and text:
            out[name] = "\n".join(line.strip() for line in text.splitlines())
