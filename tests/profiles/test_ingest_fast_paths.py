"""Shortcuts on the ingestion path give what the long way gives: IP truncation without the
ipaddress module for plain IPv4."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from profiles.ingest import truncate_ip


def _reference(raw: str) -> str | None:
    try:
        address = ipaddress.ip_address(raw.strip())
    except ValueError:
        return None
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


octet = st.one_of(
    st.integers(min_value=0, max_value=300).map(str),
    st.integers(min_value=0, max_value=99).map(lambda n: f"0{n}"),
    st.sampled_from(["", "a", "٣", " 1", "1 "]),
)


@given(parts=st.lists(octet, min_size=3, max_size=5), pad=st.sampled_from(["", " ", "\t"]))
def test_dotted_addresses_truncate_as_ipaddress_does(parts: list[str], pad: str) -> None:
    raw = pad + ".".join(parts) + pad
    assert truncate_ip(raw) == _reference(raw)


@given(raw=st.ip_addresses().map(str) | st.text(max_size=40))
def test_any_text_truncates_as_ipaddress_does(raw: str) -> None:
    assert truncate_ip(raw) == _reference(raw)


def test_examples() -> None:
    assert truncate_ip("198.51.100.77") == "198.51.100.0"
    assert truncate_ip("2001:db8:1234:5678::1") == "2001:db8:1234::"
    assert truncate_ip("01.2.3.4") is None
    assert truncate_ip("256.1.1.1") is None
