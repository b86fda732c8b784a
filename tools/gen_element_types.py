#!/usr/bin/env python3
"""Print src/deid/element_types.rs from an unpacked hl7.fhir.r4.examples@4.0.1 package.

    npm pack hl7.fhir.r4.examples@4.0.1 && tar xzf hl7.fhir.r4.examples-4.0.1.tgz
    python3 tools/gen_element_types.py package > src/deid/element_types.rs

The table lists, for every type that the package defines (StructureDefinitions with kind
`resource`, `complex-type` or `primitive-type` and derivation `specialization`, plus the
abstract roots `Resource` and `Element`), each element path of its snapshot with its type.
Choice elements (`value[x]`) are expanded into one row per type (`valueString`, ...).
Rules, mirrored by the Rust test `element_types_match_the_package`:
- a type written as a FHIRPath system type (`http://hl7.org/fhirpath/System.String`) takes
  the FHIR type named by its `structuredefinition-fhir-type` extension;
- an element with a `contentReference` (`#Questionnaire.item`) records that reference;
- the `value` element of a primitive type (its FHIRPath value) is left out.
A second table, REPEATING, lists the element paths whose snapshot `max` is not 0 or 1 (they
are arrays in JSON even when an input writes a single object).
"""
import glob
import json
import os
import sys

FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
SYSTEM_PREFIX = "http://hl7.org/fhirpath/System."


def defines_type(sd):
    kind = sd.get("kind")
    if kind not in ("resource", "complex-type", "primitive-type"):
        return False
    return sd.get("derivation") == "specialization" or sd.get("type") in ("Resource", "Element")


def type_code(t):
    code = t["code"]
    if code.startswith(SYSTEM_PREFIX):
        for ext in t.get("extension", []):
            if ext.get("url") == FHIR_TYPE_EXT:
                return ext["valueUrl"]
        return code[len(SYSTEM_PREFIX):].lower()
    return code


def rows_of(sd):
    rows = []
    primitive = sd["kind"] == "primitive-type"
    for element in sd["snapshot"]["element"]:
        path = element["path"]
        if "." not in path:
            continue
        if primitive and path == sd["type"] + ".value":
            continue
        if "contentReference" in element:
            rows.append((path, element["contentReference"], False))
            continue
        codes = [type_code(t) for t in element.get("type", [])]
        if path.endswith("[x]"):
            stem = path[: -len("[x]")]
            for code in codes:
                rows.append((stem + code[0].upper() + code[1:], code, True))
        else:
            if len(codes) != 1:
                raise SystemExit(f"{path}: expected one type, found {codes}")
            rows.append((path, codes[0], False))
    return rows


def repeating_of(sd):
    return {
        element["path"]
        for element in sd["snapshot"]["element"]
        if "." in element["path"] and element.get("max", "1") not in ("0", "1")
    }


def main():
    package = sys.argv[1] if len(sys.argv) > 1 else "package"
    rows, resources, datatypes, primitives = set(), set(), set(), set()
    repeating = set()
    for path in glob.glob(os.path.join(package, "StructureDefinition-*.json")):
        with open(path, encoding="utf-8-sig") as f:
            sd = json.load(f)
        if not defines_type(sd):
            continue
        rows.update(rows_of(sd))
        repeating.update(repeating_of(sd))
        kind = sd["kind"]
        if kind == "resource" and not sd.get("abstract"):
            resources.add(sd["type"])
        elif kind == "complex-type":
            datatypes.add(sd["type"])
        elif kind == "primitive-type":
            primitives.add(sd["type"])

    print("//! FHIR R4 element types, generated from the official StructureDefinitions: do not edit.")
    print("//!")
    print("//! Source: the npm package `hl7.fhir.r4.examples@4.0.1`, every `StructureDefinition` that")
    print("//! defines a resource, complex or primitive type (derivation `specialization`, plus the")
    print("//! abstract roots `Resource` and `Element`), snapshot elements; choice elements expanded")
    print("//! (`value[x]` becomes `valueString`, `valueQuantity`, ...). Regenerate with")
    print("//! `python3 tools/gen_element_types.py PACKAGE_DIR > src/deid/element_types.rs`; the test")
    print("//! `element_types_match_the_package` checks this file against the package when the")
    print("//! environment variable CONSENTGATE_R4_EXAMPLES names it. Generated data, so it is exempt")
    print("//! from the file-length guideline.")
    print()
    print(f"/// `(element path, type, is a choice expansion)`, sorted by path; {len(rows)} rows.")
    print("/// A type starting with `#` is a content reference to another element's definition.")
    print("#[rustfmt::skip]")
    print("pub(super) static ELEMENT_TYPES: &[(&str, &str, bool)] = &[")
    for path, code, choice in sorted(rows):
        print(f'    ("{path}", "{code}", {"true" if choice else "false"}),')
    print("];")
    for name, doc, values in (
        ("DATATYPES", "Every complex datatype, abstract `Element` and `BackboneElement` included", datatypes),
        ("PRIMITIVE_TYPES", "Every primitive type", primitives),
        ("REPEATING", "Every element path whose cardinality allows more than one", repeating),
    ):
        print()
        print(f"/// {doc}, sorted; {len(values)} in all.")
        print("#[rustfmt::skip]")
        print(f"pub(super) static {name}: &[&str] = &[")
        for value in sorted(values):
            print(f'    "{value}",')
        print("];")


if __name__ == "__main__":
    main()
