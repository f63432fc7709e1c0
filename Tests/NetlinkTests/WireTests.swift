import CLinux
@testable import Netlink
import SystemPackage
import Testing

struct WireTests {
    @Test func ruleMessageGoldenBytes() {
        let rule = Rule(priority: 1000, source: try! IPPrefix(parsing: "192.168.1.1"), table: 200)
        let bytes = rule.message(Int32(RTM_NEWRULE), flags: NLM_F_CREATE | NLM_F_EXCL).finished(sequence: 7)
        let expected: [UInt8] = [
            52, 0, 0, 0,            // nlmsg_len
            32, 0,                  // RTM_NEWRULE
            0x00, 0x06,             // NLM_F_CREATE|NLM_F_EXCL (0x400|0x200)
            7, 0, 0, 0,             // seq
            0, 0, 0, 0,             // pid
            2, 0, 32, 0, 200, 0, 0, 1, 0, 0, 0, 0,  // fib_rule_hdr: inet, dst 0, src 32, tos, table 200, action lookup
            8, 0, 6, 0, 0xe8, 0x03, 0, 0,           // FRA_PRIORITY 1000
            8, 0, 2, 0, 192, 168, 1, 1,             // FRA_SRC
            8, 0, 15, 0, 200, 0, 0, 0,              // FRA_TABLE 200
        ]
        #expect(bytes == expected)
    }

    @Test func bigTableGoesInTheAttributeWithUnspecInTheHeader() {
        let bytes = Rule(priority: 1, table: 70000).message(Int32(RTM_NEWRULE), flags: 0).finished(sequence: 1)
        #expect(bytes[16 + 4] == 0)  // header table byte: RT_TABLE_UNSPEC
        let route = Route(destination: try! IPPrefix(parsing: "default"), table: 70000, device: "x")
        let routeBytes = route.message(Int32(RTM_NEWROUTE), flags: 0, deviceIndex: 3).finished(sequence: 1)
        #expect(routeBytes[16 + 4] == 0)
        // RTA_TABLE (15) = 70000 follows the 12-byte rtmsg.
        #expect(Array(routeBytes[28..<36]) == [8, 0, 15, 0, 0x70, 0x11, 0x01, 0x00])
    }

    @Test func stringAttributesArePaddedToFour() {
        var message = MessageBuilder(type: 16, flags: 0)
        message.append(attribute: 3, string: "eth1")       // 4 + 5 = 9, padded to 12
        message.append(attribute: 4, u32: 1500)
        let bytes = message.finished(sequence: 0)
        #expect(bytes.count == 16 + 12 + 8)
        #expect(Array(bytes[16..<28]) == [9, 0, 3, 0, 0x65, 0x74, 0x68, 0x31, 0, 0, 0, 0])
        #expect(bytes[0] == 36)
    }

    @Test func nestedAttributesGetTheirLengthFixedUp() throws {
        var message = MessageBuilder(type: 16, flags: 0)
        message.nest(18) { outer in
            outer.append(attribute: 1, string: "veth")
            outer.nest(2) { inner in inner.append(attribute: 1, u32: 9) }
        }
        let bytes = message.finished(sequence: 0)
        // outer: 4 + (4+5→12) + (4 + 8) = 28
        #expect(Array(bytes[16..<20]) == [28, 0, 18, 0])
        var seen: [UInt16] = []
        try PayloadReader.forEachAttribute(in: bytes[16...]) { type, value throws(WireError) in
            seen.append(type)
            try PayloadReader.forEachAttribute(in: value) { innerType, innerValue throws(WireError) in
                seen.append(innerType)
                if innerType == 2 {
                    try PayloadReader.forEachAttribute(in: innerValue) { t, v throws(WireError) in
                        seen.append(t)
                        #expect(try v.u32() == 9)
                    }
                } else {
                    #expect(innerValue.string() == "veth")
                }
            }
        }
        #expect(seen == [18, 1, 2, 1])
    }

    @Test func truncatedAttributesAndMessagesAreErrors() {
        let badAttribute: [UInt8] = [12, 0, 1, 0, 1, 2, 3, 4]   // says 12, has 8
        #expect(throws: WireError.self) { try PayloadReader.forEachAttribute(in: badAttribute[...]) { _, _ in } }
        let badMessage: [UInt8] = [40, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        #expect(throws: WireError.self) { try badMessage.withUnsafeBytes { try NetlinkMessage.parse($0) } }
        let tooShort: [UInt8] = [8, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
        #expect(throws: WireError.self) { try tooShort.withUnsafeBytes { try NetlinkMessage.parse($0) } }
    }

    @Test func datagramsSplitIntoMessages() throws {
        var a = MessageBuilder(type: 24, flags: 2)
        a.append(attribute: 1, u8: 7)
        let b = MessageBuilder(type: 3, flags: 2)
        let datagram = a.finished(sequence: 5) + b.finished(sequence: 6)
        let messages = try datagram.withUnsafeBytes { try NetlinkMessage.parse($0) }
        #expect(messages.map(\.type) == [24, 3])
        #expect(messages.map(\.sequence) == [5, 6])
        #expect(messages[0].payload == [5, 0, 1, 0, 7, 0, 0, 0])
    }

    @Test func extendedAckTextIsExtracted() throws {
        // NLMSG_ERROR, capped, with TLVs: error -101, the request's header, then NLMSGERR_ATTR_MSG.
        var payload: [UInt8] = withUnsafeBytes(of: Int32(-101)) { Array($0) }
        payload += MessageBuilder(type: 24, flags: 0x405).finished(sequence: 9)
        let text = Array("Nexthop has invalid gateway".utf8) + [0]
        payload += withUnsafeBytes(of: UInt16(4 + text.count)) { Array($0) } + [1, 0] + text
        while payload.count % 4 != 0 { payload.append(0) }
        let message = NetlinkMessage(type: UInt16(NLMSG_ERROR), flags: UInt16(NLM_F_CAPPED | NLM_F_ACK_TLVS),
                                     sequence: 9, portID: 0, payload: payload)
        let failure = try #require(try NetlinkSocket.status(of: message))
        #expect(failure.errno == .networkUnreachable)
        #expect(failure.message == "Nexthop has invalid gateway")
        #expect(failure.error("add route x").description == "add route x: Nexthop has invalid gateway (Network is unreachable)")

        let ack = NetlinkMessage(type: UInt16(NLMSG_ERROR), flags: 0, sequence: 9, portID: 0,
                                 payload: [0, 0, 0, 0] + MessageBuilder(type: 24, flags: 0).finished(sequence: 9))
        #expect(try NetlinkSocket.status(of: ack) == nil)
    }

    @Test func ruleRoundTripsThroughItsOwnEncoding() throws {
        let rule = Rule(family: .inet6, priority: 77, source: try IPPrefix(parsing: "fd00::/64"), fwmark: 0x40, fwmask: 0xf0,
                        inputInterface: "eth1", table: 300, proto: RouteProtocol(rawValue: 9), suppressPrefixLength: 0)
        let bytes = rule.message(Int32(RTM_NEWRULE), flags: 0).finished(sequence: 1)
        let message = try bytes.withUnsafeBytes { try NetlinkMessage.parse($0) }[0]
        #expect(try Rule.decode(message) == rule)
    }

    @Test func routeRoundTripsThroughItsOwnEncoding() throws {
        let route = Route(destination: try IPPrefix(parsing: "10.0.0.0/8"), table: 1234, proto: RouteProtocol(rawValue: 99),
                          scope: .universe, gateway: IPAddress("10.1.1.1"), device: "eth2",
                          preferredSource: IPAddress("10.1.1.2"), metric: 7, onlink: true)
        let bytes = route.message(Int32(RTM_NEWROUTE), flags: 0, deviceIndex: 4).finished(sequence: 1)
        let message = try bytes.withUnsafeBytes { try NetlinkMessage.parse($0) }[0]
        #expect(try Route.decode(message, names: [4: "eth2"]) == route)
    }
}

struct AddressTests {
    @Test func parseAndPrint() throws {
        #expect(IPAddress("10.111.221.11")?.description == "10.111.221.11")
        #expect(IPAddress("fd00:0:0::1")?.description == "fd00::1")
        #expect(IPAddress("10.1.1") == nil)
        #expect(IPAddress("010.1.1.1") == nil)
        #expect(IPAddress("1.2.3.256") == nil)
        #expect(IPAddress("::ffff:1.2.3.4")?.family == .inet6)
        #expect(IPAddress("192.168.1.1")?.bytes == [192, 168, 1, 1])
        #expect(IPAddress(bytes: [0xfd] + Array(repeating: 0, count: 14) + [1])?.description == "fd00::1")
    }

    @Test func prefixes() throws {
        let p = try IPPrefix(parsing: "10.111.221.0/24")
        #expect(p.contains(IPAddress("10.111.221.21")!))
        #expect(!p.contains(IPAddress("10.111.222.21")!))
        #expect(p.isCanonical)
        #expect(!(try IPPrefix(parsing: "10.111.221.11/24")).isCanonical)
        #expect((try IPPrefix(parsing: "10.111.221.11/24")).network.cidr == "10.111.221.0/24")
        #expect((try IPPrefix(parsing: "192.168.1.1")).description == "192.168.1.1")
        #expect((try IPPrefix(parsing: "default")).description == "default")
        #expect((try IPPrefix(parsing: "fd00::1/64")).network.cidr == "fd00::/64")
        #expect((try IPPrefix(parsing: "fd00::ffff:1/100")).network.cidr == "fd00::f000:0/100")
        #expect(throws: PrefixError.self) { try IPPrefix(parsing: "fd00::/129") }
        #expect(throws: PrefixError.self) { try IPPrefix(parsing: "10.0.0.0/-1") }
        #expect(throws: PrefixError.self) { try IPPrefix(parsing: "10.0.0.0/24", family: .inet6) }
    }

    @Test func endpoints() {
        #expect(IPAddress("192.168.1.1")?.endpoint(port: 3000) == "192.168.1.1:3000")
        #expect(IPAddress("fd00::1")?.endpoint(port: 80) == "[fd00::1]:80")
        #expect(IPAddress.parseEndpoint("[fd00::1]:80").map { "\($0.0) \($0.1)" } == "fd00::1 80")
        #expect(IPAddress.parseEndpoint("192.168.1.1:3000").map { "\($0.0) \($0.1)" } == "192.168.1.1 3000")
        for bad in ["192.168.1.1", "192.168.1.1:0", "192.168.1.1:70000", "host:80", "fd00::1:x"] {
            #expect(IPAddress.parseEndpoint(bad) == nil, "\(bad)")
        }
    }

    @Test func ruleAndRouteRenderAsIPArguments() throws {
        let rule = Rule(priority: 1000, source: try IPPrefix(parsing: "192.168.1.1"), table: 200)
        #expect(rule.description == "pref 1000 from 192.168.1.1 lookup 200")
        let route = Route(destination: try IPPrefix(parsing: "default"), table: 200, gateway: IPAddress("10.111.221.21"),
                          device: "eth1")
        #expect(route.description == "default via 10.111.221.21 dev eth1 table 200 proto boot")
        #expect(Rule(priority: 5, fwmark: 0x10, fwmask: 0xf0, table: 254).description == "pref 5 from all fwmark 0x10/0xf0 lookup main")
    }
}
