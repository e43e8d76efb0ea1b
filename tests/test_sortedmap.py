"""SortedMap: the same as a dict whose items are read in key order, whatever the order of changes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from meshforge.sortedmap import SortedMap


@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.one_of(st.none(), st.integers()))))
def test_sorted_map_behaves_like_a_dict_read_in_key_order(changes):
    m: SortedMap[int] = SortedMap([("d", 0)])
    ref = {"d": 0}
    for key, value in changes:
        before = m.copy()
        m.set(key, value)
        if value is None:
            ref.pop(key, None)
        else:
            ref[key] = value
        assert len(before) + (key in ref) - (before.get(key) is not None) == len(m)
    assert m.keys == sorted(ref) and m.values == [ref[k] for k in sorted(ref)]
    assert all(m.get(k) == v for k, v in ref.items()) and m.get("z") is None
