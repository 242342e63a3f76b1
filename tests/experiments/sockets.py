"""Which TCP addresses a process tree listens on, read from /proc (Linux)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path


def descendants(root: int) -> set[int]:
    """Every live process whose chain of parents reaches ``root`` (``root`` excluded)."""
    parent = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found = {root}
    while new := {p for p, pp in parent.items() if pp in found} - found:
        found |= new
    return found - {root}


def _socket_inodes(pids: set[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        try:
            targets = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        inodes |= {t[len("socket:[") : -1] for t in targets if t.startswith("socket:[")}
    return inodes


def listening(pids: set[int]) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The local addresses of the listening TCP sockets the processes ``pids`` hold
    (IPv4-mapped IPv6 addresses given as IPv4)."""
    inodes = _socket_inodes(pids)
    out = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(fields[1].split(":")[0])
            # /proc prints each 32-bit word of the address in host (little-endian) order
            address = ipaddress.ip_address(
                b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            )
            mapped = getattr(address, "ipv4_mapped", None)
            out.append(mapped or address)
    return out
