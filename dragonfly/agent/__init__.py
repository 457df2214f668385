"""cb-agent: one program for real VMs and CloudTwin VMs (metrics, on-demand reads, commands)."""
