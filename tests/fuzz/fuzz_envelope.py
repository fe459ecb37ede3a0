"""Fuzz target for the envelope parser, the checks, opening and the record parsers.

    pip install atheris
    python tests/fuzz/fuzz_envelope.py [corpus_dir] [-max_total_time=60] [libFuzzer flags]
    python tests/fuzz/fuzz_envelope.py --seed-corpus DIR   # write the vectors as a corpus
    python tests/fuzz/fuzz_envelope.py --plain N           # without atheris: N mutated inputs

The property: whatever bytes arrive, only ``RemoteProtocolError`` subclasses
escape (the sender is at fault), never an ``IndexError``, ``ValueError``,
``struct.error``, a ``LocalProtocolError`` or a crash. The first input byte
picks how deep the rest goes:

    0  raw envelope      → check_envelope → open_envelope as Bob
    1  padded plaintext  → sealed under valid keys → open_envelope   (unpad, inner split)
    2  inner record      → padded, sealed → open_envelope            (recipient, sender, signature)
    3  signed inner      → a valid signature by Alice over a fuzzed payload → open + record parse
    4  record bytes      → every record parser, SignedPrekey.parse/verify, unpad

The same ``one_input`` runs under hypothesis in tests/unit/test_fuzz_core.py.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

try:
    import atheris
except ImportError:  # the plain loop below still works
    atheris = None

if atheris is not None and __name__ == "__main__":
    with atheris.instrument_imports(include=["bridge"]):
        from bridge.core import crypto, envelope, records, seal
        from bridge.core.checks import check_envelope
        from bridge.core.identity import Identity, SignedPrekey
else:
    from bridge.core import crypto, envelope, records, seal
    from bridge.core.checks import check_envelope
    from bridge.core.identity import Identity, SignedPrekey

from bridge.core.errors import RemoteProtocolError

NOW = 1_800_000_000
ALICE = Identity.from_seed(bytes.fromhex("a1" * 32))
BOB = Identity.from_seed(bytes.fromhex("b0" * 32))
BOB_KEYS = [seal.kex_key(BOB.x25519_secret)]
HEADER = envelope.signed_header(envelope.Kind.DIRECT, bytes(16), NOW + 3600)
EPHEMERAL_SECRET = bytes(range(0x40, 0x60))
EPHEMERAL = crypto.x25519_public(EPHEMERAL_SECRET)
_SHARED = crypto.x25519(EPHEMERAL_SECRET, BOB.x25519_public)
_KEY, _NONCE = seal.seal_keys(EPHEMERAL, BOB.x25519_public, _SHARED)


def seal_padded(padded: bytes, header: bytes = HEADER) -> envelope.Envelope:
    """An envelope to Bob whose AEAD opens to exactly ``padded`` (resized to a bucket)."""
    size = envelope.bucket_for(min(len(padded), envelope.PAD_BUCKETS[-1]))
    padded = padded[:size].ljust(size, b"\x00")
    ct = crypto.aead_encrypt(_KEY, _NONCE, padded, header + EPHEMERAL)
    return envelope.parse_envelope(envelope.assemble(header, EPHEMERAL, ct))


def _open_and_parse(env: envelope.Envelope) -> None:
    opened = seal.open_envelope(env, BOB.public, BOB_KEYS)
    records.parse_record(env.kind, opened.payload)


def _records(data: bytes) -> None:
    for kind in envelope.Kind:
        with contextlib.suppress(RemoteProtocolError):
            records.parse_record(kind, data)
    with contextlib.suppress(RemoteProtocolError):
        SignedPrekey.parse(data[:104]).verify(BOB.public, NOW)
    envelope.unpad(data[: envelope.PAD_BUCKETS[-1]])  # its contract: AEAD output, ≤ 64 KiB


def one_input(data: bytes) -> None:
    """The fuzz target: raises only RemoteProtocolError subclasses (callers catch those)."""
    if not data:
        return
    mode, rest = data[0] % 5, data[1:]
    if mode == 0:
        env = check_envelope(rest, now=NOW, base_bits=0)
        _open_and_parse(env)
    elif mode == 1:
        _open_and_parse(seal_padded(rest))
    elif mode == 2:
        if len(rest) > envelope.MAX_PLAINTEXT:
            return
        _open_and_parse(seal_padded(envelope.pad(rest)))
    elif mode == 3:
        kind = envelope.Kind(1 + (rest[0] % 4) if rest else 1)
        header = envelope.signed_header(kind, bytes(16), NOW + 3600)
        payload = rest[1 : 1 + seal.MAX_PAYLOAD]
        inner = seal.sign_inner(ALICE.secret_key, ALICE.public, BOB.public, header, EPHEMERAL,
                                payload)
        _open_and_parse(seal_padded(envelope.pad(inner), header))
    else:
        _records(rest)


def target(data: bytes) -> None:
    """atheris entry point: the protocol's own rejections are expected, nothing else."""
    with contextlib.suppress(RemoteProtocolError):
        one_input(data)


def seed_inputs() -> list[bytes]:
    """Valid inputs for every mode, from the known-answer vectors."""
    import json

    vectors = json.loads((Path(__file__).resolve().parents[2] / "docs" / "vectors"
                          / "core.json").read_text("utf-8"))
    out = []
    for name in ("first_contact", "to_prekey", "room", "announcement"):
        out.append(b"\x00" + bytes.fromhex(vectors["envelopes"][name]["envelope"]))
    payloads = [bytes.fromhex(r["encoded"]) for r in vectors["records"]]
    kinds = {"direct": 1, "room": 2, "announcement": 3, "receipt": 4}
    for r, p in zip(vectors["records"], payloads, strict=True):
        out.append(b"\x03" + bytes([kinds[r["kind"]] - 1]) + p)
        out.append(b"\x04" + p)
        out.append(b"\x02" + ALICE.public + BOB.public + bytes(64) + p)
    out.append(b"\x01" + envelope.pad(b"x" * 200))
    return out


def plain_loop(iterations: int, seed: int = 0) -> None:
    """Mutation fuzzing without atheris: flips, truncations and splices of the seeds."""
    rng = random.Random(seed)
    seeds = seed_inputs()
    for i in range(iterations):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 8)):
            op = rng.random()
            if op < 0.5 and len(data) > 1:
                data[rng.randrange(1, len(data))] ^= 1 << rng.randrange(8)
            elif op < 0.7:
                del data[rng.randrange(1, len(data) + 1):]
            elif op < 0.85:
                data += os.urandom(rng.randint(1, 40))
            elif len(data) > 2:
                at = rng.randrange(1, len(data))
                data[at:at] = rng.choice(seeds)[1 : 1 + rng.randint(1, 64)]
        data[0:1] = bytes([rng.randrange(5)]) if data else b""
        target(bytes(data))
        if i and i % 10_000 == 0:
            print(f"{i} inputs, no escape")
    print(f"{iterations} inputs, no escape")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--seed-corpus":
        corpus = Path(sys.argv[2])
        corpus.mkdir(parents=True, exist_ok=True)
        for i, data in enumerate(seed_inputs()):
            (corpus / f"seed-{i:03d}").write_bytes(data)
        print(f"wrote {len(seed_inputs())} inputs to {corpus}")
        return
    if len(sys.argv) == 3 and sys.argv[1] == "--plain":
        plain_loop(int(sys.argv[2]))
        return
    if atheris is None:
        print("atheris is not installed (pip install atheris); running the plain loop")
        plain_loop(20_000)
        return
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
