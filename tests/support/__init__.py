"""Every test helper: tiny bundles and catalogs, relays, fuzzing, worker processes."""
