#!/usr/bin/env python3
"""Parse one message from stdin with Python's email package (a MIME parser
that is not ours) and print what the bounce tests check, as JSON.

Used by src/delivery/bounce/tests.rs: the bounce builder's output must read
the same to a real parser as it does to us (RFC 3464 / RFC 6522 structure,
header fields unfolded, no parser defects).
"""
import email
import email.policy
import json
import sys


def fields(message):
    # Every header field in order, unfolded, as [name, value] pairs.
    return [[name, str(value)] for name, value in message.items()]


def defects(message):
    found = [type(d).__name__ for d in message.defects]
    for name, value in message.items():
        found += [type(d).__name__ + " in " + name for d in getattr(value, "defects", ())]
    return found


def text_of(part):
    # 7bit/8bit content is the text itself (get_content() would re-decode
    # text parsed from a str as Latin-1); anything else is transfer-decoded.
    if str(part.get("Content-Transfer-Encoding", "7bit")).lower() in ("7bit", "8bit", "binary"):
        payload = part.get_payload()
        if isinstance(payload, str):
            return payload
        return payload.decode("utf-8", "replace")
    return part.get_content()


def describe(part):
    kind = part.get_content_type()
    out = {"content_type": kind, "fields": fields(part), "defects": defects(part)}
    if kind == "message/delivery-status":
        # The parser splits the body into blocks: per-message, then one per recipient.
        out["blocks"] = [fields(block) for block in part.get_payload()]
        for block in part.get_payload():
            out["defects"] += defects(block)
    elif kind == "message/rfc822":
        inner = part.get_payload()[0]
        out["message"] = {"fields": fields(inner), "body": text_of(inner)}
    else:
        out["text"] = text_of(part)
    return out


def main():
    raw = sys.stdin.buffer.read()
    try:
        # RFC 6532 headers are UTF-8: the bytes parser would read them as
        # undecodable ASCII, so valid UTF-8 is parsed as text.
        message = email.message_from_string(raw.decode("utf-8"), policy=email.policy.default)
    except UnicodeDecodeError:
        message = email.message_from_bytes(raw, policy=email.policy.default)
    parts = message.get_payload() if message.is_multipart() else []
    print(json.dumps({
        "content_type": message.get_content_type(),
        "params": dict(message.get_params() or []),
        "fields": fields(message),
        "defects": defects(message),
        "parts": [describe(p) for p in parts],
    }))


main()
