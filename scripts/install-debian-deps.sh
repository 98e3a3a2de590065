#!/usr/bin/env bash
# The Debian packages threatlab's tests and live mode need, installed idempotently.
# Quick when everything is present: it only calls apt when a package is missing.
set -euo pipefail

PACKAGES=(
    iproute2   # ip netns, veth, bridges for live mode
    tshark     # independent dissector: every pcap is checked with it
    hping3     # the peer of the live injection benchmark
    tcpdump    # live captures inside namespaces
    nftables   # NAT nodes in live topologies (masquerade)
    dhcpcd-base  # the RFC 3118 client threatlab's DHCP server interoperates with
    isc-dhcp-client  # dhclient: a real client of `threatlab serve dhcp`
    udhcpc       # busybox's udhcpc: a real client of `threatlab serve dhcp`
    dnsmasq-base  # dnsmasq binary only (no service): a DHCP peer and the benchmark's baseline
    kea-dhcp4-server  # Kea: a DHCP peer and the benchmark's other baseline (its service must not start)
)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "install-debian-deps: missing ${missing[*]}; run as root to install them" >&2
    exit 1
fi
# Server packages must not start services on the host when installed (see shared/PEERS.md).
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
fi
export DEBIAN_FRONTEND=noninteractive
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
# Belt and braces: if a service we have just installed started anyway (a policy-rc.d that was there
# already and allows it), stop it; the tests run their own instances inside namespaces. Services of
# packages that were installed before are the machine owner's and are left alone.
if [[ " ${missing[*]} " == *" kea-dhcp4-server "* ]] && command -v systemctl >/dev/null 2>&1 \
        && [ -d /run/systemd/system ]; then
    for unit in kea-dhcp4-server kea-ctrl-agent; do
        systemctl stop "$unit" >/dev/null 2>&1 || true
    done
fi
