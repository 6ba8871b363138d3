"""Ed25519 signing and verification: PyNaCl (libsodium) against ``cryptography``.

``python -m tests.unit.crypto_bench`` prints operations per second on one core for
a 200-byte message; ``consensus.crypto`` uses the faster library on the hot path.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import nacl.signing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consensus import crypto

MESSAGE = os.urandom(200)
ROUNDS = 5_000


def per_second(operation: Callable[[], object]) -> float:
    start = time.perf_counter()
    for _ in range(ROUNDS):
        operation()
    return ROUNDS / (time.perf_counter() - start)


def main() -> None:
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    signature = key.sign(MESSAGE)
    print(f"cryptography   sign {per_second(lambda: key.sign(MESSAGE)):>9,.0f}/s   "
          f"verify {per_second(lambda: public.verify(signature, MESSAGE)):>9,.0f}/s")

    nacl_key = nacl.signing.SigningKey.generate()
    nacl_signature = nacl_key.sign(MESSAGE).signature
    verify_key = nacl_key.verify_key
    print(f"pynacl         sign {per_second(lambda: nacl_key.sign(MESSAGE)):>9,.0f}/s   "
          f"verify {per_second(lambda: verify_key.verify(MESSAGE, nacl_signature)):>9,.0f}/s")

    signer = crypto.Signer(bytes(nacl_key))
    domain_signature = signer.sign(chain_id="bench", kind=crypto.KIND_TX, message=MESSAGE)
    print(f"consensus.crypto sign {per_second(lambda: signer.sign(chain_id='bench', kind=crypto.KIND_TX, message=MESSAGE)):>7,.0f}/s   "
          f"verify {per_second(lambda: crypto.verify(signer.public_key, domain_signature, chain_id='bench', kind=crypto.KIND_TX, message=MESSAGE)):>9,.0f}/s")


if __name__ == "__main__":
    main()
