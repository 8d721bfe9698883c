"""Name-by-name HTTPS reporting: which name has a certificate, and Traefik's reason for
one that has none (lines as Traefik 3 writes them to the journal)."""

from __future__ import annotations

import datetime

from hardway import tls
from hardway.ops.https import NameState, covers, reasons

ACCOUNT = (
    'ERR Unable to obtain ACME certificate for domain error="cannot get ACME client acme: '
    'error: 403 :: POST :: https://127.0.0.1:14001/sign-me-up :: urn:ietf:params:acme:error:'
    'externalAccountRequired :: ACME server policy requires newAccount requests must '
    'include a value for the \'externalAccountBinding\' field" ACME CA=https://127.0.0.1:'
    '14001/dir domains=["eab.hardway.test","www.eab.hardway.test"] providerName=hardway.acme')
ONE_NAME = (
    'ERR Unable to obtain ACME certificate for domains error="unable to generate a '
    'certificate for the domains [hub.hardway.test bad.hardway.test]: error: one or more '
    'domains had a problem:\\n[bad.hardway.test] acme: error: 400 :: urn:ietf:params:acme:'
    'error:dns :: DNS problem: NXDOMAIN looking up A for bad.hardway.test\\n" '
    'domains=["hub.hardway.test","bad.hardway.test"] providerName=hardway.acme')


def test_a_failed_order_blames_only_the_name_the_ca_refused():
    got = reasons(f"INF Starting\n{ONE_NAME}\n", ["hub.hardway.test", "bad.hardway.test"])
    assert list(got) == ["bad.hardway.test"]
    assert got["bad.hardway.test"].startswith("acme: error: 400 :: urn:ietf:params:acme:"
                                              "error:dns :: DNS problem: NXDOMAIN")
    assert "\\n" not in got["bad.hardway.test"]


def test_an_account_failure_concerns_every_name_of_the_order():
    got = reasons(ACCOUNT, ["eab.hardway.test", "www.eab.hardway.test", "other.test"])
    assert set(got) == {"eab.hardway.test", "www.eab.hardway.test"}
    assert "externalAccountRequired" in got["eab.hardway.test"]


def test_lines_that_are_not_acme_failures_give_no_reason():
    assert reasons('INF Configuration loaded domains=["a.test"]\n', ["a.test"]) == {}


def test_a_certificate_covers_its_names_and_one_label_of_a_wildcard():
    assert covers(("hub.example.edu",), "HUB.example.edu")
    assert covers(("*.example.edu",), "lab.example.edu")
    assert not covers(("*.example.edu",), "a.lab.example.edu")
    assert not covers(("*.example.edu",), "example.edu")
    assert not covers(("hub.example.edu",), "www.hub.example.edu")


def served(*names: str, issuer: str = "Pebble Intermediate CA 1") -> tls.Served:
    return tls.Served(names, issuer, datetime.datetime(2030, 1, 2, tzinfo=datetime.UTC))


def test_a_name_the_served_certificate_does_not_cover_is_not_called_issued():
    old = served("hub.hardway.test")  # the certificate from before the name was added
    assert NameState("hub.hardway.test", old).line().startswith(
        "hub.hardway.test: issued by Pebble Intermediate CA 1, expires 2030-01-02")
    bad = NameState("bad.hardway.test", old, "acme: error: 400 :: dns")
    assert not bad.issued
    assert bad.line() == "bad.hardway.test: not issued: Traefik says: acme: error: 400 :: dns"
    assert NameState("new.test", old).line() == (
        "new.test: not issued: the certificate served for it names only hub.hardway.test")
    assert NameState("new.test", served("new.test", issuer=tls.TRAEFIK_PLACEHOLDER)).line() \
        == "new.test: not issued yet (Traefik serves its placeholder)"


#: the form Traefik 3.7's lego writes (a name Pebble's DNS answered SERVFAIL for)
BRACKETED = (
    '2026-11-29T01:16:42Z ERR Unable to obtain ACME certificate for domains error="unable '
    'to generate a certificate for the domains [bad.lab.hardway.test]: resolver: one or '
    'more domains had a problem: [bad.lab.hardway.test: invalid authorization: acme: '
    'error: 400 :: urn:ietf:params:acme:error:malformed :: Could not resolve URL '
    '\\"bad.lab.hardway.test\\"]" ACME CA=https://127.0.0.1:14000/dir '
    'domains=["lab.hardway.test","bad.lab.hardway.test"] providerName=hardway.acme')


def test_the_bracketed_form_gives_the_names_own_reason():
    got = reasons(BRACKETED, ["lab.hardway.test", "bad.lab.hardway.test"])
    assert got == {"bad.lab.hardway.test": (
        'invalid authorization: acme: error: 400 :: urn:ietf:params:acme:error:malformed '
        ':: Could not resolve URL "bad.lab.hardway.test"')}
