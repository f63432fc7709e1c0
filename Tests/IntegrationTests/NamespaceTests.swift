import Foundation
import Namespace
import Netlink
import SystemPackage
import Testing

@Suite(.enabled(if: isRoot, "needs root"))
struct NamespaceTests {
    @Test func createIsVisibleToIPNetnsAndDeleteRemovesIt() throws {
        let name = uniqueNamespaceName()
        let ns = try NetworkNamespace.create(name)
        var deleted = false
        defer { if !deleted { try? ns.delete() } }
        #expect(NetworkNamespace.list().contains(name))
        #expect(ns.exists)
        #expect(try run(["ip", "netns", "list"]).contains(name))
        // `ip netns exec` enters it: a new namespace has only lo, and lo is down.
        let links = try run(["ip", "netns", "exec", name, "ip", "-o", "link"])
        #expect(links.split(separator: "\n").count == 1)
        #expect(links.contains("lo:"))
        // Its identity differs from ours.
        #expect(try ns.inode() != (try NetworkNamespace.current.inode()))
        try ns.delete()
        deleted = true
        #expect(!NetworkNamespace.list().contains(name))
        #expect(!FileManager.default.fileExists(atPath: "/run/netns/\(name)"))
    }

    @Test func namespaceMadeByIPIsUsable() throws {
        let name = uniqueNamespaceName()
        try run(["ip", "netns", "add", name])
        defer { try? run(["ip", "netns", "del", name]) }
        let socket = try NetlinkSocket(namespace: try NetworkNamespace(named: name))
        #expect(try socket.links().map(\.name) == ["lo"])
    }

    @Test func cookiesTellNamespacesApartAndSocketsOfOneAgree() throws {
        try withNamespaces(2) { ns in
            let a = try NetlinkSocket(namespace: ns[0]).namespaceCookie()
            let b = try NetlinkSocket(namespace: ns[1]).namespaceCookie()
            #expect(a != nil)
            #expect(a != b)
            #expect(try NetlinkSocket(namespace: ns[0]).namespaceCookie() == a)
        }
    }

    @Test func createTwiceFailsWithExists() throws {
        try withNamespaces(1) { ns in
            #expect(throws: NamespaceError.exists(ns[0].name!)) { try NetworkNamespace.create(ns[0].name!) }
        }
    }

    @Test func invalidNamesAreRejectedBeforeAnythingIsCreated() throws {
        let long = String(repeating: "x", count: 256)
        for (bad, reason) in [("", "empty"), (".", "reserved"), ("..", "reserved"), ("a/b", "contains '/' or NUL"),
                              (long, "longer than 255 bytes")] {
            #expect(throws: NamespaceError.invalidName(bad, reason: reason)) { try NetworkNamespace.create(bad) }
        }
        #expect(!FileManager.default.fileExists(atPath: "/run/netns/a"))
    }

    @Test func deleteOfMissingNamespaceSaysSo() throws {
        let ns = try NetworkNamespace(named: uniqueNamespaceName())
        #expect(throws: NamespaceError.notFound(ns.name!)) { try ns.delete() }
        #expect(!ns.exists)
    }

    @Test func socketsStayInTheirNamespaceAndCallerDoesNotMove() throws {
        let before = try NetworkNamespace.current.inode()
        try withNamespaces(2) { ns in
            let a = try NetlinkSocket(namespace: ns[0])
            try a.setLink("lo", up: true)
            // The change is in ns[0] only: ip sees lo up there and down in ns[1].
            let upThere = try ipJSON(ns[0], "link", "show", "lo")
            let downHere = try ipJSON(ns[1], "link", "show", "lo")
            #expect((upThere.first?["flags"] as? [String])?.contains("UP") == true)
            #expect((downHere.first?["flags"] as? [String])?.contains("UP") == false)
        }
        #expect(try NetworkNamespace.current.inode() == before)
    }

    @Test func sysctlsAreReadAndWrittenInTheNamespaceNotTheCaller() throws {
        try withNamespaces(1) { ns in
            let host = try String(contentsOfFile: "/proc/sys/net/ipv4/ip_forward", encoding: .utf8)
            #expect(try ns[0].readSysctl("net.ipv4.ip_forward") == "0")
            try ns[0].writeSysctl("net.ipv4.ip_forward", "1")
            #expect(try ns[0].readSysctl("net.ipv4.ip_forward") == "1")
            #expect(try run(["ip", "netns", "exec", ns[0].name!, "cat", "/proc/sys/net/ipv4/ip_forward"])
                        .trimmingCharacters(in: .whitespacesAndNewlines) == "1")
            #expect(try String(contentsOfFile: "/proc/sys/net/ipv4/ip_forward", encoding: .utf8) == host)
            try ns[0].writeSysctl("net/ipv4/conf/lo/rp_filter", "2")
            #expect(try ns[0].readSysctl("net.ipv4.conf.lo.rp_filter") == "2")
        }
    }

    @Test func badSysctlKeysAreRejected() throws {
        try withNamespaces(1) { ns in
            #expect(throws: NamespaceError.invalidSysctl("kernel.hostname", reason: "only net.* keys belong to a network namespace")) {
                try ns[0].readSysctl("kernel.hostname")
            }
            #expect(throws: NamespaceError.invalidSysctl("net.ipv4.conf.eth9.rp_filter", reason: "no such sysctl in \(ns[0])")) {
                try ns[0].readSysctl("net.ipv4.conf.eth9.rp_filter")
            }
            #expect(throws: NamespaceError.invalidSysctl("net.ipv4.conf..rp_filter", reason: "malformed component \"\"")) {
                try ns[0].writeSysctl("net.ipv4.conf..rp_filter", "1")
            }
            #expect(throws: NamespaceError.invalidSysctl("net.ipv4.ip_forward", reason: "the kernel rejected the value \"banana\"")) {
                try ns[0].writeSysctl("net.ipv4.ip_forward", "banana")
            }
        }
    }
}
