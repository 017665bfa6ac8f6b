#!/usr/bin/env python3
"""Summarise Fabric blocks as a peer committed them.

    fabric-blocks.py BLOCK.json...   (blocks decoded by `configtxlator proto_decode --type common.Block`)

Prints one JSON object per endorser transaction: block number, tx id, chaincode, the peer's
validation code (from the block's TRANSACTIONS_FILTER metadata, which only a peer writes), the
MSP ids of its endorsers, the chaincode event's name and the chaincode response status.
"""
import base64
import json
import sys

VALIDATION = {0: "VALID", 11: "MVCC_READ_CONFLICT", 10: "ENDORSEMENT_POLICY_FAILURE"}
ENDORSER_TRANSACTION = 3


def mspid_of(endorser):
    """The mspid of a SerializedIdentity, decoded by configtxlator or still base64 bytes."""
    if isinstance(endorser, dict):
        return endorser.get("mspid")
    raw = base64.b64decode(endorser)
    # field 1 (mspid), wire type 2: tag 0x0a, varint length, bytes
    if not raw or raw[0] != 0x0A:
        return None
    length, shift, i = 0, 0, 1
    while True:
        b = raw[i]
        length |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            break
        shift += 7
    return raw[i : i + length].decode()


for path in sys.argv[1:]:
    block = json.load(open(path))
    number = int(block["header"]["number"])
    flags = base64.b64decode(block["metadata"]["metadata"][2] or "")
    for index, envelope in enumerate(block["data"]["data"]):
        header = envelope["payload"]["header"]["channel_header"]
        if int(header.get("type", 0)) != ENDORSER_TRANSACTION:
            continue
        for action in envelope["payload"]["data"]["actions"]:
            payload = action["payload"]
            response = payload["action"]["proposal_response_payload"]
            extension = response.get("extension") or {}
            events = extension.get("events") or {}
            spec = payload["chaincode_proposal_payload"]["input"]["chaincode_spec"]
            code = flags[index] if index < len(flags) else None
            print(json.dumps({
                "block": number,
                "tx_id": header["tx_id"],
                "chaincode": spec["chaincode_id"]["name"],
                "function": base64.b64decode(spec["input"]["args"][0]).decode(errors="replace") if spec["input"].get("args") else None,
                "validation": VALIDATION.get(code, str(code)),
                "endorsers": sorted(mspid_of(e["endorser"]) for e in payload["action"]["endorsements"]),
                "event": events.get("event_name"),
                "status": (extension.get("response") or {}).get("status"),
            }))
