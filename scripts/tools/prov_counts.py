#!/usr/bin/env python3
"""Read a PROV-JSON document with the W3C PROV reference package for Python (`prov`) and print
the number of each element and relation it understood, as JSON. Used by the contract's tests to
check TOM's PROV-JSON export with an implementation that is not TOM's."""
import json
import sys

from prov.serializers.provjson import ProvJSONDecoder


def main() -> None:
    path = sys.argv[1]
    with open(path, encoding="utf-8") as f:
        # The PROV-JSON decoder alone: the serializer registry would also load the XML and RDF
        # serializers, which need packages this check does not.
        document = json.load(f, cls=ProvJSONDecoder)
    counts: dict[str, int] = {}
    for record in document.get_records():
        name = type(record).__name__  # ProvEntity, ProvUsage, ProvGeneration, ...
        counts[name] = counts.get(name, 0) + 1
    identifiers = sorted(str(r.identifier) for r in document.get_records() if r.is_element())
    print(json.dumps({"counts": counts, "elements": identifiers}, sort_keys=True))


if __name__ == "__main__":
    main()
