"""VPC 2016-04-28 emulation."""
