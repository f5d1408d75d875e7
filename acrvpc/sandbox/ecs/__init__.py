"""ECS 2014-05-26 emulation."""
