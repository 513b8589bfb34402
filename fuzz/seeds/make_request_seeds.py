#!/usr/bin/env python3
"""Writes the request_conversion seeds: a selector byte (the message kind,
as the target reads it) and a valid encoded request, one file each, so that
libFuzzer starts from requests the server accepts. Run from fuzz/."""
import os

def varint(n):
    n &= (1 << 64) - 1
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])

def key(field, wire):
    return varint(field << 3 | wire)

def s(field, text):
    b = text.encode()
    return key(field, 2) + varint(len(b)) + b

def v(field, n):
    return key(field, 0) + varint(n)

def msg(field, body):
    return key(field, 2) + varint(len(body)) + body

def ts(field, seconds, nanos=0):
    return msg(field, v(1, seconds) + (v(2, nanos) if nanos else b""))

def packed(field, values):
    body = b"".join(varint(x) for x in values)
    return key(field, 2) + varint(len(body)) + body

seeds = {
    "issue_card": b"\x00" + s(1, "demo-hotel") + s(2, "req-1") + s(3, "guest-1")
        + s(5, "room-101") + s(5, "lobby") + ts(7, 1904745600) + ts(8, 1905091200)
        + s(9, "stay-1") + packed(11, [2]),
    "issue_pin": b"\x00" + s(1, "demo-hotel") + s(3, "staff-7") + s(4, "Ada")
        + s(6, "suite-301") + ts(7, 1904745600, 500000000) + ts(8, 1905091200)
        + v(10, 2) + packed(11, [1, 2, 1]) + s(12, "4821"),
    "revoke_key": b"\x01" + s(1, "demo-hotel") + s(2, "req-2") + s(3, "01JKEY"),
    "revoke_reservation": b"\x01" + s(1, "demo-hotel") + s(4, "stay-1"),
    "update": b"\x02" + s(1, "demo-hotel") + s(3, "01JKEY") + ts(4, 1904745600)
        + ts(5, 1905177600),
    "encode": b"\x03" + s(1, "demo-hotel") + s(3, "01JKEY") + s(4, "desk-1"),
    "list": b"\x04" + s(1, "demo-hotel") + v(2, 20) + s(4, "stay-1") + packed(7, [2, 4])
        + v(8, 1),
    "list_driver": b"\x05" + s(1, "demo-hotel") + s(2, "offline-lock") + v(3, 10),
}
os.makedirs("corpus/request_conversion", exist_ok=True)
for name, data in seeds.items():
    with open(f"corpus/request_conversion/seed-{name}", "wb") as f:
        f.write(data)
