"""Operating the platform: deploying Serve configs, serve-config profiles, manifest checks,
the local broker, ports and processes. Used by the CLI, the tests and the benchmarks."""
