"""Container Registry 2018-12-01 emulation."""
