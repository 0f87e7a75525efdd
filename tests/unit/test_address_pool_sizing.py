"""How far ahead addresses are derived, and when a refill is due (pure functions)."""
from payments.address_pool import MAX_AHEAD, MIN_AHEAD, needs_refill, pool_size


def test_a_new_key_keeps_the_minimum_pool_and_a_busy_key_the_maximum():
    assert pool_size(0) == MIN_AHEAD
    assert pool_size(MIN_AHEAD + 5) == MIN_AHEAD + 5
    assert pool_size(10**9) == MAX_AHEAD


def test_a_refill_is_due_once_a_quarter_of_the_pool_is_used():
    size = pool_size(5_000)
    assert not needs_refill(5_000, 5_000 + size)
    assert not needs_refill(5_000, 5_000 + size * 3 // 4 + 1)
    assert needs_refill(5_000, 5_000 + size * 3 // 4)


def test_an_empty_or_overtaken_pool_is_due():
    assert needs_refill(0, 0)
    assert needs_refill(700, 500)  # the cursor moved past the pool (e.g. the demo seeder)
