#!/usr/bin/env python3
"""Print policies/terminology/v3-ActReason.json from an unpacked hl7.fhir.r4.examples@4.0.1 package.

    npm pack hl7.fhir.r4.examples@4.0.1 && tar xzf hl7.fhir.r4.examples-4.0.1.tgz
    python3 tools/gen_act_reason.py package > policies/terminology/v3-ActReason.json

The official file states its is-a hierarchy two ways, and both are kept:
- nesting: a concept listed inside another's `concept` array is its child;
- the `child` property: `{"code": "child", "valueCode": X}` on a concept makes X its child
  too (this is how the file gives a code a second parent, e.g. NORECMTCH under NOMATCH).
A `subsumedBy` or `parent` property, which this version does not use, is read as well so that
a later package cannot silently lose edges.

The output keeps, for every code, its display and its direct parents; abstract grouping codes
(`notSelectable`, e.g. `PurposeOfUse`, `_ActCoverageReason`) are kept and marked. The consent
module embeds the file and checks it against the package in a test when
CONSENTGATE_R4_EXAMPLES names the package directory.
"""
import json
import os
import sys

PACKAGE = "hl7.fhir.r4.examples@4.0.1"
FILE = "CodeSystem-v3-ActReason.json"


def main() -> None:
    package = sys.argv[1] if len(sys.argv) > 1 else "package"
    with open(os.path.join(package, FILE), encoding="utf-8-sig") as f:
        cs = json.load(f)
    if cs.get("resourceType") != "CodeSystem" or cs.get("hierarchyMeaning") != "is-a":
        sys.exit(f"{FILE}: expected a CodeSystem with hierarchyMeaning is-a")

    concepts = {}  # code -> {"display", "parents", "abstract", "retired"}, in file order

    def add_parent(code, parent):
        parents = concepts.setdefault(code, {"parents": []})["parents"]
        if parent not in parents:
            parents.append(parent)

    def walk(items, parent):
        for c in items:
            code = c["code"]
            entry = concepts.setdefault(code, {"parents": []})
            if "display" in entry:
                sys.exit(f"{FILE}: code {code} is defined twice")
            entry["display"] = c.get("display")
            entry["abstract"] = False
            entry["retired"] = False
            if parent is not None:
                add_parent(code, parent)
            for p in c.get("property", []):
                if p.get("code") == "notSelectable" and p.get("valueBoolean") is True:
                    entry["abstract"] = True
                elif p.get("code") == "status" and p.get("valueCode") == "retired":
                    entry["retired"] = True
                elif p.get("code") == "child":
                    add_parent(p["valueCode"], code)
                elif p.get("code") in ("subsumedBy", "parent"):
                    add_parent(code, p["valueCode"])
            walk(c.get("concept", []), code)

    walk(cs.get("concept", []), None)
    undefined = sorted(
        code for code, e in concepts.items() if "display" not in e
    ) + sorted({p for e in concepts.values() for p in e["parents"] if p not in concepts})
    if undefined:
        sys.exit(f"{FILE}: hierarchy names undefined codes: {undefined}")

    source = {
        "package": PACKAGE,
        "file": FILE,
        "url": cs.get("url"),
        "version": cs.get("version"),
        "hierarchyMeaning": cs.get("hierarchyMeaning"),
        "parentsFrom": "nested concept arrays, plus the child, subsumedBy and parent properties",
        "regenerate": "python3 tools/gen_act_reason.py PACKAGE_DIR > policies/terminology/v3-ActReason.json",
    }
    # One concept per line keeps a regenerated file reviewable as a diff.
    out = ["{", f'  "source": {json.dumps(source, ensure_ascii=False)},', '  "concepts": [']
    lines = []
    for code, e in concepts.items():
        row = {"code": code, "display": e["display"], "parents": e["parents"]}
        if e["abstract"]:
            row["abstract"] = True
        if e["retired"]:
            row["retired"] = True
        lines.append("    " + json.dumps(row, ensure_ascii=False))
    out.append(",\n".join(lines))
    out.append("  ]")
    out.append("}")
    print("\n".join(out))


if __name__ == "__main__":
    main()
