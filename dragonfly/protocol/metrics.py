"""The metrics every agent reports: groups and their fields (an alert rule may name only these)."""

from __future__ import annotations

GROUPS = ("cpu", "cpufreq", "memory", "disk", "diskio", "network")
# The fields of each group, as every source of the agent reports them.
FIELDS: dict[str, tuple[str, ...]] = {
    "cpu": ("utilization_percent", "user_percent", "system_percent", "idle_percent", "iowait_percent",
            "steal_percent", "cores"),
    "cpufreq": ("current_mhz", "max_mhz"),
    "memory": ("total_bytes", "used_bytes", "available_bytes", "utilization_percent"),
    "disk": ("total_bytes", "used_bytes", "free_bytes", "utilization_percent"),
    "diskio": ("read_bytes_per_second", "write_bytes_per_second", "read_ops_per_second", "write_ops_per_second"),
    "network": ("recv_bytes_per_second", "sent_bytes_per_second", "recv_packets_per_second",
                "sent_packets_per_second", "in_errors_per_second", "out_errors_per_second", "in_drops_per_second",
                "out_drops_per_second"),
}
