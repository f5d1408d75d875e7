"""Well-known values of the default sandbox world.

The client factory (:mod:`acrvpc.cloud.clients`) uses these when ``ACRVPC_SANDBOX_URL`` points at a
sandbox and no other credentials are given. They are sandbox-only and not secret.
"""

ACCESS_KEY_ID = "LTAI5tSANDBOXKEY0001"
ACCESS_KEY_SECRET = "sandbox-secret-0123456789abcdef"
GITLAB_TOKEN = "glpat-sandbox-release-bot-0001"
