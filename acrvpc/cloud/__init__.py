"""Cloud access: the API clients (``clients``), the shared rate limits (``ratelimit``), call-level retries
(``callretry``) and error classification (``errors``).
"""
