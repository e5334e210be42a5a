"""BIP 173 bech32 (not bech32m), as age uses for recipients and identities.

age allows strings longer than BIP 173's 90 characters, so there is no length cap here.
"""

from __future__ import annotations

from evidence_store.clip.errors import FormatError

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values: list[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            if (top >> i) & 1:
                chk ^= _GENERATOR[i]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: bytes | list[int], frombits: int, tobits: int, pad: bool) -> list[int]:
    acc = bits = 0
    out: list[int] = []
    maxv = (1 << tobits) - 1
    for value in data:
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (tobits - bits)) & maxv)
    elif bits >= frombits or ((acc << (tobits - bits)) & maxv):
        raise FormatError("bech32: invalid padding")
    return out


def encode(hrp: str, data: bytes) -> str:
    """Encode ``data`` under ``hrp`` (lower case). Upper-casing the result is the caller's choice."""
    hrp = hrp.lower()
    values = _convert_bits(data, 8, 5, True)
    polymod = _polymod(_hrp_expand(hrp) + values + [0] * 6) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[v] for v in values + checksum)


def decode(text: str) -> tuple[str, bytes]:
    """Return (hrp, data). Raises FormatError on mixed case, bad characters or checksum."""
    if text.lower() != text and text.upper() != text:
        raise FormatError("bech32: mixed case")
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text):
        raise FormatError("bech32: missing separator or checksum")
    hrp, rest = text[:pos], text[pos + 1 :]
    try:
        values = [_CHARSET.index(c) for c in rest]
    except ValueError:
        raise FormatError("bech32: invalid character") from None
    if _polymod(_hrp_expand(hrp) + values) != 1:
        raise FormatError("bech32: bad checksum")
    return hrp, bytes(_convert_bits(values[:-6], 5, 8, False))
