"""Known-answer vectors for the kkv-style records; the same values are printed in
docs/kkv-api.md §7, and this test checks the code and the document agree."""

from __future__ import annotations

from pathlib import Path

from bridge.core import crypto, kkv_records, pow

DOC = Path(__file__).resolve().parents[2] / "docs" / "kkv-api.md"

V = {
    "domain_pk": "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8",
    "client_pk": "29acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12c89794bc9322966dd7",
    "token": "0103a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
    "29acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12c89794bc9322966dd7"
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    "08000000006b49d278",
    "digest": "c10f2bddb5d15db3497bb4b232c8e13ec661dd31b269f0ae2e50e1879c104ecc",
    "token_sig": "52cb78170f429188589b6b88d520673aefa1140231d3bc432bd7772fb080d81a"
    "c901a22ed003a29b9c4bb5742af9171ee4d86c1ed6d44a34e3e97893ae6d2704",
    "client_x25519": "7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13",
    "server_x25519": "0faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f20",
    "exchange_sig": "c58d9dff3bc6feb8a61e263e92cb19102bb537786282d52d78f3046b234c9b08"
    "eaa26f436d4cec71b741449a82cf2d97bac3769200d0b35930761ddba388e60f",
    "shared": "9e004098efc091d4ec2663b4e9f5cfd4d7064571690b4bea97ab146ab9f35056",
    "key": "6d827d4452ef387f4b5f3431191d2e17400f32bc8be87bd7831a1bb14562ea63",
    "nonce": "8818f9907314ba4ef6d1f5f82f740b9aa865627d353265e2",
    "ciphertext": "13ebb4651d2831dc64c1b83d599033014dfc3aad104661aa40d2c3f5bd92",
}


def test_vectors_match_the_code():
    dpk, dsk = crypto.ed25519_keypair(bytes(range(32)))
    cpk, csk = crypto.ed25519_keypair(bytes(range(32, 64)))
    assert (dpk.hex(), cpk.hex()) == (V["domain_pk"], V["client_pk"])
    c = kkv_records.Challenge(dpk, cpk, b"\xaa" * 32, 8, 1_800_000_120)
    token = c.encode()
    assert token.hex() == V["token"]
    assert c.digest.hex() == V["digest"]
    assert kkv_records.sign_challenge(dsk, token).hex() == V["token_sig"]
    assert pow.solve_range(c.digest, 8, 0, 1 << 20) == 84
    cx, sx = b"\x11" * 32, b"\x22" * 32
    cxp, sxp = crypto.x25519_public(cx), crypto.x25519_public(sx)
    assert (cxp.hex(), sxp.hex()) == (V["client_x25519"], V["server_x25519"])
    signed = kkv_records.exchange_signed_bytes(token, 84, cxp)
    assert crypto.sign(csk, signed).hex() == V["exchange_sig"]
    session = b"\x33" * 16
    shared = crypto.x25519(cx, sxp)
    assert shared.hex() == V["shared"]
    key, nonce = kkv_records.session_keys(shared, session, cxp, sxp)
    assert (key.hex(), nonce.hex()) == (V["key"], V["nonce"])
    ct = crypto.aead_encrypt(key, nonce, b"envelope bytes", crypto.SIG_KKV_MESSAGE + session)
    assert ct.hex() == V["ciphertext"]


def test_vectors_are_the_documented_ones():
    text = "".join(DOC.read_text().split())  # the document wraps long hex over lines
    for name, value in V.items():
        assert value in text, f"{name} is not in docs/kkv-api.md"
