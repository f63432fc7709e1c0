# Sourced by scripts/demo and scripts/test: installs the Debian packages returnpath needs, when missing.
# iproute2 (the test oracle and ip -batch baseline), nftables and libnftables-dev (apply: mark/ingress),
# libpcap-dev and tcpdump (probe), libyaml-dev (the YAML reader), tshark (the pcapng test oracle), iptables (iptables-nft rules doctor reads), netcat-openbsd (what users run in labs), socat (the lab benchmark's baseline), as root or through sudo.
ensure_packages() {
    local wanted=(iproute2 nftables libnftables-dev libpcap-dev libyaml-dev tcpdump tshark iptables netcat-openbsd socat)
    local missing=()
    for p in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    echo "installing: ${missing[*]}" >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# kubernetes-validate (PyPI) carries Kubernetes' schemas: the tests validate deploy/kubernetes/ offline with it.
ensure_python_packages() {
    command -v kubernetes-validate >/dev/null 2>&1 && return 0
    local pip=(python3 -m pip)
    [ "$(id -u)" -eq 0 ] || pip=(sudo python3 -m pip)
    echo "installing: kubernetes-validate (PyPI)" >&2
    "${pip[@]}" install --quiet --disable-pip-version-check kubernetes-validate
    hash -r
    command -v kubernetes-validate >/dev/null 2>&1 || { echo "kubernetes-validate is not on PATH after pip install" >&2; return 1; }
}

# returnpath needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) for namespaces; re-run through sudo when not root.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# scripts/image and scripts/image-test: mmdebstrap (the image's Debian root), python3-yaml (Debian's python3 reads
# the DaemonSet's arguments), binutils (readelf, strip) and the packages the caller adds (a build dependency; the
# test's readers umoci, skopeo, podman). Installed when missing, as root or through sudo.
ensure_image_packages() {
    ensure_debian_packages mmdebstrap python3-yaml binutils "$@"
}

# scripts/vm: qemu-system-x86 (the VM), kmod (depmod for the extracted kernel's modules, the guest's modprobe),
# busybox-static (the initramfs), installed when missing, as root or through sudo.
ensure_vm_packages() {
    ensure_debian_packages qemu-system-x86 kmod busybox-static
}

# ensure_debian_packages PACKAGE…: installs those of the Debian packages that are missing, as root or through sudo.
ensure_debian_packages() {
    local installed missing=()
    installed=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' 2>/dev/null | awk '$1 == "ii" {print $2}')
    for p in "$@"; do grep -qx "$p" <<<"$installed" || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing: ${missing[*]}" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
