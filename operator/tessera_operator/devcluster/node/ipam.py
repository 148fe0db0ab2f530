"""Pod IPs for the local node: loopback addresses from the profile's pod CIDR (e.g. 127.10.0.0/16).

Every 127.0.0.0/8 address reaches this machine, so a process can bind its pod IP without any
network setup. Addresses are drawn at random and skipped when something already listens on them,
so two clusters on one machine practically never hand out the same address.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import struct
from pathlib import Path

_LISTEN = "0A"


def listening_addresses() -> set[str]:
    """IPv4 addresses with a listening TCP socket on this machine (from /proc/net/tcp)."""
    addresses: set[str] = set()
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return addresses
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and fields[3] == _LISTEN:
            hex_ip = fields[1].split(":")[0]
            addresses.add(socket.inet_ntoa(struct.pack("<I", int(hex_ip, 16))))
    return addresses


class PodIPAllocator:
    """Hands out and takes back pod IPs from one CIDR."""

    def __init__(self, cidr: str, rng: random.Random | None = None) -> None:
        self.network = ipaddress.ip_network(cidr)
        if not self.network.subnet_of(ipaddress.ip_network("127.0.0.0/8")):  # type: ignore[arg-type]
            raise ValueError(f"pod CIDR {cidr} must be inside 127.0.0.0/8")
        self._in_use: set[str] = set()
        self._rng = rng or random.Random()

    def reserve(self, ip: str) -> bool:
        """Take an address a pod already has (after an agent restart); False if it is not ours."""
        if ipaddress.ip_address(ip) not in self.network or ip in self._in_use:
            return False
        self._in_use.add(ip)
        return True

    def allocate(self) -> str:
        """A free address: not handed out, not listened on, not the network's first or last."""
        busy = listening_addresses()
        size = self.network.num_addresses
        for _ in range(1000):
            candidate = str(self.network.network_address + self._rng.randrange(2, size - 1))
            if candidate.endswith((".0", ".255", ".1")) or candidate in self._in_use or candidate in busy:
                continue
            self._in_use.add(candidate)
            return candidate
        raise RuntimeError(f"no free pod IP left in {self.network}")

    def release(self, ip: str | None) -> None:
        if ip:
            self._in_use.discard(ip)
