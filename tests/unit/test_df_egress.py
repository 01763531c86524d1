"""The df.http egress policy's pure parts: which addresses are internal, allow-list syntax and matching, URL checks,
redaction, and the response envelope's text/base64 decision."""

from __future__ import annotations

import ipaddress
import re

import pytest

from howdah.df._egress import (
    Blocked,
    EgressError,
    EgressPolicy,
    body_of,
    check_addresses,
    check_url,
    domain_allowed,
    error_preview,
    parse_domains,
    redact_url,
    restricted,
)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1",
        "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "fd00:ec2::254",
        "::ffff:169.254.169.254", "::ffff:10.0.0.1", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1", "198.18.0.1",
    ],
)  # fmt: skip
def test_internal_addresses_are_restricted(address: str) -> None:
    assert restricted(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:93.184.216.34"])
def test_public_addresses_are_not(address: str) -> None:
    assert not restricted(ipaddress.ip_address(address))


def test_one_internal_address_among_the_answers_refuses_the_host() -> None:
    target = check_url("https://api.example.com/x", EgressPolicy())
    public, private = ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("10.0.0.7")
    assert check_addresses(target, [public], EgressPolicy()) == public
    with pytest.raises(Blocked, match=re.escape("'api.example.com' is in a restricted range")):
        check_addresses(target, [public, private], EgressPolicy())
    assert check_addresses(target, [private], EgressPolicy(allow_private=("10.0.0.0/8",))) == private
    assert check_addresses(target, [private], EgressPolicy(allow_private=("api.example.com",))) == private
    with pytest.raises(Blocked, match="Could not resolve"):
        check_addresses(target, [], EgressPolicy())


def test_pg_durables_domain_list_syntax_and_matching() -> None:
    domains = parse_domains(" api.github.com, *.Example.org ")
    assert domains == ("api.github.com", "*.example.org")
    assert domain_allowed("api.github.com", domains) and domain_allowed("a.b.example.org", domains)
    assert not domain_allowed("example.org", domains)  # the apex needs its own entry
    assert not domain_allowed("evilapi.github.com", domains) and not domain_allowed("xexample.org", domains)
    assert parse_domains("   ") == ()  # allows no host
    for bad in ("a.com,,b.com", "10.0.0.1", "https://a.com", "a.com:443", "*a.com", "a.com."):
        with pytest.raises(EgressError, match="http_allowed_domains"):
            parse_domains(bad)


def test_urls_are_checked_before_resolution() -> None:
    listed = EgressPolicy().with_domains("*.blob.example.net")
    with pytest.raises(Blocked, match="unsupported URL scheme"):
        check_url("file:///etc/passwd", EgressPolicy())
    with pytest.raises(Blocked, match="HTTPS is required"):
        check_url("http://a.example.com/", EgressPolicy(https_only=True))
    with pytest.raises(Blocked, match="bare IP addresses"):
        check_url("https://10.0.0.1/", listed)
    # one parse: the host is what the URL's authority says, not a name hidden after a backslash or in the path
    with pytest.raises(Blocked):
        check_url("https://evil.example\\@acct.blob.example.net/", listed)
    with pytest.raises(Blocked, match=re.escape("'evil.example' is not in the allowed endpoint list")):
        check_url("https://evil.example/acct.blob.example.net", listed)
    target = check_url("https://acct.blob.example.net/c?sig=1", listed)
    assert (target.host, target.port, target.literal) == ("acct.blob.example.net", 443, None)
    assert check_url("http://[::1]:8080/", EgressPolicy()).literal == ipaddress.ip_address("::1")


def test_urls_in_errors_are_redacted() -> None:
    redacted = redact_url("https://user:pw@acct.example.net/c/d?sv=2024&sig=SECRET&token#frag")
    assert redacted == "https://<redacted>@acct.example.net/c/d?sv=<redacted>&sig=<redacted>&<redacted>#<redacted>"
    assert "SECRET" not in redacted


def test_bodies_are_text_when_they_can_be_and_base64_otherwise() -> None:
    assert body_of(b'{"a": 1}', "application/json") == ('{"a": 1}', "text")
    assert body_of("é".encode("latin-1"), "text/plain; charset=iso-8859-1") == ("é", "text")
    assert body_of(b"plain", None) == ("plain", "text")  # no type: decided by the bytes
    assert body_of(b"\xff\xfe\x00", "application/octet-stream") == ("//4A", "base64")
    assert body_of(b"a\x00b", "application/octet-stream")[1] == "base64"  # text cannot hold NUL
    long = {"body": "x" * 2000, "encoding": "text"}
    assert error_preview(long).endswith("[truncated, 2000 characters total]")


def test_a_malformed_exemption_is_refused() -> None:
    with pytest.raises(EgressError, match="allow_private"):
        EgressPolicy(allow_private=("not a host!",))
