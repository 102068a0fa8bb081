#!/usr/bin/env python3
"""scripts/check-npy.py FILE...: reads tapegrad's files with NumPy alone.

Each FILE ending in .npy is read with numpy.load; any other is read as a
safetensors checkpoint (8-byte little-endian header length, JSON header, raw
little-endian data; the xxh3 checksum is not checked). Prints, per file,

    == NAME: N tensors, format FORMAT VERSION     (checkpoints)
    == NAME                                       (.npy files)

then one line per tensor: "TENSOR DTYPE [D0,D1,...] sum=S" (S with six
decimals; TENSOR is "-" for a .npy file).

Runs under the first Python that has NumPy: this one, else /usr/bin/python3
(where Debian's python3-numpy installs), else another python3 on PATH.
Exit status: 0 when every file read, 1 when one is malformed, 2 for bad
usage, 77 (the automake code for a skipped test) when no Python here has
NumPy.
"""
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pyreexec  # noqa: E402

try:
    import numpy as np
except ImportError:
    pyreexec.reexec_with(["numpy"], __file__, ["python3-numpy"], 77)

DTYPES = {"F32": "<f4", "F64": "<f8", "I32": "<i4"}


class Malformed(Exception):
    pass


def line(name, arr):
    shape = "[" + ",".join(str(d) for d in arr.shape) + "]"
    total = float(np.sum(arr, dtype=np.float64))
    return "%s %s %s sum=%.6f" % (name, arr.dtype.name, shape, total)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise Malformed("shorter than the 8-byte header length")
    (hlen,) = struct.unpack("<Q", raw[:8])
    if hlen > len(raw) - 8:
        raise Malformed("header length %d runs past the end of the file" % hlen)
    try:
        header = json.loads(raw[8:8 + hlen].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise Malformed("the header is not JSON: %s" % e)
    if not isinstance(header, dict):
        raise Malformed("the header is not a JSON object")
    data = raw[8 + hlen:]
    meta = header.pop("__metadata__", {}) or {}
    entries = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    out = ["== %s: %d tensors, format %s %s" % (
        os.path.basename(path), len(entries), meta.get("format", "unknown"),
        meta.get("format_version", "-"))]
    covered = 0
    for name, info in entries:
        if info.get("dtype") not in DTYPES:
            raise Malformed("%s: dtype %r is not F32, F64 or I32" %
                            (name, info.get("dtype")))
        begin, end = info["data_offsets"]
        if begin != covered or end > len(data):
            raise Malformed("%s: data_offsets %r do not follow on" %
                            (name, info["data_offsets"]))
        arr = np.frombuffer(data[begin:end], dtype=DTYPES[info["dtype"]])
        arr = arr.reshape(info["shape"])
        covered = end
        out.append(line(name, arr))
    if covered != len(data):
        raise Malformed("the tensors cover %d of %d data bytes" %
                        (covered, len(data)))
    return out


def read_npy(path):
    arr = np.load(path, allow_pickle=False)
    return ["== %s" % os.path.basename(path), line("-", arr)]


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        sys.stderr.write("usage: check-npy.py FILE...\n")
        return 2
    status = 0
    for path in argv:
        try:
            lines = read_npy(path) if path.endswith(".npy") else read_safetensors(path)
            print("\n".join(lines))
        except (OSError, ValueError, KeyError, TypeError, Malformed) as e:
            sys.stderr.write("check-npy.py: %s: %s\n" % (path, e))
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
