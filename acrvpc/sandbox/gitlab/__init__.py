"""GitLab REST v4 emulation (the calls the pipeline makes)."""
