"""Generate the Python code of every .proto under protos/ into ./cbapi.

Run as `python protos/generate.py` from the repository root (`make protos`).
The generated package is named `cbapi` so it never shadows a service package.
"""

from __future__ import annotations

import pathlib
import sys

import grpc_tools
from google.api import annotations_pb2
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = ROOT / "protos"


def include_dirs() -> list[str]:
    googleapis = pathlib.Path(annotations_pb2.__file__).resolve().parent.parent.parent
    well_known = pathlib.Path(grpc_tools.__file__).resolve().parent / "_proto"
    return [str(SRC), str(googleapis), str(well_known)]


def main() -> int:
    files = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.proto"))
    args = ["protoc", *(f"-I{d}" for d in include_dirs())]
    args += [f"--python_out={ROOT}", f"--pyi_out={ROOT}", f"--grpc_python_out={ROOT}", *files]
    if protoc.main(args) != 0:
        return 1
    # Packages need __init__.py so setuptools and mypy see them.
    for d in (ROOT / "cbapi").rglob("*"):
        if d.is_dir() and d.name != "__pycache__":
            (d / "__init__.py").touch()
    (ROOT / "cbapi" / "__init__.py").touch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
