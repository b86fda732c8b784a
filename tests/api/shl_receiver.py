"""A SMART Health Link receiving application, written from the specification
(https://docs.smarthealthit.org/smart-health-links/spec) and sharing nothing with the
gateway's code: it decodes the shlink:/ payload, sends the manifest request, takes each file
embedded or from its location, and decrypts the compact JWE ("alg": "dir", "enc": "A256GCM")
with the key from the payload, using the `cryptography` package's AES-GCM.

Usage: shl_receiver.py SHLINK RECIPIENT CAFILE [--passcode P] [--embedded-length-max N]

Prints one JSON object: {"payload": {...}, "files": [{"contentType", "header", "content",
"via"}]}. Exits non-zero, with the reason on stderr, when anything is not as the
specification says.
"""

import argparse
import base64
import json
import ssl
import sys
import urllib.request
import zlib

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def b64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def payload_of(link):
    # A viewer URL may come first, ending with '#'.
    if "#" in link:
        link = link.split("#", 1)[1]
    if not link.startswith("shlink:/"):
        sys.exit("not a shlink:/ link")
    payload = json.loads(b64url(link[len("shlink:/"):]))
    if payload.get("v", 1) != 1:
        sys.exit("unsupported SHLink version")
    if len(payload["url"]) > 128:
        sys.exit("the manifest URL is longer than 128 characters")
    if len(payload["key"]) != 43 or len(b64url(payload["key"])) != 32:
        sys.exit("the key is not 32 bytes, base64url")
    if "U" in payload.get("flag", ""):
        sys.exit("this receiver does not do direct-file (U) links")
    return payload


def decrypt(jwe, key):
    protected, encrypted_key, iv, ciphertext, tag = jwe.split(".")
    header = json.loads(b64url(protected))
    if header.get("alg") != "dir" or header.get("enc") != "A256GCM" or encrypted_key:
        sys.exit(f"not a direct A256GCM JWE: {header}")
    plain = AESGCM(key).decrypt(
        b64url(iv), b64url(ciphertext) + b64url(tag), protected.encode("ascii")
    )
    if header.get("zip") == "DEF":
        plain = zlib.decompress(plain, -15)
    return header, plain


def main():
    args = argparse.ArgumentParser()
    args.add_argument("shlink")
    args.add_argument("recipient")
    args.add_argument("cafile")
    args.add_argument("--passcode")
    args.add_argument("--embedded-length-max", type=int)
    a = args.parse_args()

    tls = ssl.create_default_context(cafile=a.cafile)
    payload = payload_of(a.shlink)
    key = b64url(payload["key"])
    request = {"recipient": a.recipient}
    if "P" in payload.get("flag", ""):
        if a.passcode is None:
            sys.exit("the link needs a passcode")
        request["passcode"] = a.passcode
    if a.embedded_length_max is not None:
        request["embeddedLengthMax"] = a.embedded_length_max
    manifest_request = urllib.request.Request(
        payload["url"],
        data=json.dumps(request).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(manifest_request, context=tls) as answer:
        if not answer.headers.get_content_type() == "application/json":
            sys.exit(f"manifest content-type {answer.headers.get_content_type()}")
        manifest = json.load(answer)

    files = []
    for f in manifest["files"]:
        if "embedded" in f:
            jwe, via = f["embedded"], "embedded"
            if a.embedded_length_max is not None and len(jwe) > a.embedded_length_max:
                sys.exit("an embedded file is longer than embeddedLengthMax")
        else:
            with urllib.request.urlopen(f["location"], context=tls) as answer:
                if answer.headers.get_content_type() != "application/jose":
                    sys.exit(f"file content-type {answer.headers.get_content_type()}")
                jwe, via = answer.read().decode("ascii"), "location"
        header, plain = decrypt(jwe, key)
        if header.get("cty") != f["contentType"]:
            sys.exit("the JWE's cty differs from the manifest's contentType")
        files.append(
            {
                "contentType": f["contentType"],
                "header": header,
                "content": json.loads(plain),
                "via": via,
                "location": f.get("location"),
            }
        )
    json.dump({"payload": payload, "files": files}, sys.stdout)


if __name__ == "__main__":
    main()
