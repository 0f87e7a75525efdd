"""Lightning: one more way to pay an invoice (same locked rate, same decision, same ledger).

`backend.py` is the small interface every node speaks (LND REST, Core Lightning's clnrest,
the offline demo node); the rest of the package builds on it.
"""
