"""MCIS: the desired state (service), how it is summarized (status), and how the
clouds are driven toward it (reconciler)."""
