#!/usr/bin/env python3
"""List every coding the Synthea fixtures use, with where it occurs, to review the label value sets.

    python3 tools/fixture_codes.py [tests/fixtures/synthea]

Prints one line per (system, code): the display, then the resource types and elements that
carry it. The labeller's fixture test (src/labels/fixture_tests.rs) lists the resources these
codes make sensitive; re-run this when the fixtures change and update that list.
"""
import collections
import glob
import json
import os
import sys


def walk(value, path, resource_type, found):
    if isinstance(value, dict):
        if "resourceType" in value and path:
            resource_type, path = value["resourceType"], ""
        if isinstance(value.get("system"), str) and isinstance(value.get("code"), str):
            found[(value["system"], value["code"])].add((value.get("display"), f"{resource_type}.{path}"))
        for key, child in value.items():
            if key not in ("meta", "text", "resourceType"):
                walk(child, f"{path}.{key}" if path else key, resource_type, found)
    elif isinstance(value, list):
        for item in value:
            walk(item, path, resource_type, found)


def main():
    default = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "synthea")
    folder = sys.argv[1] if len(sys.argv) > 1 else default
    found = collections.defaultdict(set)
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        with open(path, encoding="utf-8-sig") as f:
            bundle = json.load(f)
        for entry in bundle.get("entry", []):
            resource = entry.get("resource", {})
            walk(resource, "", resource.get("resourceType", "?"), found)
    for (system, code), uses in sorted(found.items()):
        displays = sorted({d for d, _ in uses if d})
        places = sorted({p for _, p in uses})
        print(f"{system} | {code} | {' / '.join(displays)} | {', '.join(places)}")


if __name__ == "__main__":
    main()
