#!/usr/bin/env python3
"""A walkthrough of consentgate's three flows against a running gateway.

Start the gateway on the embedded default in one shell (from the repository root):

    cargo run --release -- serve

and run this in another (it needs PyJWT and cryptography: pip install pyjwt cryptography):

    python3 scripts/walkthrough.py

It loads the Synthea fixtures, then plays the patient, a clinician, a researcher and a
disability assessor. Each client is registered with only its public key and signs its own
SMART Backend Services assertions, as real client software would. Tokens for the patient and
the operator come from `consentgate token ...` (the development issuer).
"""

import base64
import glob
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

try:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
except ImportError:
    sys.exit("this walkthrough needs PyJWT and cryptography: pip install pyjwt cryptography")

BASE = os.environ.get("CG_BASE", "https://localhost:8443")
CA = os.environ.get("CG_CA", "data/tls/dev-cert.pem")
BIN = os.environ.get("CG_BIN", "target/release/consentgate")
# The repository's own copy, found from this file so the walkthrough runs from any folder.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.environ.get("CG_FIXTURES", os.path.join(ROOT, "tests", "fixtures", "synthea"))
PATIENT = "d88f994a-5efa-421d-9c40-5f116d2114a6"  # Carolee Sanford, a Synthea patient

TLS = ssl.create_default_context(cafile=CA)


def say(text):
    print(f"\n== {text}")


def call(method, path, token=None, body=None, form=None, content_type="application/json", raw=False):
    """One HTTPS request; returns (status, headers, parsed body or bytes)."""
    url = path if path.startswith("http") else BASE + path
    data, headers = None, {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = content_type
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, context=TLS) as response:
            payload = response.read()
            status, hdrs = response.status, {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as error:
        payload, status, hdrs = error.read(), error.code, {k.lower(): v for k, v in error.headers.items()}
    if raw:
        return status, hdrs, payload
    try:
        return status, hdrs, json.loads(payload) if payload else None
    except ValueError:
        return status, hdrs, payload.decode(errors="replace")


def cli_token(*args):
    return subprocess.run([BIN, "token", *args], check=True, capture_output=True, text=True).stdout.strip()


class Client:
    """A recipient's software: its own key pair, registered by its public JWKS only."""

    def __init__(self, operator, role, acts_as):
        self.private = ec.generate_private_key(ec.SECP256R1())
        numbers = self.private.public_key().public_numbers()
        b64 = lambda n: base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()
        jwks = {"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "x": b64(numbers.x), "y": b64(numbers.y)}]}
        status, _, body = call("POST", "/api/v1/clients", operator, {
            "name": f"{role} app", "organization": f"{role} organisation", "role": role,
            "jwks": jwks, "acts_as": [acts_as]})
        assert status == 201, body
        self.id = body["id"]

    def token(self, purpose, justification=None):
        now = int(time.time())
        assertion = jwt.encode({"iss": self.id, "sub": self.id, "aud": BASE + "/oauth/token",
                                "exp": now + 240, "iat": now, "jti": str(uuid.uuid4())},
                               self.private, algorithm="ES256", headers={"kid": "k1"})
        form = {"grant_type": "client_credentials", "scope": "system/*.rs", "purpose_of_use": purpose,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion}
        if justification:
            form["justification"] = justification
        status, _, body = call("POST", "/oauth/token", form=form)
        assert status == 200, body
        return body["access_token"]


def consent(provision):
    return {"resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": f"Patient/{PATIENT}"},
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
            "provision": provision}


def permit(actor, purpose):
    return {"type": "permit",
            "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                       "reference": {"reference": actor}}],
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": purpose}]}


def count(bundle):
    return len(bundle.get("entry", [])) if isinstance(bundle, dict) else 0


def main():
    operator = cli_token("operator")
    patient = cli_token("patient", PATIENT)

    say("Loading the Synthea fixtures (organisations and practitioners first)")
    files = sorted(glob.glob(f"{FIXTURES}/hospital*.json")) + sorted(glob.glob(f"{FIXTURES}/practitioner*.json")) \
        + sorted(f for f in glob.glob(f"{FIXTURES}/*.json") if "Information" not in os.path.basename(f))
    for path in files:
        with open(path, "rb") as f:
            status, _, _ = call("POST", "/fhir", operator, f.read(), content_type="application/fhir+json")
        print(f"  {status}  {os.path.basename(path)}")

    say("Flow 1: a clinician with consent, then revoked")
    clinic = Client(operator, "clinician", "Organization/good-health")
    token = clinic.token("TREAT")
    status, _, bundle = call("GET", f"/fhir/Observation?patient={PATIENT}&_count=5", token)
    print(f"  before any consent, the clinician sees {count(bundle)} observations")
    status, _, created = call("POST", "/fhir/Consent", patient, consent(permit("Organization/good-health", "TREAT")),
                              content_type="application/fhir+json")
    print(f"  the patient consents to treatment by Good Health: Consent/{created['id']}")
    status, _, bundle = call("GET", f"/fhir/Observation?patient={PATIENT}&_count=5", token)
    print(f"  now the clinician sees a page of {count(bundle)} observations")
    call("POST", f"/fhir/Consent/{created['id']}/$revoke", patient)
    status, _, bundle = call("GET", f"/fhir/Observation?patient={PATIENT}&_count=5", token)
    print(f"  the patient revokes; the same token's very next search sees {count(bundle)}")

    say("Flow 2: a researcher exports de-identified data for a study")
    researcher = Client(operator, "researcher", "Group/study1")
    call("POST", "/fhir/Consent", patient, consent(permit("Group/study1", "HRESCH")), content_type="application/fhir+json")
    token = researcher.token("HRESCH")
    request = urllib.request.Request(BASE + "/fhir/Group/study1/$export",
                                     headers={"Authorization": f"Bearer {token}", "Prefer": "respond-async",
                                              "Accept": "application/fhir+json"})
    try:
        with urllib.request.urlopen(request, context=TLS) as response:
            status, location = response.status, response.headers.get("Content-Location")
    except urllib.error.HTTPError as error:
        status, location = error.code, None
    print(f"  kick-off: {status}, status at {location}")
    manifest = None
    for _ in range(120):
        if not location:
            break
        status, headers, body = call("GET", location, token)
        if status == 200:
            manifest = body
            break
        print(f"  ... {headers.get('x-progress', 'working')}")
        time.sleep(1)
    if manifest:
        for item in manifest.get("output", []):
            print(f"  {item['type']}: {item.get('count', '?')} resources")
        first = manifest["output"][0]
        status, _, ndjson = call("GET", first["url"], token, raw=True)
        line = json.loads(ndjson.decode().splitlines()[0])
        print(f"  a de-identified {line['resourceType']}: id {line['id']} (a pseudonym)")

    say("Flow 3: evidence for a disability claim, signed")
    assessor = Client(operator, "disability_assessor", "Organization/disability-agency")
    status, _, disclosure = call("POST", "/api/v1/disclosures", patient, {
        "recipient": assessor.id, "purpose": "CLMATTCH",
        "policy": "https://www.ssa.gov/forms/ssa-827.pdf",
        "selection": {"filter": {"types": ["Condition", "Procedure"], "since": "2015-01-01", "exclude_labels": ["PSYTHPN"]}},
        "expires": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 7 * 86400)),
        "max_retrievals": 3})
    print(f"  disclosure: {status} {disclosure.get('id') if status == 201 else disclosure}")
    if status == 201:
        token = assessor.token("CLMATTCH")
        status, headers, bundle_bytes = call("GET", f"/api/v1/disclosures/{disclosure['id']}/bundle", token, raw=True)
        jws = headers.get("x-jws-signature", "")
        header_b64, _, signature_b64 = jws.split(".")
        header = json.loads(base64.urlsafe_b64decode(header_b64 + "=="))
        _, _, jwks = call("GET", "/.well-known/jwks.json")
        key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
        public = ed25519.Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(key["x"] + "=="))
        signing_input = (header_b64 + "." + base64.urlsafe_b64encode(bundle_bytes).rstrip(b"=").decode()).encode()
        public.verify(base64.urlsafe_b64decode(signature_b64 + "=="), signing_input)
        bundle = json.loads(bundle_bytes)
        print(f"  the assessor fetched {len(bundle['entry'])} resources; the detached JWS verifies with the published JWKS")

    say("The patient's accounting of disclosures")
    status, _, log = call("GET", f"/api/v1/patients/{PATIENT}/access-log", patient)
    for item in (log.get("items") or log.get("disclosures") or [])[:10] if isinstance(log, dict) else []:
        print("  " + json.dumps({k: item.get(k) for k in ("date", "recipient", "purpose", "break_glass") if k in item}))
    status, _, checkpoint = call("GET", "/api/v1/audit/checkpoint")
    print("  signed checkpoint:\n    " + str(checkpoint).replace("\n", "\n    "))


if __name__ == "__main__":
    main()
