#!/usr/bin/env bash
# The baseline for `returnpath bench lab`: the seed lab built by a plain iproute2 shell script, the way one would
# write it by hand (ip netns, ip link … netns, ip addr, ip route, sysctl, socat services), then waiting until the
# services answer. Usage: seed-lab.sh up NAME | seed-lab.sh down NAME. Namespaces: rp-NAME-<host>.
set -euo pipefail
cmd=$1 name=$2
n() { echo "rp-$name-$1"; }
hosts=(node gateway router client1 client2)

if [ "$cmd" = down ]; then
    pkill -f "socat TCP-LISTEN:3000,bind=192.168.[12].1,fork,reuseaddr SYSTEM:echo svc[12] #$name\$" 2>/dev/null || true
    for h in "${hosts[@]}"; do ip netns del "$(n "$h")" 2>/dev/null || true; done
    exit 0
fi

for h in "${hosts[@]}"; do
    ip netns add "$(n "$h")"
    ip -n "$(n "$h")" link set lo up
done
link() { # link HOST_A IF_A HOST_B IF_B
    ip -n "$(n "$1")" link add "$2" type veth peer name "$4" netns "$(n "$3")"
    ip -n "$(n "$1")" link set "$2" up
    ip -n "$(n "$3")" link set "$4" up
}
link node eth0 gateway eth0
link node eth1 router eth1
link node eth2 router eth2
link router eth3 client1 eth0
link router eth4 client2 eth0

ip -n "$(n node)" addr add 10.111.220.11/24 dev eth0
ip -n "$(n node)" addr add 10.111.221.11/24 dev eth1
ip -n "$(n node)" addr add 10.111.222.11/24 dev eth2
ip -n "$(n node)" addr add 192.168.1.1/32 dev lo
ip -n "$(n node)" addr add 192.168.2.1/32 dev lo
ip -n "$(n gateway)" addr add 10.111.220.1/24 dev eth0
ip -n "$(n router)" addr add 10.111.221.21/24 dev eth1
ip -n "$(n router)" addr add 10.111.222.21/24 dev eth2
ip -n "$(n router)" addr add 10.111.223.21/24 dev eth3
ip -n "$(n router)" addr add 10.111.224.21/24 dev eth4
ip -n "$(n client1)" addr add 10.111.223.23/24 dev eth0
ip -n "$(n client2)" addr add 10.111.224.23/24 dev eth0

ip -n "$(n node)" route add default via 10.111.220.1
ip -n "$(n router)" route add 192.168.1.1 via 10.111.221.11
ip -n "$(n router)" route add 192.168.2.1 via 10.111.222.11
ip -n "$(n client1)" route add 192.168.1.1 via 10.111.223.21
ip -n "$(n client2)" route add 192.168.2.1 via 10.111.224.21
ip netns exec "$(n router)" sysctl -qw net.ipv4.ip_forward=1

for i in 1 2; do
    setsid ip netns exec "$(n node)" socat TCP-LISTEN:3000,bind=192.168.$i.1,fork,reuseaddr "SYSTEM:echo svc$i #$name" \
        </dev/null >/dev/null 2>&1 &
done
for i in 1 2; do
    until ip netns exec "$(n node)" nc -z 192.168.$i.1 3000 2>/dev/null; do sleep 0.005; done
done
