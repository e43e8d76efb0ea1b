"""names: the routing-key gate."""

from meshforge.names import valid_routing_key


def test_routing_key_validation():
    assert valid_routing_key("k7x2m9") and valid_routing_key("a") and valid_routing_key("a-b-" + "c" * 59)
    for bad in ("", "-a", "a-", "A", "a_b", "a" * 64, "a.b", "a\n", ".*", None, 7):
        assert not valid_routing_key(bad), bad
