"""The `aws` driver: EC2 through boto3.

Region settings: `endpoint` (an AWS-compatible endpoint URL; empty = AWS
itself), `image_owners` (comma-separated, default "amazon,self": AWS has
millions of public images), `threads` (boto3 calls in flight per connection,
default 16). The region's `zone` is where VMs without a subnet, and disks, go.
"""

from __future__ import annotations

from cbapi.spider.v1 import spider_pb2 as pb
from services import errors
from spider.drivers import base
from spider.drivers.aws import handlers as h
from spider.drivers.aws.client import Ec2


class AwsDriver(base.Driver):
    """Every handler but prices, over EC2."""

    name = "aws"
    description = "Amazon EC2 (and AWS-compatible endpoints) through boto3"
    credential_keys = ("access_key", "secret_key")
    # EC2 Name tags allow 255 characters; key and group names are used as IDs, keep them short.
    name_rules = base.NameRules(max_length=63)

    def capabilities(self) -> pb.Capabilities:
        return pb.Capabilities(
            images=True, specs=True, region_zones=True, prices=False, vpc=True, subnet=True, security_group=True,
            key_pair=True, key_pair_import=True, vm=True, vm_suspend=True, vm_reboot=True, disk=True,
            disk_resize=True, register=True,
            notes=["prices: the AWS Price List API is not reachable from here; specs carry no price"])

    async def connect(self, info: base.ConnectionInfo, caller: base.Caller) -> base.CloudConnection:
        for key in self.credential_keys:
            if not info.credential.get(key):
                raise errors.InvalidArgument.field(f"credential.values.{key}", "is required by the aws driver")
        threads = int(info.settings.get("threads", "16"))
        ec2 = Ec2(info.credential["access_key"], info.credential["secret_key"], info.region,
                  info.settings.get("endpoint", ""), caller, threads)
        owners = [o.strip() for o in info.settings.get("image_owners", "amazon,self").split(",") if o.strip()]
        catalog = h.Catalog(ec2, owners)
        # Fail now, with EC2's own words, on a wrong region, endpoint or credential.
        zones = await catalog.zones()
        if info.zone and info.zone not in zones:
            raise errors.InvalidArgument.field("region.zone", f"{info.zone!r} is not a zone of {info.region}: "
                                                              f"{', '.join(zones)}")
        vms = h.Vms(ec2, catalog, info.zone)
        return base.CloudConnection(
            provider="aws", region=info.region, image=catalog, spec=catalog, region_zone=catalog, price=None,
            vpc=h.Vpcs(ec2), security_group=h.SecurityGroups(ec2), key_pair=h.KeyPairs(ec2), vm=vms,
            disk=h.Disks(ec2, vms), close=ec2.close)
