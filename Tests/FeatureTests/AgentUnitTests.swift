import Agent
import CLinux
import Foundation
import Logging
import Netlink
import ReturnRouting
import Testing

struct AgentUnitTests {
    @Test func metricsAddressesParse() {
        let parsed = MetricsAddress("127.0.0.1:9712")
        #expect(parsed != nil && parsed?.host == "127.0.0.1" && parsed?.isIPv6 == false)
        #expect(parsed != MetricsAddress("127.0.0.1:9713"))
        #expect(MetricsAddress("127.0.0.1:9712")?.port == 9712)
        #expect(MetricsAddress("[::1]:9712")?.isIPv6 == true)
        #expect(MetricsAddress("0.0.0.0:0")?.port == 0)
        for bad in ["localhost:9712", "127.0.0.1", "127.0.0.1:70000", "[::1]9712", ":9712", "1.2.3:80"] {
            #expect(MetricsAddress(bad) == nil, "\(bad)")
        }
    }

    @Test func jsonLogLinesAreOneObjectEach() throws {
        let line = JSONLogHandler.line(time: Date(timeIntervalSince1970: 0), level: .notice, label: "returnpath.agent",
                                       message: "reconciled \"x\"\n\tand\u{1}", metadata: ["trigger": "link", "added": "2"])
        #expect(line.hasSuffix("}\n") && !line.dropLast().contains("\n"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
        #expect(object == ["time": "1970-01-01T00:00:00.000Z", "level": "notice", "logger": "returnpath.agent",
                           "message": "reconciled \"x\"\n\tand\u{1}", "trigger": "link", "added": "2"])
        #expect(line.hasPrefix("{\"time\":"))
    }

    /// Triggers: only what can touch what we own, and never our own changes.
    @Test func theClassifierPicksWhatCanTouchOurObjects() throws {
        var classifier = EventClassifier()
        var policy = Policy(name: "p", interfaces: [Policy.Interface(name: "eth1", gateway: try #require(IPAddress("10.0.0.1")))])
        policy.interfaces[0].servicesFrom = Policy.ServicesFrom(interface: "lo", prefixes: [try IPPrefix(parsing: "192.168.1.0/24")])
        classifier.watch(policy)
        classifier.names = [1: "lo", 2: "eth1", 3: "eth0"]
        classifier.ownPorts = [4242]

        func link(_ index: Int32, _ name: String, flags: UInt32, deleted: Bool = false) -> NetlinkEvent {
            var e = NetlinkEvent(kind: .link, deleted: deleted, sender: 0, type: UInt16(deleted ? RTM_DELLINK : RTM_NEWLINK))
            e.interfaceIndex = index
            e.interfaceName = name
            e.linkFlags = flags
            return e
        }
        let up = clinux_IFF_UP | clinux_IFF_LOWER_UP | 0x40
        #expect(classifier.classify(link(2, "eth1", flags: up)) == .link)
        #expect(classifier.classify(link(2, "eth1", flags: up)) == nil, "nothing changed")
        #expect(classifier.classify(link(2, "eth1", flags: 0)) == nil, "down: nothing can be put back")
        #expect(classifier.classify(link(2, "eth1", flags: up)) == .link)
        #expect(classifier.classify(link(3, "eth0", flags: 0)) == nil, "not a policy interface")
        #expect(classifier.classify(link(2, "eth1", flags: up, deleted: true)) == .link)

        func address(_ index: Int32, _ text: String, deleted: Bool = false) throws -> NetlinkEvent {
            var e = NetlinkEvent(kind: .address, deleted: deleted, sender: 0, type: UInt16(RTM_NEWADDR))
            e.interfaceIndex = index
            e.address = try #require(IPAddress(text))
            e.family = e.address?.family.rawValue ?? 0
            return e
        }
        #expect(classifier.classify(try address(1, "192.168.1.7")) == .address)
        #expect(classifier.classify(try address(1, "192.168.1.7", deleted: true)) == .address)
        #expect(classifier.classify(try address(1, "172.16.0.1")) == nil, "outside the prefixes")
        #expect(classifier.classify(try address(3, "10.1.1.1")) == nil)

        func rule(_ priority: UInt32, sender: UInt32, deleted: Bool = true) -> NetlinkEvent {
            var e = NetlinkEvent(kind: .rule, deleted: deleted, sender: sender, type: UInt16(RTM_DELRULE))
            e.priority = priority
            return e
        }
        #expect(classifier.classify(rule(20100, sender: 0)) == .rule)
        #expect(classifier.classify(rule(20100, sender: 4242)) == nil, "our own change")
        #expect(classifier.classify(rule(32766, sender: 0)) == nil, "outside the band")
        #expect(classifier.classify(rule(20500, sender: 77, deleted: false)) == .rule, "a foreign rule in the band")

        var route = NetlinkEvent(kind: .route, deleted: true, sender: 0, type: UInt16(RTM_DELROUTE))
        route.table = 52001
        #expect(classifier.classify(route) == .route)
        route.table = 254
        #expect(classifier.classify(route) == nil)

        var nft = NetlinkEvent(kind: .nftables, deleted: true, sender: 99, type: 8)
        nft.family = NftTable.inetFamily
        nft.nftTable = "returnpath"
        #expect(classifier.classify(nft) == .nftables)
        nft.nftTable = "filter"
        #expect(classifier.classify(nft) == nil)
    }

    /// Notifications decode from the kernel's wire format.
    @Test func eventsDecode() throws {
        var message = MessageBuilder(type: UInt16(RTM_DELRULE), flags: 0)
        var header = fib_rule_hdr()
        header.family = 2
        header.table = 252
        message.append(header: header)
        message.append(attribute: UInt16(FRA_PRIORITY), u32: 20100)
        message.append(attribute: UInt16(FRA_TABLE), u32: 52001)
        message.append(attribute: UInt16(FRA_PROTOCOL), u8: 212)
        var bytes = message.finished(sequence: 0)
        bytes.withUnsafeMutableBytes { $0.storeBytes(of: UInt32(777), toByteOffset: 12, as: UInt32.self) }
        let parsed = try bytes.withUnsafeBytes { try NetlinkMessage.parse($0) }
        let first = try #require(parsed.first)
        let event = try #require(NetlinkEvent.decode(first, netfilter: false))
        #expect(event.kind == .rule && event.deleted && event.priority == 20100 && event.table == 52001 && event.proto == 212)
        #expect(event.sender == 777)
        #expect(NetlinkEvent.decode(first, netfilter: true) == nil)
    }

    @Test func triggersNameTheMostSpecificCause() {
        #expect(min(Trigger.resync, .link) == .link)
        #expect(Set(Trigger.allCases.map(\.rawValue)) == ["start", "link", "address", "route", "rule", "nftables", "gateway", "policy", "sighup", "resync", "overflow"])
    }
}
