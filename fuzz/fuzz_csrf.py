"""Fuzz the CSRF token decoder and the form-body token extractor.

Targets: ``tokens.unmask_token``, ``tokens.verify_masked_token``, ``csrf.token_verdict`` and
``csrf.extract_form_token``. Properties:

* nothing raises, whatever the token, secret, content type or body;
* ``verify_masked_token`` is true only for a token that unmasks to exactly the secret's bytes:
  a token not made from the secret is never accepted (checked against an independent XOR);
* ``token_verdict`` is ``ok`` exactly when ``verify_masked_token`` is true;
* ``extract_form_token`` returns ``None`` or a ``str``, and ``None`` for any media type other than
  the two HTML form encodings.
"""

from __future__ import annotations

import base64
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import atheris

with atheris.instrument_imports():
    from sessionwarden import csrf, tokens

SECRET = tokens.new_csrf_secret()
SECRET_BYTES = base64.urlsafe_b64decode(SECRET + "=")
CONTENT_TYPES = (
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=XyZ",
    'multipart/form-data; boundary="a b"',
    "application/json",
    "text/plain",
    "",
)


def _independent_unmask(token: str) -> bytes | None:
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii") + b"==")
    except Exception:
        return None
    if len(raw) != 64:
        return None
    return bytes(a ^ b for a, b in zip(raw[:32], raw[32:], strict=True))


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 3)
    if mode == 0:  # raw text token
        token = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 200))
    elif mode == 1:  # 64 arbitrary bytes, canonically encoded: decodes, secret almost never
        token = tokens.b64e(fdp.ConsumeBytes(64).ljust(64, b"\0"))
    elif mode == 2:  # a real token with a few characters changed
        chars = list(tokens.mask_token(SECRET))
        for _ in range(fdp.ConsumeIntInRange(1, 4)):
            chars[fdp.ConsumeIntInRange(0, len(chars) - 1)] = chr(fdp.ConsumeIntInRange(32, 126))
        token = "".join(chars)
    else:  # mask bytes chosen by the input, made from ANOTHER secret
        mask = fdp.ConsumeBytes(32).ljust(32, b"\1")
        other = fdp.ConsumeBytes(32).ljust(32, b"\2")
        token = tokens.b64e(mask + bytes(a ^ b for a, b in zip(mask, other, strict=True)))
    secret = SECRET if fdp.ConsumeBool() else fdp.ConsumeUnicodeNoSurrogates(60)

    unmasked = tokens.unmask_token(token)
    if unmasked is not None and (not isinstance(unmasked, bytes) or len(unmasked) != 32):
        raise AssertionError("unmask_token returned something that is not 32 bytes")
    ok = tokens.verify_masked_token(token, secret)
    if ok:
        # a junk secret must never verify, unless it decodes canonically to the same bytes
        if secret != SECRET and tokens.b64d(secret) != unmasked:
            raise AssertionError("verified against a secret it was not made from")
        if _independent_unmask(token) != tokens.b64d(secret):
            raise AssertionError(f"accepted a token not made from the secret: {token!r}")
        if tokens.b64e(tokens.b64d(token) or b"") != token:
            raise AssertionError("accepted a non-canonical spelling")
    if (csrf.token_verdict(token, secret).ok) != ok:
        raise AssertionError("token_verdict disagrees with verify_masked_token")

    ctype = CONTENT_TYPES[fdp.ConsumeIntInRange(0, len(CONTENT_TYPES) - 1)]
    if fdp.ConsumeBool():
        ctype = fdp.ConsumeUnicodeNoSurrogates(80)
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    found = csrf.extract_form_token(ctype, body, "csrf_token")
    if found is not None and not isinstance(found, str):
        raise AssertionError("extract_form_token must return str or None")
    media = ctype.split(";", 1)[0].strip().lower()
    if found is not None and media not in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        raise AssertionError(f"token read from a {media!r} body")


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
