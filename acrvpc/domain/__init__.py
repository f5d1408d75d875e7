"""The domain: the spec, network logic, the API actions a spec needs and the RAM policy for them, stage outcomes.

Pure: no Prefect, no SDK, no I/O beyond the zone table shipped here (``zones.json``).
"""
