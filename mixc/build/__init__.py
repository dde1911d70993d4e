"""Building: run a plan's stages through the cache (keys, locks, atomic commits), then write the
compiled output folder (streams, plan.json, mix.lock, report.md).
"""
