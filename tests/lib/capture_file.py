"""Capture files (common/capture.h) read in Python, independently of the C
reader: length-prefixed msgpack records {v, t, p, b}. For the tests and the
chaos test, which takes its traffic from streamgen's captures."""

import glob
import os
import struct
import urllib.parse

def _mp_read(buf, i):
    """One msgpack value of the kinds the capture writer produces: (value, next index)."""
    c = buf[i]
    if c <= 0x7f:
        return c, i + 1
    if 0xa0 <= c <= 0xbf:
        n = c & 0x1f
        return buf[i + 1:i + 1 + n].decode(), i + 1 + n
    if 0x80 <= c <= 0x8f:
        out, i = {}, i + 1
        for _ in range(c & 0x0f):
            k, i = _mp_read(buf, i)
            out[k], i = _mp_read(buf, i)
        return out, i
    ints = {0xcc: ">B", 0xcd: ">H", 0xce: ">I", 0xcf: ">Q"}
    if c in ints:
        size = struct.calcsize(ints[c])
        return struct.unpack(ints[c], buf[i + 1:i + 1 + size])[0], i + 1 + size
    sized = {0xd9: (">B", str), 0xda: (">H", str), 0xdb: (">I", str),
             0xc4: (">B", bytes), 0xc5: (">H", bytes), 0xc6: (">I", bytes)}
    if c in sized:
        fmt, kind = sized[c]
        w = struct.calcsize(fmt)
        n = struct.unpack(fmt, buf[i + 1:i + 1 + w])[0]
        raw = bytes(buf[i + 1 + w:i + 1 + w + n])
        return (raw.decode() if kind is str else raw), i + 1 + w + n
    raise ValueError("unexpected msgpack byte 0x%02x" % c)


def read_capture(path):
    """Complete records of one capture file as dicts {v, t, p, b}; a cut tail is left out."""
    data = open(path, "rb").read()
    out, off = [], 0
    while off + 4 <= len(data):
        n = struct.unpack(">I", data[off:off + 4])[0]
        if off + 4 + n > len(data):
            break
        rec, end = _mp_read(data, off + 4)
        assert end == off + 4 + n, "record length does not match its map"
        out.append(rec)
        off += 4 + n
    return out, off


def capture_files(d):
    return sorted(glob.glob(os.path.join(d, "*.bcap")))




def messages_by_customer(directory):
    """{From: [Body, ...]} of the inbound-message records of a capture, in time order."""
    recs = [r for f in capture_files(directory) for r in read_capture(f)[0]]
    recs.sort(key=lambda r: r["t"])
    out = {}
    for r in recs:
        if r["p"] != "/twilio/messages":
            continue
        form = dict(urllib.parse.parse_qsl(r["b"].decode(), keep_blank_values=True))
        out.setdefault(form["From"], []).append(form["Body"])
    return out
