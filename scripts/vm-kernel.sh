# Sourced by scripts/vm: fetches one of Debian's kernel packages into the cache, extracted (never installed), and
# builds the initramfs that mounts this machine's filesystem in the guest. Needs $cache; the caller holds its lock.

# The private apt configuration: bookworm, bookworm-updates, bookworm-backports and bookworm-security from the
# archives this machine's Debian sources name (RETURNPATH_VM_MIRROR: the archive's URI instead), with lists of
# its own under $cache/apt, so that this machine's apt configuration and lists are left as they are.
vm_apt_setup() {
    local apt=$cache/apt main="${RETURNPATH_VM_MIRROR:-}" security="" codename="" files=() keyring=""
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    [ -n "$codename" ] || { echo "scripts/vm: /etc/os-release names no Debian codename" >&2; return 1; }
    shopt -s nullglob
    files=(/etc/apt/sources.list.d/*.sources)
    if [ ${#files[@]} -gt 0 ]; then
        # deb822 stanzas: the first URI of a stanza whose suites include the codename (or codename-security).
        read -r m s < <(awk -v c="$codename" '
            function flush() { if (uri != "" && types ~ /(^| )deb( |$)/) {
                if (suites ~ "(^| )" c "( |$)" && main == "") main = uri
                if (suites ~ "(^| )" c "-security( |$)" && sec == "") sec = uri }
                uri = ""; suites = ""; types = "" }
            /^[[:space:]]*$/ { flush(); next }
            /^URIs:/ { uri = $2 } /^Suites:/ { $1 = ""; suites = $0 } /^Types:/ { $1 = ""; types = $0 }
            END { flush(); print (main == "" ? "-" : main), (sec == "" ? "-" : sec) }' "${files[@]}")
        [ "$m" = - ] || main=${main:-$m}
        [ "$s" = - ] || security=$s
    fi
    files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list)
    shopt -u nullglob
    if [ -z "$main" ] || [ -z "$security" ]; then
        # One-line sources: deb [options] URI SUITE COMPONENT…
        read -r m s < <(cat "${files[@]}" 2>/dev/null | awk -v c="$codename" '
            $1 == "deb" { i = 2; if ($i ~ /^\[/) while ($i !~ /\]$/) i++; if ($i ~ /^\[/ || $i ~ /\]$/) i++
                if ($(i+1) == c && main == "") main = $i; if ($(i+1) == c "-security" && sec == "") sec = $i }
            END { print (main == "" ? "-" : main), (sec == "" ? "-" : sec) }')
        [ "$m" = - ] || main=${main:-$m}
        [ -n "$security" ] || [ "$s" = - ] || security=$s
    fi
    [ -n "$main" ] || { echo "scripts/vm: no Debian archive for '$codename' in /etc/apt: set RETURNPATH_VM_MIRROR to one" >&2; return 1; }
    [ ! -e /usr/share/keyrings/debian-archive-keyring.gpg ] || keyring="[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
    mkdir -p "$apt/lists/partial" "$apt/cache" "$apt/sources.list.d"
    {
        echo "deb $keyring$main bookworm main"
        echo "deb $keyring$main bookworm-updates main"
        echo "deb $keyring$main bookworm-backports main"
        [ -z "$security" ] || echo "deb $keyring$security bookworm-security main"
    } > "$apt/sources.list"
    apt_options=(-o Dir::Etc::SourceList="$apt/sources.list" -o Dir::Etc::SourceParts="$apt/sources.list.d"
        -o Dir::State::Lists="$apt/lists" -o Dir::Cache="$apt/cache" -o APT::Architecture=amd64
        -o APT::Architectures=amd64 -o Acquire::Languages=none)
    [ "$(id -u)" -ne 0 ] || apt_options+=(-o APT::Sandbox::User=root)
    apt-get "${apt_options[@]}" update -qq
}

# prepare_kernel NAME PREFIX PATTERN: the newest package whose name starts with PREFIX and matches PATTERN,
# downloaded, extracted to $cache/RELEASE (vmlinuz, lib/modules/RELEASE with depmod's indexes, initrd.img) and
# named $cache/NAME.
prepare_kernel() {
    local name=$1 prefix=$2 pattern=$3 package dir release deb
    local apt_options=()
    vm_apt_setup
    package=$(apt-cache "${apt_options[@]}" pkgnames "$prefix" | grep -E "$pattern" | sort -V | tail -n 1 || true)
    [ -n "$package" ] || { echo "scripts/vm: no package matching $pattern in Debian's archive" >&2; return 1; }
    echo "scripts/vm: fetching $package (once; cached in $cache)" >&2
    mkdir -p "$cache/debs"
    rm -f "$cache/debs/${package}_"*.deb
    (cd "$cache/debs" && apt-get "${apt_options[@]}" download -qq "$package")
    deb=$(ls "$cache/debs/${package}_"*.deb)
    dir=$cache/$package.part
    rm -rf "$dir"
    mkdir -p "$dir"
    dpkg-deb -x "$deb" "$dir"
    release=$(ls "$dir/lib/modules")
    [ -f "$dir/boot/vmlinuz-$release" ] || { echo "scripts/vm: $deb has no boot/vmlinuz-$release" >&2; return 1; }
    mv "$dir/boot/vmlinuz-$release" "$dir/vmlinuz"
    rm -rf "$dir/usr" "$dir/boot/System.map-$release"
    depmod -b "$dir" "$release"
    vm_initramfs "$dir" "$release"
    printf '%s\n' "$release" > "$dir/release"
    printf '%s\n' "$(basename "$deb")" > "$dir/package"
    touch "$dir/ready"
    rm -rf "$cache/$release" "$deb"
    mv "$dir" "$cache/$release"
    ln -sfn "$release" "$cache/$name"
}

# vm_initramfs DIR RELEASE: DIR/initrd.img, an uncompressed cpio (nothing to decompress under emulation) with
# busybox-static, the modules that mount the root (virtio PCI, virtio-serial, 9p, overlay; the kernel's own
# dependencies, decompressed) and /init, which mounts this machine's / read-only (9p) under a tmpfs overlay,
# a fresh /run with the run's share at /run/returnpath-vm, and hands over to its 'guest' (scripts/vm-guest).
vm_initramfs() {
    local dir=$1 release=$2 tree line path n=0 module
    tree=$(mktemp -d "${TMPDIR:-/tmp}/returnpath-vm-initramfs.XXXXXX")
    mkdir -p "$tree/bin" "$tree/modules"
    cp /bin/busybox "$tree/bin/busybox"
    : > "$tree/modules/order"
    while read -r line; do
        case "$line" in insmod\ *) ;; *) continue ;; esac
        path=${line#insmod }
        path=${path%% *}
        module=$(basename "$path")
        module=${module%%.ko*}
        grep -qx "$module.ko" "$tree/modules/order" && continue
        case "$path" in
            *.ko.xz) busybox unxz -c "$path" > "$tree/modules/$module.ko" ;;
            *.ko.zst) zstd -q -d -c "$path" > "$tree/modules/$module.ko" ;;
            *.ko.gz) gzip -d -c "$path" > "$tree/modules/$module.ko" ;;
            *.ko) cp "$path" "$tree/modules/$module.ko" ;;
            *) echo "scripts/vm: unexpected module file $path" >&2; return 1 ;;
        esac
        echo "$module.ko" >> "$tree/modules/order"
        n=$((n + 1))
    done < <(modprobe -d "$dir" -S "$release" --show-depends -a virtio_pci virtio_console 9pnet_virtio 9p overlay)
    cat > "$tree/init" <<'EOF'
#!/bin/busybox sh
# returnpath's VM initramfs (scripts/vm-kernel.sh). Mounts this machine's / (9p, read-only) under an overlay
# whose upper layer is a tmpfs, a fresh /run with the run's share at /run/returnpath-vm, and runs its 'guest'.
b=/bin/busybox
fail() { echo "returnpath-vm initramfs: $*" > /dev/console; $b poweroff -f; }
$b mkdir -p /proc /sys /dev /host /upper /root
$b mount -t proc proc /proc
$b mount -t devtmpfs devtmpfs /dev
while read -r m; do $b insmod "/modules/$m" || fail "insmod $m"; done < /modules/order
$b mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=524288,cache=loose hostroot /host || fail "mount 9p hostroot"
$b mount -t tmpfs -o mode=0755 upper /upper || fail "mount tmpfs"
$b mkdir /upper/data /upper/work
$b mount -t overlay -o lowerdir=/host,upperdir=/upper/data,workdir=/upper/work root /root || fail "mount overlay"
$b mount -t tmpfs -o mode=0755,nosuid,nodev run /root/run || fail "mount /run"
$b mkdir -p /root/run/returnpath-vm
$b mount -t 9p -o ro,trans=virtio,version=9p2000.L rprun /root/run/returnpath-vm || fail "mount 9p rprun"
$b mount --move /dev /root/dev || fail "move /dev"
$b umount /proc
exec $b switch_root /root /bin/bash /run/returnpath-vm/guest
EOF
    chmod 755 "$tree/init"
    (cd "$tree" && find . | sort | busybox cpio -o -H newc 2>/dev/null) > "$dir/initrd.img"
    rm -rf "$tree"
    [ "$n" -gt 0 ] || { echo "scripts/vm: modprobe found none of the initramfs' modules in $dir" >&2; return 1; }
}
