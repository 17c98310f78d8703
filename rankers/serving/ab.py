"""A/B assignment: a stable hash of the user id decides the variant, so it is sticky.

The hash is SHA-256 of ``salt:user_id`` (not Python's ``hash``, which changes per process),
read as a fraction in [0, 1); users below ``share`` see the challenger. Changing the salt
reshuffles everyone; raising the share only moves champion users over, never back.
"""
from __future__ import annotations

import hashlib
from typing import Optional

CHAMPION = "champion"
CHALLENGER = "challenger"
VARIANTS = (CHAMPION, CHALLENGER)


def bucket(user_id: str, salt: str) -> float:
    """The user's fixed position in [0, 1)."""
    digest = hashlib.sha256(f"{salt}:{user_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def assign_variant(user_id: Optional[str], share: float, salt: str = "rankers-ab") -> str:
    """CHALLENGER for a ``share`` of user ids, CHAMPION otherwise (and for anonymous requests)."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"challenger_share must be in [0, 1], got {share}")
    if not user_id or share == 0.0:
        return CHAMPION
    return CHALLENGER if bucket(user_id, salt) < share else CHAMPION
