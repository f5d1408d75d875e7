"""Well-known values of the default sandbox world.

The sandbox's default scenario seeds the same values; the product's client factory holds its own copy
(:data:`acrvpc.cloud.clients.SANDBOX_ACCESS_KEY_ID` and friends, used when ``ACRVPC_SANDBOX_URL`` points at a
sandbox and no other credentials are given: it imports nothing of the sandbox) and a unit test holds the
copies equal. They are sandbox-only and not secret.
"""

ACCESS_KEY_ID = "LTAI5tSANDBOXKEY0001"
ACCESS_KEY_SECRET = "sandbox-secret-0123456789abcdef"
GITLAB_TOKEN = "glpat-sandbox-release-bot-0001"
