#!/usr/bin/env python3
"""Print src/records/resource_types.rs from an unpacked hl7.fhir.r4.examples@4.0.1 package.

    npm pack hl7.fhir.r4.examples@4.0.1 && tar xzf hl7.fhir.r4.examples-4.0.1.tgz
    python3 tools/gen_resource_types.py package > src/records/resource_types.rs
"""
import glob
import json
import os
import sys

package = sys.argv[1] if len(sys.argv) > 1 else "package"
types = []
for path in glob.glob(os.path.join(package, "StructureDefinition-*.json")):
    with open(path, encoding="utf-8-sig") as f:
        sd = json.load(f)
    if sd.get("kind") == "resource" and sd.get("derivation") == "specialization" and not sd.get("abstract"):
        types.append(sd["type"])
types.sort()

print("//! The FHIR R4 resource types, generated from the official StructureDefinitions.")
print("//!")
print("//! Source: the npm package `hl7.fhir.r4.examples@4.0.1`, every `StructureDefinition` with")
print("//! `kind = resource`, `derivation = specialization` and `abstract = false`. Regenerate with")
print("//! `python3 tools/gen_resource_types.py PACKAGE_DIR > src/records/resource_types.rs`; the test")
print("//! `resource_types_match_the_package` checks the list against the package when it is present.")
print()
print(f"/// Every concrete resource type of FHIR R4 (4.0.1), sorted, {len(types)} in all.")
print("pub const R4_RESOURCE_TYPES: &[&str] = &[")
for t in types:
    print(f'    "{t}",')
print("];")
