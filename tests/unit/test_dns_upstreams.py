"""The node's resolvers the cluster DNS forwards to, read from a resolv.conf (worker/dns.py)."""

from __future__ import annotations

from worker.dns import node_upstreams, resolv_conf_upstreams

RESOLV_CONF = """\
# written by a DHCP client
search example.com
nameserver 10.0.0.2
nameserver 172.30.0.1
; a comment
nameserver   2001:db8::53
nameserver fe80::1%eth0
nameserver not-an-address
nameserver 10.0.0.2
nameserver
options ndots:2
"""


def test_the_nameservers_in_order_without_the_servers_own_address():
    assert resolv_conf_upstreams(RESOLV_CONF, ("172.30.0.1", 53)) == [("10.0.0.2", 53), ("2001:db8::53", 53)]


def test_the_own_address_on_another_port_is_another_resolver():
    assert ("172.30.0.1", 53) in resolv_conf_upstreams(RESOLV_CONF, ("172.30.0.1", 5353))


def test_an_unreadable_resolv_conf_gives_no_upstream(tmp_path):
    assert node_upstreams(("172.30.0.1", 53), str(tmp_path / "missing")) == []
    written = tmp_path / "resolv.conf"
    written.write_text(RESOLV_CONF)
    assert node_upstreams(("172.30.0.1", 53), str(written))[0] == ("10.0.0.2", 53)
