"""The single-use nonce hardway adds to ltiauthenticator's LTI 1.3 callback (the booted-host
test replays a real launch; these pin down how long a nonce is remembered)."""

from __future__ import annotations

from hardway_plugins.lti13_checks import HardwayLTI13Authenticator, NonceLedger, keep_until


def test_a_nonce_is_accepted_once_until_it_could_no_longer_pass():
    ledger = NonceLedger()
    assert ledger.claim("n1", keep_until=100.0, now=10.0) is True
    assert ledger.claim("n1", keep_until=100.0, now=50.0) is False  # replayed
    assert ledger.claim("n2", keep_until=100.0, now=50.0) is True
    # past its time the token fails exp/max_age upstream; the ledger may forget it
    assert ledger.claim("n3", keep_until=300.0, now=200.0) is True
    assert len(ledger) == 1


def test_kept_until_the_earlier_of_exp_and_max_age():
    assert keep_until({"iat": 1000, "exp": 1300}, max_age=600, leeway=0) == 1301
    assert keep_until({"iat": 1000, "exp": 9999}, max_age=600, leeway=5) == 1606


def test_the_authenticator_uses_the_checking_callback():
    auth = HardwayLTI13Authenticator()
    handlers = dict(auth.get_handlers(app=None))
    assert any(h.__name__ == "HardwayLTI13CallbackHandler" for h in handlers.values())
    assert isinstance(auth.used_nonces, NonceLedger)
