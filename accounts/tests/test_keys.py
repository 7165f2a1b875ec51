"""accounts.keys on its own: networks, hashing, the bound on keys under concurrent requests."""

import ipaddress
import threading

import pytest
from django.db import close_old_connections
from hypothesis import given, settings
from hypothesis import strategies as st

from accounts import keys
from accounts.models import ApiKey, User
from quantumtrades.core.errors import InvalidInput

ipv4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
ipv6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)
networks = st.one_of(
    st.tuples(ipv4, st.integers(0, 32)).map(lambda a: ipaddress.ip_network(f"{a[0]}/{a[1]}", strict=False)),
    st.tuples(ipv6, st.integers(0, 128)).map(lambda a: ipaddress.ip_network(f"{a[0]}/{a[1]}", strict=False)),
)


@settings(max_examples=200, deadline=None)
@given(network=networks, address=st.one_of(ipv4, ipv6))
def test_an_address_is_allowed_exactly_when_it_lies_in_an_allowed_network(network, address):
    key = ApiKey(allowed_ips=keys.normalise_networks([str(network)]))
    # An IPv4 client seen as IPv6 (::ffff:a.b.c.d) is matched as the IPv4 address it is
    # (the test after this one).
    client = address.ipv4_mapped if address.version == 6 and address.ipv4_mapped else address

    assert keys.address_allowed(key, str(address)) == (client.version == network.version and client in network)


@settings(max_examples=100, deadline=None)
@given(network=networks)
def test_a_normalised_network_is_the_same_network(network):
    [normalised] = keys.normalise_networks([network.with_prefixlen])

    assert ipaddress.ip_network(normalised) == network


def test_an_ipv4_client_seen_as_ipv6_mapped_is_matched_as_ipv4():
    key = ApiKey(allowed_ips=keys.normalise_networks(["203.0.113.0/24"]))

    assert keys.address_allowed(key, "::ffff:203.0.113.9")
    assert not keys.address_allowed(key, "::ffff:198.51.100.9")
    assert not keys.address_allowed(key, None)
    assert not keys.address_allowed(key, "not an address")


def test_the_client_address_honours_num_proxies(settings):
    assert keys.client_address("10.0.0.2", "203.0.113.5") == "10.0.0.2"
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    assert keys.client_address("10.0.0.2", "203.0.113.5") == "203.0.113.5"
    assert keys.client_address("10.0.0.2", "198.51.100.1, 203.0.113.5") == "203.0.113.5"
    assert keys.client_address("10.0.0.2", None) == "10.0.0.2"


@pytest.mark.django_db
def test_a_key_is_found_by_its_secret_and_only_by_it():
    user = User.objects.create_user(username="alice", password="x")
    key, secret = keys.api_key_create(user=user, name="bot", scopes=["read", "trade"])

    assert keys.api_key_authenticate(secret, "127.0.0.1") == key
    prefix, rest = secret.split(".")
    for wrong in [f"{prefix}.{rest[::-1]}", f"{prefix}.", prefix, f"x{secret}", secret.upper()]:
        with pytest.raises(keys.KeyRefused):
            keys.api_key_authenticate(wrong, "127.0.0.1")
    with pytest.raises(InvalidInput):
        keys.api_key_create(user=user, name="   ")


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_never_exceed_the_bound_on_keys():
    user = User.objects.create_user(username="alice", password="x")
    for n in range(keys.MAX_KEYS_PER_USER - 2):
        keys.api_key_create(user=user, name=f"k{n}")
    outcomes, start = [], threading.Barrier(6)

    def make():
        start.wait()
        try:
            keys.api_key_create(user=user, name="racer")
            outcomes.append("made")
        except InvalidInput:
            outcomes.append("refused")
        finally:
            close_old_connections()

    threads = [threading.Thread(target=make) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(outcomes) == ["made", "made", "refused", "refused", "refused", "refused"]
    assert ApiKey.objects.filter(user=user, revoked=False).count() == keys.MAX_KEYS_PER_USER
