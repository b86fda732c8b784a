#!/usr/bin/env python3
"""Print, per sensitivity label, the LOINC document-type codes that policies/labels/ lists.

The codes come from the HL7 document type value set shipped in the npm package
hl7.fhir.r4.examples@4.0.1 (file package/ValueSet-c80-doc-typecodes.json), selected by the
display-name rules below. Each label file keeps them in a compose.include entry whose
`verifiedIn` names that file; the test `document_codes_match_the_package` checks them against
the package when CONSENTGATE_R4_EXAMPLES is set.

    npm pack hl7.fhir.r4.examples@4.0.1 && tar xzf hl7.fhir.r4.examples-4.0.1.tgz
    python3 tools/label_doc_codes.py package          # all labels
    python3 tools/label_doc_codes.py package PSY      # one label

Paste a label's list into the `concept` array of its document-type include, then review it:
the rules only propose candidates.
"""
import json
import os
import re
import sys

# Why each rule: a document of the kind named is about the sensitive topic as a whole.
RULES = {
    # Substance use treatment records (42 CFR Part 2).
    "ETH": r"substance abuse",
    # Psychiatry, psychology and mental-health documents of every kind.
    "PSY": r"psychiatr|psycholog|mental health|mental disorders|eating disorders",
    # Notes of an individual or group counselling session by a mental-health professional,
    # the HIPAA definition of a psychotherapy note (45 CFR 164.501).
    "PSYTHPN": r"^(Mental health|Psychiatry|Psychology) (Group )?counseling note$",
    # Documents about HIV care.
    "HIV": r"\bHIV\b",
    # Obstetrics and gynaecology, and pregnancy documents (not drug labels).
    "SEX": r"^(?!FDA ).*(Obstetrics and Gynecology|pregnan)",
    # Clinical genetics, genetic and cytogenetic analyses.
    "GDIS": r"genetic",
}


def main():
    package = sys.argv[1] if len(sys.argv) > 1 else "package"
    only = sys.argv[2:] or list(RULES)
    path = os.path.join(package, "ValueSet-c80-doc-typecodes.json")
    with open(path, encoding="utf-8-sig") as f:
        value_set = json.load(f)
    concepts = [
        c
        for include in value_set["compose"]["include"]
        if include.get("system") == "http://loinc.org"
        for c in include.get("concept", [])
    ]
    out = {}
    for label in only:
        rule = re.compile(RULES[label], re.IGNORECASE)
        picked = [{"code": c["code"], "display": c["display"]} for c in concepts if rule.search(c["display"])]
        out[label] = sorted(picked, key=lambda c: c["code"])
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
