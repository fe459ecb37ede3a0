"""SCRAM and PLAIN against the RFC test vectors (RFC 5802 §5, RFC 7677 §3)."""

from __future__ import annotations

import base64

import pytest

from bridge.xmpp.sasl import (
    SaslError,
    ScramCredentials,
    ScramServer,
    derive_credentials,
    parse_plain,
)

SECRET = b"s" * 32

# RFC 5802 §5: SCRAM-SHA-1, user "user", password "pencil".
SHA1 = {
    "mechanism": "SCRAM-SHA-1",
    "salt": "QSXCR+Q6sek8bf92",
    "server_nonce": "3rfcNHYJY1ZVvWVs7j",
    "client_first": "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
    "server_first": "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
    "client_final": "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
    "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
    "server_final": "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
}
# RFC 7677 §3: SCRAM-SHA-256, same user and password.
SHA256 = {
    "mechanism": "SCRAM-SHA-256",
    "salt": "W22ZaJ0SNY7soEsUEjb6gQ==",
    "server_nonce": "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    "client_first": "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
    "server_first": "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    "client_final": "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    "server_final": "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
}
VECTORS = [SHA1, SHA256]


def _server(vec: dict[str, str], password: str = "pencil") -> ScramServer:
    hash_name = "sha1" if vec["mechanism"] == "SCRAM-SHA-1" else "sha256"
    creds = derive_credentials(hash_name, password, base64.b64decode(vec["salt"]), 4096)

    def lookup(user: str) -> ScramCredentials | None:
        return creds if user == "user" else None

    return ScramServer(vec["mechanism"], lookup, vec["server_nonce"], SECRET)


@pytest.mark.parametrize("vec", VECTORS, ids=lambda v: v["mechanism"])
def test_rfc_vector_exchange(vec: dict[str, str]) -> None:
    server = _server(vec)
    assert server.first(vec["client_first"].encode()).decode() == vec["server_first"]
    assert server.username == "user"
    assert server.final(vec["client_final"].encode()).decode() == vec["server_final"]


@pytest.mark.parametrize("vec", VECTORS, ids=lambda v: v["mechanism"])
def test_wrong_password_is_not_authorized(vec: dict[str, str]) -> None:
    server = _server(vec, password="pencil2")
    server.first(vec["client_first"].encode())
    with pytest.raises(SaslError) as err:
        server.final(vec["client_final"].encode())
    assert err.value.condition == "not-authorized"


@pytest.mark.parametrize("vec", VECTORS, ids=lambda v: v["mechanism"])
def test_unknown_user_looks_like_a_known_one_then_fails(vec: dict[str, str]) -> None:
    server = _server(vec)
    first = server.first(vec["client_first"].replace("n=user", "n=nobody").encode())
    assert b",s=" in first and first.endswith(b",i=4096")
    # the fake salt is stable per user name, so probing twice reveals nothing
    again = _server(vec).first(vec["client_first"].replace("n=user", "n=nobody").encode())
    assert first.split(b",s=")[1] == again.split(b",s=")[1]
    with pytest.raises(SaslError) as err:
        server.final(vec["client_final"].encode())
    assert err.value.condition == "not-authorized"


@pytest.mark.parametrize(
    "client_first",
    [
        "p=tls-unique,,n=user,r=abc",  # channel binding not offered
        "x,,n=user,r=abc",
        "n,,r=abc",
        "n,,m=ext,n=user,r=abc",
        "n,,n=us=er,r=abc",
        "n,,n=user,r=a,b",
        "n,,n=,r=abc",
        "nonsense",
    ],
)
def test_malformed_client_first(client_first: str) -> None:
    with pytest.raises(SaslError) as err:
        _server(SHA256).first(client_first.encode())
    assert err.value.condition == "malformed-request"


def test_final_with_other_nonce_or_binding_is_refused() -> None:
    server = _server(SHA256)
    server.first(SHA256["client_first"].encode())
    bad_nonce = SHA256["client_final"].replace("k0,p=", "k1,p=")
    with pytest.raises(SaslError):
        server.final(bad_nonce.encode())
    server = _server(SHA256)
    server.first(SHA256["client_first"].encode())
    bad_cb = SHA256["client_final"].replace("c=biws", "c=eSws")  # "y,," instead of "n,,"
    with pytest.raises(SaslError):
        server.final(bad_cb.encode())


def test_saslname_escapes() -> None:
    seen = []

    def lookup(user: str) -> ScramCredentials | None:
        seen.append(user)
        return None

    ScramServer("SCRAM-SHA-1", lookup, "abc", SECRET).first(b"n,,n=a=2Cb=3Dc,r=xyz")
    assert seen == ["a,b=c"]


def test_plain() -> None:
    assert parse_plain(b"\x00alice\x00secret") == ("", "alice", "secret")
    assert parse_plain(b"alice@localhost\x00alice\x00pw") == ("alice@localhost", "alice", "pw")
    for bad in (b"alice\x00secret", b"\x00\x00pw", b"\x00a\x00", b"\xff\x00a\x00b"):
        with pytest.raises(SaslError):
            parse_plain(bad)
