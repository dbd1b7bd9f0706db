"""Optional Laplace noise on published counts, the same for the same question every time.

Focus can obfuscate counts with Laplace noise (its ``epsilon`` setting) but not for its EUCAIM backends,
so the node does it. A fresh draw per request would let a client average repeated answers back to the
true count; here the noise is drawn from a seed keyed with the site secret over the question, so asking
again reveals nothing new and nobody without the secret can predict the noise. Noise is added to counts
that passed small-count suppression (suppression decides on the true count).
"""

from __future__ import annotations

import hashlib
import hmac
import math

SENSITIVITY = 1.0  # one individual more or less changes a subjects count by one


def laplace_noise(secret: bytes, question: str, scale: float) -> float:
    """A Laplace(0, ``scale``) draw determined by ``secret`` and ``question``."""
    digest = hmac.new(secret, f"eucaim-laplace\x00{question}".encode(), hashlib.sha256).digest()
    uniform = (int.from_bytes(digest[:8], "big") + 0.5) / 2**64 - 0.5  # in (-0.5, 0.5), never an end point
    return -scale * math.copysign(1.0, uniform) * math.log(1 - 2 * abs(uniform))


def obfuscated(count: int, secret: bytes, question: str, epsilon: float) -> int:
    """``count`` plus Laplace noise of scale sensitivity/epsilon, rounded, never below zero."""
    return max(0, round(count + laplace_noise(secret, question, SENSITIVITY / epsilon)))
