"""Finding libvirt objects by the IDs spider keeps; these run in libvirt worker threads."""

from __future__ import annotations

import uuid

import libvirt

from spider.drivers.libvirt import domains as D
from spider.drivers.libvirt.errors import not_found


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def domain(conn: libvirt.virConnect, csp_id: str) -> libvirt.virDomain:
    if not _is_uuid(csp_id):
        raise not_found("VIR_ERR_NO_DOMAIN", f"Domain not found: {csp_id!r} is not a domain UUID")
    return conn.lookupByUUIDString(csp_id)


def view(dom: libvirt.virDomain) -> D.DomainView:
    """A domain's parsed XML, its disks from the live and the persistent definition together:
    a disk attached to the persistent definition alone (hosts without hot-plug) is attached."""
    out = D.parse(dom.XMLDesc(0))
    if dom.isActive() and dom.isPersistent():
        have = {(d.pool, d.volume, d.file) for d in out.disks}
        out.disks += [d for d in D.parse(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).disks
                      if (d.pool, d.volume, d.file) not in have]
    return out


def vm_domain(conn: libvirt.virConnect, csp_id: str) -> tuple[libvirt.virDomain, D.DomainView]:
    """A domain that is a VM (not the keyring), with its parsed XML (see `view`)."""
    dom = domain(conn, csp_id)
    view_ = view(dom)
    if view_.keyring:
        raise not_found("VIR_ERR_NO_DOMAIN", f"Domain {view_.name!r} is spider's keyring, not a VM")
    return dom, view_


def network(conn: libvirt.virConnect, csp_id: str) -> libvirt.virNetwork:
    if not _is_uuid(csp_id):
        raise not_found("VIR_ERR_NO_NETWORK", f"Network not found: {csp_id!r} is not a network UUID")
    return conn.networkLookupByUUIDString(csp_id)


def nwfilter(conn: libvirt.virConnect, csp_id: str) -> libvirt.virNWFilter:
    if not _is_uuid(csp_id):
        raise not_found("VIR_ERR_NO_NWFILTER", f"Network filter not found: {csp_id!r} is not a filter UUID")
    return conn.nwfilterLookupByUUIDString(csp_id)


def volume(conn: libvirt.virConnect, pool: str, name: str) -> libvirt.virStorageVol:
    return conn.storagePoolLookupByName(pool).storageVolLookupByName(name)


def volume_or_none(conn: libvirt.virConnect, pool: str, name: str) -> libvirt.virStorageVol | None:
    try:
        return volume(conn, pool, name)
    except libvirt.libvirtError as err:
        if err.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
            return None
        raise


def update_flags(net: libvirt.virNetwork) -> int:
    """Change the running network and its persistent definition, whichever exist."""
    live = libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE if net.isActive() else 0
    return live | (libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG if net.isPersistent() else 0)


def device_flags(dom: libvirt.virDomain) -> int:
    """Hot-plug into the running domain and change its persistent definition, whichever exist."""
    live = libvirt.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else 0
    return live | (libvirt.VIR_DOMAIN_AFFECT_CONFIG if dom.isPersistent() else 0)


def domain_views(conn: libvirt.virConnect) -> list[tuple[D.DomainView, int, int]]:
    """Every VM domain with its state and reason (the keyring left out)."""
    out = []
    for dom in conn.listAllDomains(0):
        try:
            seen = view(dom)
            state, reason = dom.state()
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                continue  # undefined while we listed
            raise
        if not seen.keyring:
            out.append((seen, state, reason))
    return out
