import Namespace
import Netlink

/// Veth and bridge convergence, and interface addresses: a network of two members is one veth pair between them;
/// a larger one is a bridge in the switch namespace with a veth from each member to a port of it. What exists and
/// is right is kept; what is wrong is recreated; veths and bridges the topology no longer has are removed.
extension LabBuild {
    /// The switch end of member `member` of network number `network`.
    static func switchPort(_ network: Int, _ member: Int) -> String { "n\(network)m\(member)" }

    /// The bridge of network number `network`, in the switch namespace.
    static func bridgeName(_ network: Int) -> String { "n\(network)" }

    /// Creates missing veth pairs and bridges, recreates broken ones, removes veths the topology lacks.
    func links() throws(LabError) -> Int {
        var count = 0
        var wanted: [LabNode: Set<String>] = [:]   // interface names that should exist
        for (networkIndex, network) in topology.networks.enumerated() {
            let members = topology.members(of: network.name)
            if members.count == 2 {
                let (a, b) = (members[0], members[1])
                try pair(.host(a.host.name), a.interface.name, .host(b.host.name), b.interface.name, step: "network \(network.name)")
                wanted[.host(a.host.name), default: []].insert(a.interface.name)
                wanted[.host(b.host.name), default: []].insert(b.interface.name)
                count += 1
            } else {
                let bridge = Self.bridgeName(networkIndex)
                let sw = try socket(.switch)
                do {
                    if try sw.link(named: bridge)?.kind != .bridge {
                        if try sw.link(named: bridge) != nil { try sw.deleteLink(bridge) }
                        try sw.createBridge(bridge)
                    }
                    try sw.setLink(bridge, up: true)
                } catch { throw fail("create bridge for network \(network.name)", .switch, error) }
                wanted[.switch, default: []].insert(bridge)
                for (memberIndex, member) in members.enumerated() {
                    let port = Self.switchPort(networkIndex, memberIndex)
                    try pair(.host(member.host.name), member.interface.name, .switch, port, step: "network \(network.name)")
                    do {
                        try sw.setMaster(port, bridge)
                        try sw.setLink(port, up: true)
                    } catch { throw fail("attach \(port) to bridge \(bridge)", .switch, error) }
                    wanted[.host(member.host.name), default: []].insert(member.interface.name)
                    wanted[.switch, default: []].insert(port)
                    count += 1
                }
            }
        }
        // Veths and bridges the topology no longer has (from an earlier version of it).
        for (node, socket) in sockets {
            do {
                for link in try socket.links() where (link.kind == .veth || link.kind == .bridge)
                    && !(wanted[node]?.contains(link.name) ?? false) {
                    try socket.deleteLink(link.name)
                }
            } catch { throw fail("remove links the topology no longer has", node, error) }
        }
        return count
    }

    /// The ifindex of a lab interface: unique in the lab, so that the two ends of a veth never share an index
    /// (see `createVeth`) and indices stay the same from one `up` to the next. 0 (the kernel picks) for others.
    func interfaceIndex(_ node: LabNode, _ name: String) -> Int32 { indices[InterfaceKey(node: node, name: name)] ?? 0 }

    /// A veth pair nodeA:nameA — nodeB:nameB, kept when both ends exist as veths and are each other's peer, else
    /// (re)created.
    func pair(_ nodeA: LabNode, _ nameA: String, _ nodeB: LabNode, _ nameB: String, step: String) throws(LabError) {
        let a = try socket(nodeA), b = try socket(nodeB)
        do {
            let endA = try a.link(named: nameA), endB = try b.link(named: nameB)
            if let endA, let endB, endA.kind == .veth, endB.kind == .veth,
               endA.peerIndex == endB.index, endB.peerIndex == endA.index {
                return
            }
            if endA != nil { try a.deleteLink(nameA) }
            if try b.link(named: nameB) != nil { try b.deleteLink(nameB) }
            try a.createVeth(nameA, in: a.namespace, peer: nameB, in: b.namespace,
                             index: interfaceIndex(nodeA, nameA), peerIndex: interfaceIndex(nodeB, nameB))
        } catch { throw fail("create veth \(nodeA):\(nameA) — \(nodeB):\(nameB) (\(step))", nodeA, error) }
    }

    /// Interfaces up with their MTU and exactly the declared global addresses.
    func addresses() throws(LabError) -> Int {
        var count = 0
        for host in topology.hosts {
            let socket = try socket(.host(host.name))
            do {
                let present = try socket.addresses()
                for interface in host.interfaces {
                    if let mtu = interface.mtu { try socket.setMTU(interface.name, mtu) }
                    for prefix in interface.addresses {
                        let flags = prefix.family == .inet6 ? InterfaceAddress.noDAD : 0
                        try socket.addAddress(prefix, to: interface.name, flags: flags)
                        count += 1
                    }
                    for stale in present where stale.interface == interface.name && stale.scope == .universe
                        && !interface.addresses.contains(where: { $0 == stale.prefix }) {
                        try socket.deleteAddress(stale.prefix, from: interface.name)
                    }
                    if !interface.isLoopback { try socket.setLink(interface.name, up: true) }
                }
            } catch { throw fail("configure interfaces", .host(host.name), error) }
        }
        if let sw = sockets[.switch] {
            do { for link in try sw.links() where !link.isUp { try sw.setLink(link.name, up: true) } }
            catch { throw fail("bring switch ports up", .switch, error) }
        }
        return count
    }
}
