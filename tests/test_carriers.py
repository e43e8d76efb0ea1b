"""carriers: the baggage member's name is compared decoded, as propagators read it; the routing patterns
(Istio, Gateway API) accept a subset of what the reference decodes to the key, the edge patterns a superset."""

from __future__ import annotations

import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from meshforge.carriers import SPACES, any_member_regex, baggage_regex, decoded, is_key_member, key_from_baggage

BK = "meshforge-routing-key"


def _encoded_char(draw, c: str) -> str:
    form = draw(st.sampled_from(["as is", "upper", "lower"]))
    return c if form == "as is" else f"%{ord(c):02X}" if form == "upper" else f"%{ord(c):02x}"


@st.composite
def encoded_names(draw, blanks_only: bool = False):
    """The routing-key member's name as a propagator would still decode it to BK."""
    name = "".join(_encoded_char(draw, c) for c in BK)
    spaces = [" ", "\t"] if blanks_only else list(SPACES)

    def pad() -> str:
        out = ""
        for ws in draw(st.lists(st.sampled_from(spaces), max_size=3)):
            how = draw(st.sampled_from(["raw", "encoded", "plus"] if ws == " " else ["raw", "encoded"]))
            if how == "raw" and ws not in (" ", "\t") and blanks_only:
                how = "encoded"
            out += "+" if how == "plus" else ws if how == "raw" else "".join(f"%{b:02X}" for b in ws.encode())
        return out

    return pad() + name + pad()


@settings(max_examples=300)
@given(encoded_names(), st.lists(st.sampled_from(["a=1", "b=x;p", "tenant=acme"]), max_size=3), st.integers(0, 3))
def test_the_edge_pattern_finds_every_encoding_of_the_member(name, others, at):
    member = f"{name}=pay-pr-2"
    assert decoded(name) == BK and is_key_member(member, BK)
    members = list(others)
    members.insert(min(at, len(members)), member)
    assert re2.compile(any_member_regex(BK)).fullmatch(",".join(members))


@settings(max_examples=300)
@given(encoded_names(blanks_only=True), st.lists(st.sampled_from(["a=1", "b=x;p", "tenant=acme"]), max_size=3),
       st.integers(0, 3), st.sampled_from(["k7x2m9", "k7x2m9x", "k7x2m", "other"]))
def test_the_routing_pattern_agrees_with_the_reference_on_blank_padded_encodings(name, others, at, value):
    members = list(others)
    members.insert(min(at, len(members)), f"{name}={value}")
    joined = ",".join(members)
    matched = re2.compile(baggage_regex(BK, "k7x2m9")).fullmatch(joined) is not None
    assert matched == (key_from_baggage([joined], BK) == "k7x2m9"), joined


@given(st.text(alphabet="abmeshforgtuinky-%+=,; \t2D0k7x", max_size=60))
def test_a_routing_pattern_match_is_the_reference_s_key(text):
    """(With the member once: given twice, the reference takes the first and a pattern any.)"""
    once = sum(is_key_member(m, BK) for m in text.split(",")) == 1
    if once and re2.compile(baggage_regex(BK, "k7x2m9")).fullmatch(text):
        assert key_from_baggage([text], BK) == "k7x2m9", text


def test_names_that_only_look_alike_are_not_the_member():
    for member in ("meshforge-routing-key%3D=k", "xmeshforge-routing-key=k", "meshforge%2Drouting%2Dkey-x=k",
                   "meshforge-routing-key", "a=meshforge-routing-key=k", "a=1;meshforge-routing-key=k"):
        assert not is_key_member(member, BK), member


def test_the_largest_patterns_fit_istio_s_limit():
    """Istio's validation refuses a regex longer than 1024 characters; the schema's longest baggage key (64
    characters, each encodable) and the longest routing key still fit."""
    longest = "z" * 64
    assert len(baggage_regex(longest, "k" * 63)) <= 1024 and len(any_member_regex(longest)) <= 1024
