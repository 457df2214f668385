"""Security groups as libvirt nwfilters (see nwfilters for the rule layout).

The filters live on the connection that serves nwfilters: the hypervisor's own, or
the region setting `nwfilter_uri` when the hypervisor driver has none (libvirt's test
driver; a host whose nwfilter daemon is reached separately). Domains name their
filter in `<filterref>`, so both connections must reach the same host.
"""

from __future__ import annotations

import libvirt

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as pb
from services import errors
from spider.drivers import base
from spider.drivers.libvirt import lookups as L
from spider.drivers.libvirt import nwfilters as F
from spider.drivers.libvirt.client import LibvirtClient
from spider.drivers.libvirt.errors import not_found


def _group(view: F.FilterView) -> pb.SecurityGroup:
    return pb.SecurityGroup(iid=common.IID(csp_name=view.name, csp_id=view.uuid), rules=view.rules)


def group_view(conn: libvirt.virConnect, csp_id: str) -> tuple[libvirt.virNWFilter, F.FilterView]:
    flt = L.nwfilter(conn, csp_id)
    view = F.parse(flt.XMLDesc(0))
    if not view.is_group:
        raise not_found("VIR_ERR_NO_NWFILTER", f"nwfilter {view.name!r} is not a spider security group")
    return flt, view


class LibvirtSecurityGroups(base.SecurityGroupHandler):
    def __init__(self, filters: LibvirtClient, hypervisor: LibvirtClient) -> None:
        self.filters, self.hypervisor = filters, hypervisor

    async def create_security_group(self, sg: pb.SecurityGroup, vpc_csp_id: str, token: str) -> pb.SecurityGroup:
        name = sg.iid.csp_name
        vpc_mark = f"{vpc_csp_id}; token={token}"

        def define(conn: libvirt.virConnect) -> F.FilterView:
            try:
                existing = F.parse(conn.nwfilterLookupByName(name).XMLDesc(0))
            except libvirt.libvirtError as err:
                if err.get_error_code() != libvirt.VIR_ERR_NO_NWFILTER:
                    raise
                return F.parse(conn.nwfilterDefineXML(F.build(name, vpc_mark, list(sg.rules))).XMLDesc(0))
            if existing.vpc != vpc_mark:
                raise base.CloudError(errors.AlreadyExists, f"nwfilter {name!r} already exists")
            return existing  # the same request again

        return _group(await self.filters.call("virNWFilterDefineXML", define, "security_group", sg.iid.name))

    async def get_security_group(self, csp_id: str) -> pb.SecurityGroup:
        view = await self.filters.call("virNWFilterGetXMLDesc", lambda c: group_view(c, csp_id)[1],
                                       "security_group", csp_id)
        return _group(view)

    async def list_security_groups(self) -> list[pb.SecurityGroup]:
        def describe(conn: libvirt.virConnect) -> list[F.FilterView]:
            return [v for v in (F.parse(f.XMLDesc(0)) for f in conn.listAllNWFilters(0)) if v.is_group]

        return [_group(v) for v in await self.filters.call("virConnectListAllNWFilters", describe, "security_group")]

    async def delete_security_group(self, csp_id: str) -> None:
        view = await self.filters.call("virNWFilterGetXMLDesc", lambda c: group_view(c, csp_id)[1],
                                       "security_group", csp_id)

        def users(conn: libvirt.virConnect) -> list[str]:
            return sorted(v.name for v, _, _ in L.domain_views(conn)
                          if view.name in v.meta.groups.split() or any(n.filter == view.name for n in v.nics))

        held = await self.hypervisor.call("virConnectListAllDomains", users, "security_group", csp_id)
        if held:
            raise errors.FailedPrecondition(f"security group {view.name!r} is in use by domains {', '.join(held)}")
        await self.filters.call("virNWFilterUndefine", lambda c: L.nwfilter(c, csp_id).undefine(),
                                "security_group", csp_id)

    async def _change(self, csp_id: str, rules: list[pb.SecurityRule], add: bool) -> pb.SecurityGroup:
        def redefine(conn: libvirt.virConnect) -> F.FilterView:
            _, view = group_view(conn, csp_id)
            if add:
                wanted = [*view.rules, *rules]
            else:
                gone = {F.normal(r) for r in rules}
                wanted = [r for r in view.rules if F.normal(r) not in gone]
            # Redefining a filter updates it on every running VM that uses it.
            return F.parse(conn.nwfilterDefineXML(F.build(view.name, view.vpc, wanted, view.uuid)).XMLDesc(0))

        return _group(await self.filters.call("virNWFilterDefineXML", redefine, "security_group", csp_id))

    async def add_rules(self, csp_id: str, rules: list[pb.SecurityRule]) -> pb.SecurityGroup:
        return await self._change(csp_id, rules, add=True)

    async def remove_rules(self, csp_id: str, rules: list[pb.SecurityRule]) -> pb.SecurityGroup:
        return await self._change(csp_id, rules, add=False)
