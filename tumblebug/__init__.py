"""Tumblebug: multi-cloud infrastructure services (MCIS) over spider."""
