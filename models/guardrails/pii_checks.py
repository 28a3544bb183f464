"""Checksums and validity rules that turn PII *candidates* into findings (few false positives).

>>> luhn_ok("4111 1111 1111 1111"), luhn_ok("4111 1111 1111 1112")
(True, False)
>>> card_ok("4111-1111-1111-1111"), card_ok("0000000000000000"), card_ok("1234567812345670")
(True, False, False)
>>> iban_ok("GB82 WEST 1234 5698 7654 32"), iban_ok("GB82 WEST 1234 5698 7654 33")
(True, False)
>>> ssn_ok("536-22-8726"), ssn_ok("666-22-8726"), ssn_ok("536-00-8726")
(True, False, False)
>>> nino_ok("AB 12 34 56 C"), nino_ok("BG 12 34 56 C"), nino_ok("DA123456C")
(True, False, False)
>>> es_dni_ok("12345678Z"), es_dni_ok("12345678A"), es_dni_ok("X1234567L")
(True, False, True)
"""

from __future__ import annotations

import re

__all__ = [
    "IBAN_LENGTHS",
    "card_ok",
    "digits_of",
    "es_dni_ok",
    "iban_ok",
    "luhn_ok",
    "nino_ok",
    "ssn_ok",
]

#: IBAN length by country (ISO 13616 registry); an unknown country is not an IBAN.
_IBAN_TABLE = (
    "AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 "
    "DK18 DO28 EE20 EG29 ES24 FI18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 HU28 "
    "IE22 IL23 IQ23 IS26 IT27 JO30 KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 MC27 MD24 "
    "ME22 MK19 MR27 MT31 MU30 NL18 NO15 PK24 PL28 PS29 PT25 QA29 RO24 RS22 SA24 SC31 "
    "SE24 SI19 SK24 SM27 ST25 SV28 TL23 TN24 TR26 UA29 VA22 VG24 XK20 "
)
IBAN_LENGTHS: dict[str, int] = {e[:2]: int(e[2:]) for e in _IBAN_TABLE.split()}
_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
_NINO_BAD_FIRST = set("DFIQUV")
_NINO_BAD_SECOND = set("DFIOQUV")
_NINO_BAD_PREFIX = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}
#: Numbers published as examples or never issued.
_SSN_BLOCKED = {"078051120", "219099999", "123456789"}


_NOT_DIGITS = re.compile(r"[^0-9]+")
#: A digit's value, and its Luhn value when doubled.
_VALUE = {str(d): d for d in range(10)}
_DOUBLED = {str(d): d * 2 - 9 if d > 4 else d * 2 for d in range(10)}


def digits_of(text: str) -> str:
    """The ASCII digits of ``text``, in order."""
    return _NOT_DIGITS.sub("", text)


def luhn_ok(text: str) -> bool:
    digits = digits_of(text)[::-1]  # from the check digit
    total = sum(map(_VALUE.__getitem__, digits[::2]))
    total += sum(map(_DOUBLED.__getitem__, digits[1::2]))
    return bool(digits) and total % 10 == 0


def _brand_ok(d: str) -> bool:
    """Issuer prefix and length of a known card brand (random ids rarely fit)."""
    n = len(d)
    two, four = int(d[:2]), int(d[:4])
    if d[0] == "4":  # Visa
        return n in (13, 16, 19)
    if 51 <= two <= 55 or 2221 <= four <= 2720:  # Mastercard
        return n == 16
    if two in (34, 37):  # American Express
        return n == 15
    if 300 <= int(d[:3]) <= 305 or two in (36, 38, 39):  # Diners Club
        return 14 <= n <= 19
    if d.startswith("6011") or two == 65 or 644 <= int(d[:3]) <= 649 or two == 62:
        return 16 <= n <= 19  # Discover, UnionPay
    if 3528 <= four <= 3589:  # JCB
        return 16 <= n <= 19
    return False


def card_ok(text: str) -> bool:
    """A payment card number: 13–19 digits, a known brand's prefix and length, Luhn-valid."""
    d = digits_of(text)
    return 13 <= len(d) <= 19 and len(set(d)) > 1 and _brand_ok(d) and luhn_ok(d)


def iban_ok(text: str) -> bool:
    """Country length from the registry and the ISO 7064 mod-97 check."""
    s = "".join(text.split()).upper()
    if IBAN_LENGTHS.get(s[:2]) != len(s) or not s[2:4].isdigit() or not s.isalnum():
        return False
    rearranged = s[4:] + s[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def ssn_ok(text: str) -> bool:
    """US SSN rules: area not 000, 666 or 9xx; group not 00; serial not 0000."""
    d = digits_of(text)
    if len(d) != 9 or d in _SSN_BLOCKED or len(set(d)) == 1:
        return False
    area, group, serial = d[:3], d[3:5], d[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def nino_ok(text: str) -> bool:
    """UK National Insurance number: allowed prefix letters, 6 digits, suffix A–D."""
    s = "".join(text.split()).upper()
    if len(s) != 9 or not s[:2].isalpha() or not s[2:8].isdigit() or s[8] not in "ABCD":
        return False
    first, second = s[0], s[1]
    return (
        first not in _NINO_BAD_FIRST
        and second not in _NINO_BAD_SECOND
        and s[:2] not in _NINO_BAD_PREFIX
    )


def es_dni_ok(text: str) -> bool:
    """Spanish DNI (8 digits + letter) or NIE (X/Y/Z + 7 digits + letter), mod-23 check letter."""
    s = text.replace("-", "").replace(" ", "").upper()
    if len(s) != 9 or not s[-1].isalpha():
        return False
    body = s[:-1]
    if body[0] in "XYZ":
        body = str("XYZ".index(body[0])) + body[1:]
    return body.isdigit() and _DNI_LETTERS[int(body) % 23] == s[-1]
