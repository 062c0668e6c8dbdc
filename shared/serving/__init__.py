"""What every Serve deployment shares: caller errors, batching knobs, model placement.

No Serve import here: deployments (in `services/`) pass these plain values to Serve.
"""
