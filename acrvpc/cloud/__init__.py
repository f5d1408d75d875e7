"""Cloud access: the API clients (``clients``), the shared rate limits (``ratelimit``), call-level retries
(``callretry``), error classification (``errors``), the pager of listings (``paging``) and the wait for a
resource to settle (``waiting``).
"""
