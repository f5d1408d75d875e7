"""Deployment-specific code (the GitLab webhook receiver lands here)."""
