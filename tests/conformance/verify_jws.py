"""Verifies a compact JWS from postern with Python jwcrypto, an implementation independent of
postern's own, against the broker's published JWK Set.

    python verify_jws.py JWKS-FILE JWS-FILE TYP [ANSWER-JSON-FILE]

Checks: the protected header names ES256, the expected `typ` and a `kid` that the JWK Set
holds; jwcrypto verifies the signature with that key; with ANSWER-JSON-FILE (the JSON answer
the JWS came with, e.g. POST /v1/route) every member of the signed payload equals the answer's,
and the answer holds nothing else but `jws`. Then two forgeries must fail jwcrypto's
verification: the payload changed under the original signature, and the signature with one bit
flipped. Prints what it checked; exits 1 on the first failure.
"""

import base64
import json
import sys

from jwcrypto import jwk, jws
from jwcrypto.common import JWException


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def fail(msg: str) -> None:
    print(f"FAILED: {msg}")
    sys.exit(1)


def verify(compact: str, key) -> bytes:
    token = jws.JWS()
    token.deserialize(compact)
    token.verify(key)
    return token.payload


def must_fail(what: str, compact: str, key) -> None:
    try:
        verify(compact, key)
    except JWException as e:
        print(f"ok: {what} is refused ({type(e).__name__})")
        return
    fail(f"{what} verified")


def tampered_payload(payload: dict) -> dict:
    forged = dict(payload)
    if "transport" in forged:
        forged["transport"] = "block" if forged["transport"] != "block" else "rcs_e2ee"
    elif isinstance(forged.get("size"), int):
        forged["size"] += 1
    else:
        forged["forged"] = True
    return forged


def main() -> None:
    if len(sys.argv) not in (4, 5):
        fail(__doc__)
    jwks_file, jws_file, typ = sys.argv[1:4]
    answer = None
    if len(sys.argv) == 5:
        with open(sys.argv[4]) as f:
            answer = json.load(f)
    with open(jwks_file) as f:
        keyset = jwk.JWKSet.from_json(f.read())
    with open(jws_file) as f:
        compact = f.read().strip()

    parts = compact.split(".")
    if len(parts) != 3:
        fail(f"not a compact JWS: {len(parts)} parts")
    header = json.loads(unb64url(parts[0]))
    print(f"protected header: {json.dumps(header, sort_keys=True)}")
    if header.get("alg") != "ES256":
        fail(f"alg {header.get('alg')!r}, want ES256")
    if header.get("typ") != typ:
        fail(f"typ {header.get('typ')!r}, want {typ!r}")
    kid = header.get("kid")
    key = keyset.get_key(kid) if kid else None
    if key is None:
        known = [k.get("kid") for k in keyset["keys"]]
        fail(f"kid {kid!r} is not in the JWK Set {known}")
    print(f"ok: kid {kid} is in the JWK Set ({key.get('kty')} {key.get('crv')})")

    try:
        payload_bytes = verify(compact, key)
    except JWException as e:
        fail(f"jwcrypto does not verify the JWS: {e!r}")
    payload = json.loads(payload_bytes)
    print(f"ok: jwcrypto verifies the signature; payload: {json.dumps(payload, sort_keys=True)}")

    if answer is not None:
        rest = {k: v for k, v in answer.items() if k != "jws"}
        for k in sorted(set(payload) | set(rest)):
            if payload.get(k) != rest.get(k):
                fail(f"{k}: signed {payload.get(k)!r}, answered {rest.get(k)!r}")
        if "decisions" in payload:
            what = f"{len(payload['decisions'])} decisions, batch {payload.get('batch_id')!r}"
        else:
            what = f"transport {payload.get('transport')!r}, policy_version {payload.get('policy_version')!r}"
        print(f"ok: the signed payload equals the JSON answer ({what}, {len(payload)} members)")

    forged = b64url(json.dumps(tampered_payload(payload)).encode())
    must_fail("the payload changed under the original signature", f"{parts[0]}.{forged}.{parts[2]}", key)
    sig = bytearray(unb64url(parts[2]))
    sig[len(sig) // 2] ^= 0x01
    must_fail("the signature with one bit flipped", f"{parts[0]}.{parts[1]}.{b64url(bytes(sig))}", key)


if __name__ == "__main__":
    main()
