"""Small helpers for libvirt's XML: parsing, spider's metadata namespace, text output.

libvirt's XML comes from the host we are connected to, and ours is built with
ElementTree, so values are always escaped and never spliced into strings.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

# spider's namespace inside libvirt <metadata>; key pairs get one URI each below it.
NS = "urn:x-cb-suite:spider:libvirt:1"
PREFIX = "cb"
ET.register_namespace(PREFIX, NS)


def parse(text: str) -> ET.Element:
    return ET.fromstring(text)


def tostring(elem: ET.Element) -> str:
    return ET.tostring(elem, encoding="unicode")


def sub(parent: ET.Element, tag: str, text: str = "", **attrs: str) -> ET.Element:
    child = ET.SubElement(parent, tag, {k.replace("_", "-"): v for k, v in attrs.items() if v != ""})
    if text:
        child.text = text
    return child


def qname(local: str, ns: str = NS) -> str:
    return f"{{{ns}}}{local}"


def metadata(root: ET.Element, local: str, ns: str = NS) -> ET.Element | None:
    """spider's element `local` inside `<metadata>`, if the object carries one."""
    meta = root.find("metadata")
    return None if meta is None else meta.find(qname(local, ns))


def text(root: ET.Element, path: str, default: str = "") -> str:
    found = root.find(path)
    return (found.text or default) if found is not None else default


def attr(root: ET.Element, path: str, name: str, default: str = "") -> str:
    found = root.find(path)
    return found.get(name, default) if found is not None else default
