"""Ladybug: applications on an MCIS — versioned specs, rollouts, the quality loop, scaling."""
