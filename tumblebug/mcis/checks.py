"""Checks of the subgroups an MCIS request names, and the expansion of dynamic subgroups.

An explicit subgroup names namespace resources (all ready, on its connection) or cloud names; a
dynamic one names catalog IDs (`connection+spec`) and lands on the connection's default network,
security group and key. Every check is made with the cloud before anything is made.
"""

from __future__ import annotations

import contextlib

from cbapi.spider.v1 import spider_pb2 as spb
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services import errors
from services.names import check_name
from tumblebug.resources import Resources
from tumblebug.spider_client import Spider
from tumblebug.ssh_users import check_user, default_user

MAX_SUBGROUP = 10_000


def subgroup_field(i: int, field: str) -> str:
    return f"mcis.subgroups[{i}].{field}"


def _same_architecture(spec_arch: str, image_arch: str, spec: str, image: str, field: str) -> None:
    """An image must run on its spec's processors (unknown on either side: not this check's to refuse)."""
    if spec_arch and image_arch and spec_arch != image_arch:
        raise errors.InvalidArgument.field(field, f"image {image!r} is {image_arch}, spec {spec!r} is {spec_arch}")




class SubgroupChecks:
    """Validation of explicit subgroups and expansion of dynamic ones (reads only, until `on_defaults`)."""

    def __init__(self, spider: Spider, resources: Resources) -> None:
        self.spider = spider
        self.resources = resources

    async def check_subgroup(self, ns: str, sg: pb.Subgroup, i: int) -> None:
        """Validate an explicit subgroup and fill in the cloud names of its spec and image.

        Everything it names must be in the namespace, ready, and on the subgroup's connection; its
        subnet must be one of its vNet's; its image's architecture must be its spec's."""
        check_name(sg.name, subgroup_field(i, "name"))
        if not 1 <= sg.size <= MAX_SUBGROUP:
            raise errors.InvalidArgument.field(subgroup_field(i, "size"), f"must be 1..{MAX_SUBGROUP}")
        if not sg.connection:
            raise errors.InvalidArgument.field(subgroup_field(i, "connection"), "is required")

        def same_connection(res: pb.Resource, field: str) -> None:
            if res.connection != sg.connection:
                raise errors.InvalidArgument.field(
                    subgroup_field(i, field), f"{res.name!r} is on connection {res.connection!r}, "
                                               f"the subgroup on {sg.connection!r}")

        spec_arch = image_arch = ""
        if not sg.csp_spec:
            if not sg.spec:
                raise errors.InvalidArgument.field(subgroup_field(i, "spec"), "is required")
            spec = await self.resources.ready(ns, "specs", sg.spec, subgroup_field(i, "spec"))
            same_connection(spec, "spec")
            sg.csp_spec = spec.spec_ref.csp_spec
            sg.vcpu, spec_arch = spec.spec_ref.vcpu, spec.spec_ref.architecture
        else:
            cloud_spec = await self.cloud_spec(sg.connection, sg.csp_spec, subgroup_field(i, "csp_spec"))
            sg.vcpu, spec_arch = cloud_spec.vcpu, cloud_spec.architecture
        image_os = ""
        if not sg.csp_image:
            if not sg.image:
                raise errors.InvalidArgument.field(subgroup_field(i, "image"), "is required")
            image = await self.resources.ready(ns, "images", sg.image, subgroup_field(i, "image"))
            same_connection(image, "image")
            sg.csp_image = image.image_ref.csp_image
            image_os, image_arch = image.image_ref.os, image.image_ref.architecture
        _same_architecture(spec_arch, image_arch, sg.csp_spec, sg.csp_image, subgroup_field(i, "image"))
        check_user(sg.ssh_user, subgroup_field(i, "ssh_user"))
        sg.ssh_user = sg.ssh_user or await self.login_user(sg.connection, sg.csp_image, image_os)
        named = [("vnets", sg.vnet, "vnet"), ("ssh-keys", sg.ssh_key, "ssh_key"),
                 *(("security-groups", g, f"security_groups[{j}]") for j, g in enumerate(sg.security_groups))]
        for collection, name, field in named:
            if name:
                res = await self.resources.ready(ns, collection, name, subgroup_field(i, field))
                same_connection(res, field)
                if collection == "vnets" and sg.subnet and sg.subnet not in {s.name for s in res.vnet.subnets}:
                    raise errors.NotFound(f"{subgroup_field(i, 'subnet')}: subnet {sg.subnet!r} not found in vNet "
                                          f"{name!r} (it has {', '.join(s.name for s in res.vnet.subnets) or 'none'})")
        if sg.subnet and not sg.vnet:
            raise errors.InvalidArgument.field(subgroup_field(i, "subnet"), "needs the vnet it belongs to")

    async def cloud_spec(self, connection: str, name: str, field: str) -> spb.Spec:
        """A spec as the connection's cloud has it; NOT_FOUND naming `field` when it has none."""
        try:
            spec: spb.Spec = await self.spider.call(self.spider.stub.GetSpec, spb.GetSpecRequest(
                connection=connection, name=name))
        except errors.NotFound as err:
            raise errors.NotFound(f"{field}: {err.message}") from err
        return spec

    async def cloud_image(self, connection: str, name: str, field: str) -> spb.Image:
        try:
            image: spb.Image = await self.spider.call(self.spider.stub.GetImage, spb.GetImageRequest(
                connection=connection, name=name))
        except errors.NotFound as err:
            raise errors.NotFound(f"{field}: image {name!r} not found on connection {connection!r} "
                                  f"({err.message})") from err
        return image
    async def login_user(self, connection: str, csp_image: str, image_os: str = "") -> str:
        """The image's default SSH user, from what the cloud says of the image."""
        words = [image_os, csp_image]
        if not image_os:
            # An unknown image is not this check's to refuse: the VM's create says what is wrong.
            with contextlib.suppress(errors.DomainError):
                image = await self.spider.call(self.spider.stub.GetImage, spb.GetImageRequest(
                    connection=connection, name=csp_image))
                words += [image.os, image.display_name]
        return default_user(*words)

    async def checked_dynamic(self, d: pb.DynamicSubgroup, field: str) -> tuple[str, spb.Spec, spb.Image]:
        """(connection, spec, image) of a dynamic subgroup, all checked with its cloud; nothing is made."""
        check_name(d.name, f"{field}.name")
        connection, _, spec_name = d.spec_id.partition("+")
        if not connection or not spec_name:
            raise errors.InvalidArgument.field(f"{field}.spec_id", "must be `{connection}+{spec}`")
        image_conn, sep, image_name = d.image_id.partition("+")
        if not sep:
            image_name, image_conn = d.image_id, connection
        if not image_name:
            raise errors.InvalidArgument.field(f"{field}.image_id", "is required")
        if not 1 <= d.size <= MAX_SUBGROUP:
            raise errors.InvalidArgument.field(f"{field}.size", f"must be 1..{MAX_SUBGROUP}")
        check_user(d.ssh_user, f"{field}.ssh_user")
        # The spec first: a misspelled connection is named as such, not as a mismatch with the image's.
        spec = await self.cloud_spec(connection, spec_name, f"{field}.spec_id")
        if image_conn != connection:
            raise errors.InvalidArgument.field(f"{field}.image_id", f"is on connection {image_conn!r}, "
                                                                    f"the spec on {connection!r}")
        image = await self.cloud_image(connection, image_name, f"{field}.image_id")
        _same_architecture(spec.architecture, image.architecture, spec.name, image.name, f"{field}.image_id")
        return connection, spec, image

    async def dynamic_subgroup(self, ns: str, d: pb.DynamicSubgroup, i: int) -> pb.Subgroup:
        """An explicit subgroup from catalog IDs, on the connection's default network and key.
        Every check is made before the defaults are (a refused request makes nothing)."""
        connection, spec, image = await self.checked_dynamic(d, f"subgroups[{i}]")
        return await self.on_defaults(ns, d, connection, spec, image)

    async def on_defaults(self, ns: str, d: pb.DynamicSubgroup, connection: str, spec: spb.Spec,
                           image: spb.Image) -> pb.Subgroup:
        vnet, sg, key = await self.resources.ensure_defaults(ns, connection)
        return pb.Subgroup(name=d.name, connection=connection, csp_spec=spec.name, csp_image=image.name, vnet=vnet,
                           subnet="default", security_groups=[sg], ssh_key=key, size=d.size, vcpu=spec.vcpu,
                           root_disk_gib=d.root_disk_gib,
                           ssh_user=d.ssh_user or default_user(image.os, image.name, image.display_name))

