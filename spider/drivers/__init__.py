"""Cloud drivers: the interface (base), the entry-point registry, and the drivers."""
