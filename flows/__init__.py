"""Flow definitions only: order, transactions, pauses. The logic lives in tasks/ and acrvpc/."""
