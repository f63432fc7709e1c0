import Foundation
import Namespace
import Netlink
import SystemPackage
import Testing

@Suite(.enabled(if: isRoot, "needs root"))
struct LinkAddressTests {
    @Test func vethEndsAreCreatedDirectlyInTheirNamespaces() throws {
        let hostLinks = try run(["ip", "-o", "link"])
        try withNamespaces(2) { ns in
            // The socket lives in ns[0]; the pair's ends are placed in ns[0] and ns[1] at creation.
            let socket = try NetlinkSocket(namespace: ns[0])
            try socket.createVeth("eth1", in: ns[0], peer: "peer1", in: ns[1], mtu: 1400)
            try socket.setAlias("eth1", "rp-test")
            let left = try ipJSON(ns[0], "link", "show", "eth1")
            let right = try ipJSON(ns[1], "link", "show", "peer1")
            #expect(left.first?["mtu"] as? Int == 1400)
            #expect(right.first?["mtu"] as? Int == 1400)
            #expect(left.first?["ifalias"] as? String == "rp-test")
            // Nothing appeared in the machine's own namespace.
            #expect(try run(["ip", "-o", "link"]) == hostLinks)
            // Our own read-back agrees.
            let link = try #require(try socket.link(named: "eth1"))
            #expect(link.kind == .veth)
            #expect(link.mtu == 1400)
            #expect(link.alias == "rp-test")
            #expect(link.linkNetnsID != nil)
            #expect(try socket.link(index: link.index)?.name == "eth1")
            #expect(try socket.links().map(\.name).sorted() == ["eth1", "lo"])
        }
    }

    @Test func vethFromASocketInAThirdNamespace() throws {
        try withNamespaces(3) { ns in
            let socket = try NetlinkSocket(namespace: ns[2])
            try socket.createVeth("x0", in: ns[0], peer: "x1", in: ns[1])
            #expect(try ipJSON(ns[0], "link", "show", "x0").count == 1)
            #expect(try ipJSON(ns[1], "link", "show", "x1").count == 1)
            #expect(try socket.links().map(\.name) == ["lo"])
        }
    }

    @Test func setUpDownMTUAndDelete() throws {
        try withPair { pair in
            let s = pair.leftSocket
            try s.setMTU("a", 1300)
            #expect(try ipJSON(pair.left, "link", "show", "a").first?["mtu"] as? Int == 1300)
            try s.setLink("a", up: false)
            #expect((try ipJSON(pair.left, "link", "show", "a").first?["flags"] as? [String])?.contains("UP") == false)
            #expect(try s.link(named: "a")?.isUp == false)
            try s.setLink("a", up: true)
            #expect((try ipJSON(pair.left, "link", "show", "a").first?["flags"] as? [String])?.contains("UP") == true)
            try s.deleteLink("a")
            #expect(try s.link(named: "a") == nil)
            // Deleting one end removes the peer too.
            #expect(try pair.rightSocket.link(named: "b") == nil)
        }
    }

    @Test func bridgeAndMaster() throws {
        try withPair { pair in
            try pair.rightSocket.createBridge("br0")
            try pair.rightSocket.setMaster("b", "br0")
            let b = try ipJSON(pair.right, "link", "show", "b")
            #expect(b.first?["master"] as? String == "br0")
            #expect(try pair.rightSocket.link(named: "br0")?.kind == .bridge)
            try pair.rightSocket.setMaster("b", nil)
            #expect(try ipJSON(pair.right, "link", "show", "b").first?["master"] == nil)
        }
    }

    @Test func unknownDevicesAndBadNamesAreRejectedBeforeSending() throws {
        try withNamespaces(1) { ns in
            let s = try NetlinkSocket(namespace: ns[0])
            let error = try #require(netlinkError { try s.setLink("eth9", up: true) })
            guard case .invalidRequest(let op, let reason) = error else { Issue.record("\(error)"); return }
            #expect(op == "set link eth9 up")
            #expect(reason.contains("unknown device \"eth9\""))
            let tooLong = try #require(netlinkError { try s.createVeth("a-name-far-too-long", in: ns[0], peer: "b", in: ns[0]) })
            guard case .invalidRequest(_, let why) = tooLong else { Issue.record("\(tooLong)"); return }
            #expect(why == "interface name \"a-name-far-too-long\" is longer than 15 bytes")
            #expect(try s.links().map(\.name) == ["lo"])
        }
    }

    @Test func duplicateLinkCarriesTheKernelsError() throws {
        try withPair { pair in
            let error = try #require(netlinkError {
                try pair.leftSocket.createVeth("a", in: pair.left, peer: "c", in: pair.right)
            })
            #expect(error.errno == .fileExists)
            #expect(error.description.hasPrefix("add link a netns"))
        }
    }

    @Test func addressesAddIdempotentListAndDelete() throws {
        try withPair { pair in
            let s = pair.leftSocket
            try s.addAddress(try IPPrefix(parsing: "192.168.1.1/32"), to: "lo")
            try s.addAddress(try IPPrefix(parsing: "192.168.1.1/32"), to: "lo")  // idempotent
            try s.addAddress(try IPPrefix(parsing: "10.9.0.5/24"), to: "a", label: "a:svc")
            try s.addAddress(try IPPrefix(parsing: "fd00::1/64"), to: "a", flags: InterfaceAddress.noDAD)

            let oracle = try ipJSON(pair.left, "addr", "show")
            func ipAddresses(_ dev: String) -> [[String: Any]] {
                (oracle.first { $0["ifname"] as? String == dev }?["addr_info"] as? [[String: Any]]) ?? []
            }
            let lo = ipAddresses("lo").filter { $0["local"] as? String == "192.168.1.1" }
            #expect(lo.count == 1)
            #expect(lo.first?["prefixlen"] as? Int == 32)
            #expect(lo.first?["scope"] as? String == "global")
            #expect(ipAddresses("a").contains { $0["local"] as? String == "10.9.0.5" && $0["label"] as? String == "a:svc" })
            #expect(ipAddresses("a").contains { $0["local"] as? String == "fd00::1" && $0["prefixlen"] as? Int == 64 })

            let ours = try s.addresses()
            #expect(ours.contains { $0.interface == "lo" && $0.prefix.cidr == "192.168.1.1/32" && $0.scope == .universe })
            #expect(ours.contains { $0.interface == "a" && $0.prefix.cidr == "10.9.0.5/24" && $0.label == "a:svc" })
            #expect(ours.contains { $0.interface == "a" && $0.prefix.cidr == "fd00::1/64" && $0.flags & InterfaceAddress.noDAD != 0 })
            #expect(try s.addresses(family: .inet6).allSatisfy { $0.family == .inet6 })
            // Our list has what ip lists (every address, both families).
            let ipCount = oracle.reduce(0) { $0 + (($1["addr_info"] as? [Any])?.count ?? 0) }
            #expect(ours.count == ipCount)

            try s.deleteAddress(try IPPrefix(parsing: "192.168.1.1/32"), from: "lo")
            #expect(!(try s.addresses()).contains { $0.prefix.cidr == "192.168.1.1/32" })
            let prefix = try IPPrefix(parsing: "192.168.1.1/32")
            let error = try #require(netlinkError { try s.deleteAddress(prefix, from: "lo") })
            #expect(error.errno == .addressNotAvailable)
        }
    }

    @Test func loopbackAddressGetsHostScope() throws {
        try withNamespaces(1) { ns in
            let s = try NetlinkSocket(namespace: ns[0])
            try s.addAddress(try IPPrefix(parsing: "127.0.0.2/8"), to: "lo")
            let info = try ipJSON(ns[0], "addr", "show", "lo").first?["addr_info"] as? [[String: Any]]
            #expect(info?.first { $0["local"] as? String == "127.0.0.2" }?["scope"] as? String == "host")
        }
    }
}
