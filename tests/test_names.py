"""names: the routing-key gate."""

from meshforge.names import valid_routing_key


def test_routing_key_validation():
    assert valid_routing_key("k7x2m9") and valid_routing_key("a") and valid_routing_key("a-b-" + "c" * 59)
    for bad in ("", "-a", "a-", "A", "a_b", "a" * 64, "a.b", "a\n", ".*", None, 7):
        assert not valid_routing_key(bad), bad


def test_split_host_port_is_the_one_parser_of_host_port():
    import pytest

    from meshforge.names import split_host_port

    assert split_host_port("a.b:80") == ("a.b", "80")
    assert split_host_port("[::1]:80") == ("::1", "80")
    assert split_host_port("10.0.0.1:") == ("10.0.0.1", "")  # the callers check the port
    for bad, why in [("::1:80", "in brackets"), ("[a]:80", "brackets are for IPv6"), ("x", "is not HOST:PORT"),
                     (":80", "is not HOST:PORT")]:
        with pytest.raises(ValueError, match=why):
            split_host_port(bad)
