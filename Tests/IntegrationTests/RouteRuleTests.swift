import Foundation
import Namespace
import Netlink
import SystemPackage
import Testing

@Suite(.enabled(if: isRoot, "needs root"))
struct RouteTests {
    func prefix(_ text: String) throws -> IPPrefix { try IPPrefix(parsing: text) }
    func address(_ text: String) throws -> IPAddress { try #require(IPAddress(text)) }

    @Test func addReplaceListDeleteInBigTables() throws {
        try withPair { pair in
            let s = pair.leftSocket
            let route = Route(destination: try prefix("default"), table: 1000, proto: RouteProtocol(rawValue: 213),
                              gateway: try address("10.9.0.2"), device: "a")
            try s.addRoute(route)
            let oracle = try ipJSON(pair.left, "route", "show", "table", "1000")
            #expect(oracle.count == 1)
            #expect(oracle.first?["dst"] as? String == "default")
            #expect(oracle.first?["gateway"] as? String == "10.9.0.2")
            #expect(oracle.first?["dev"] as? String == "a")
            #expect(oracle.first?["protocol"] as? String == "213")

            // Adding it again is EEXIST; replace is idempotent.
            #expect(netlinkError { try s.addRoute(route) }?.errno == .fileExists)
            try s.replaceRoute(route)
            try s.replaceRoute(route)
            #expect(try ipJSON(pair.left, "route", "show", "table", "1000").count == 1)

            var listed = try s.routes(family: .inet, table: 1000)
            #expect(listed.count == 1)
            #expect(listed.first?.gateway == route.gateway)
            #expect(listed.first?.device == "a")
            #expect(listed.first?.proto.rawValue == 213)
            #expect(listed.first?.table == 1000)

            // Every kind of attribute: metric, source hint, scope, onlink, blackhole, unreachable, local, table ≤ 255.
            try s.addRoute(Route(destination: try prefix("10.50.0.0/16"), table: 200, gateway: try address("10.9.0.2"),
                                 device: "a", preferredSource: try address("10.9.0.1"), metric: 50))
            try s.addRoute(Route(destination: try prefix("10.51.0.0/16"), table: 70000, gateway: try address("10.200.0.1"),
                                 device: "a", onlink: true))
            try s.addRoute(Route(destination: try prefix("10.52.0.0/16"), table: 200, type: .blackhole))
            try s.addRoute(Route(destination: try prefix("10.53.0.0/16"), table: 200, type: .unreachable))
            try s.addRoute(Route(destination: try prefix("10.9.0.77/32"), table: RouteTable.local, type: .local, device: "a"))
            try s.addRoute(Route(destination: try prefix("10.54.0.0/16"), scope: .link, device: "a"))

            let t200 = try ipJSON(pair.left, "route", "show", "table", "200")
            let r50 = t200.first { $0["dst"] as? String == "10.50.0.0/16" }
            #expect(r50?["metric"] as? Int == 50)
            #expect(r50?["prefsrc"] as? String == "10.9.0.1")
            #expect(t200.first { $0["dst"] as? String == "10.52.0.0/16" }?["type"] as? String == "blackhole")
            #expect(t200.first { $0["dst"] as? String == "10.53.0.0/16" }?["type"] as? String == "unreachable")
            let onlink = try ipJSON(pair.left, "route", "show", "table", "70000").first
            #expect((onlink?["flags"] as? [String])?.contains("onlink") == true)
            let local = try ipJSON(pair.left, "route", "show", "table", "local", "10.9.0.77")
            #expect(local.first?["type"] as? String == "local")
            let main = try ipJSON(pair.left, "route", "show", "10.54.0.0/16").first
            #expect(main?["scope"] as? String == "link")

            listed = try s.routes(family: .inet)
            #expect(listed.contains { $0.destination.cidr == "10.51.0.0/16" && $0.onlink && $0.table == 70000 })
            #expect(listed.contains { $0.destination.cidr == "10.50.0.0/16" && $0.metric == 50
                                      && $0.preferredSource == IPAddress("10.9.0.1") })
            #expect(listed.contains { $0.destination.cidr == "10.52.0.0/16" && $0.type == .blackhole })
            // Our dump has exactly what `ip route show table all` has (IPv4).
            let all = try ipJSON(pair.left, "-4", "route", "show", "table", "all")
            #expect(listed.count == all.count)

            // Delete only ours: protocol filter. The boot-protocol route in table 200 stays.
            try s.deleteRoute(Route(destination: try prefix("default"), table: 1000, proto: RouteProtocol(rawValue: 213)))
            #expect(try ipJSON(pair.left, "route", "show", "table", "1000").isEmpty)
            #expect(netlinkError {
                try s.deleteRoute(Route(destination: try prefix("default"), table: 1000, proto: RouteProtocol(rawValue: 213)))
            }?.errno == .noSuchProcess)
            try s.deleteRoute(listed.first { $0.destination.cidr == "10.52.0.0/16" }!)
            #expect(try ipJSON(pair.left, "route", "show", "table", "200").count == 2)
        }
    }

    @Test func kernelSideFiltersByTableAndProtocol() throws {
        try withPair { pair in
            let s = pair.leftSocket
            try s.addRoute(Route(destination: try prefix("10.70.0.0/16"), table: 600, proto: RouteProtocol(rawValue: 99),
                                 gateway: try address("10.9.0.2"), device: "a"))
            try s.addRoute(Route(destination: try prefix("10.71.0.0/16"), table: 601, gateway: try address("10.9.0.2"), device: "a"))
            #expect(try s.routes(family: .inet, table: 600).map(\.destination.cidr) == ["10.70.0.0/16"])
            #expect(try s.routes(family: .inet, proto: RouteProtocol(rawValue: 99)).map(\.destination.cidr) == ["10.70.0.0/16"])
            #expect(try s.routes(family: .inet, table: 4242).isEmpty)   // a table that does not exist is empty
            #expect(try s.addresses(family: .inet, interface: "a").map(\.prefix.cidr) == ["10.9.0.1/24"])
        }
    }

    @Test func ipv6Routes() throws {
        try withPair(leftAddress: "fd00:9::1/64", rightAddress: "fd00:9::2/64") { pair in
            let s = pair.leftSocket
            try s.addRoute(Route(destination: try prefix("fd00:50::/48"), table: 300, gateway: try address("fd00:9::2"),
                                 device: "a"))
            let oracle = try ipJSON(pair.left, "-6", "route", "show", "table", "300")
            #expect(oracle.first?["dst"] as? String == "fd00:50::/48")
            #expect(oracle.first?["gateway"] as? String == "fd00:9::2")
            #expect(try s.routes(family: .inet6, table: 300).first?.gateway == IPAddress("fd00:9::2"))
        }
    }

    @Test func kernelMessageComesThroughForUnreachableGateway() throws {
        try withPair { pair in
            let route = Route(destination: try prefix("10.60.0.0/16"), gateway: try address("10.77.0.1"), device: "a")
            let error = try #require(netlinkError { try pair.leftSocket.addRoute(route) })
            guard case .kernel(let operation, let errno, let message) = error else {
                Issue.record("want a kernel error, got \(error)")
                return
            }
            #expect(operation == "add route 10.60.0.0/16 via 10.77.0.1 dev a proto boot")
            #expect(errno == .networkUnreachable)
            #expect(message == "Nexthop has invalid gateway")
            #expect(error.description == "add route 10.60.0.0/16 via 10.77.0.1 dev a proto boot: Nexthop has invalid gateway (Network is unreachable)")
        }
    }

    @Test func badInputIsRejectedBeforeSending() throws {
        try withPair { pair in
            let s = pair.leftSocket
            // IPv4 only: the bad routes are IPv4, and IPv6's link-local routes arrive on their own once the veth has
            // carrier (later, on a slow machine, than this snapshot).
            let before = try ipJSON(pair.left, "-4", "route", "show", "table", "all")
            let bad: [Route] = [
                Route(destination: try prefix("10.1.2.3/24"), device: "a"),                    // host bits
                Route(destination: try prefix("10.1.0.0/24"), table: 0, device: "a"),          // table 0
                Route(destination: try prefix("10.1.0.0/24"), device: "eth9"),                 // unknown device
                Route(destination: try prefix("10.1.0.0/24"), gateway: try address("fd00::1")), // family
                Route(destination: try prefix("10.1.0.0/24"), type: .blackhole, device: "a"),
                Route(destination: try prefix("10.1.0.0/24")),
            ]
            for route in bad {
                let error = try #require(netlinkError { try s.addRoute(route) })
                guard case .invalidRequest = error else { Issue.record("\(route): \(error)"); continue }
            }
            #expect(try ipJSON(pair.left, "-4", "route", "show", "table", "all").count == before.count)
            #expect(throws: PrefixError.self) { try IPPrefix(parsing: "10.1.0.0/33") }
            #expect(throws: PrefixError.self) { try IPPrefix(parsing: "10.1.0/24") }
            #expect(throws: PrefixError.self) { try IPPrefix(parsing: "10.1.0.0/x") }
        }
    }

    @Test func pipelinedBatchReportsEachResult() throws {
        try withPair { pair in
            let routes = try (0..<300).map { i in
                Route(destination: try prefix("10.100.\(i / 256).\(i % 256)/32"), table: 500, gateway: try address("10.9.0.2"),
                      device: "a")
            }
            #expect(try pair.leftSocket.addRoutes(routes).allSatisfy { $0 == nil })
            #expect(try ipJSON(pair.left, "route", "show", "table", "500").count == 300)
            // Again: every one is EEXIST, and the batch says so for each, in order.
            let again = try pair.leftSocket.addRoutes(Array(routes[0..<3]) + [
                Route(destination: try prefix("10.101.0.0/16"), table: 500, gateway: try address("10.9.0.2"), device: "a")])
            #expect(again.prefix(3).allSatisfy { $0?.errno == .fileExists })
            #expect(again[3] == nil)
            #expect(again[1]?.operation == "add route \(routes[1])")
            #expect(try pair.leftSocket.deleteRoutes(routes).allSatisfy { $0 == nil })
            #expect(try ipJSON(pair.left, "route", "show", "table", "500").count == 1)
        }
    }
}

@Suite(.enabled(if: isRoot, "needs root"))
struct RuleTests {
    @Test func addListDeleteEveryField() throws {
        try withPair { pair in
            let s = pair.leftSocket
            let proto = RouteProtocol(rawValue: 213)
            let rules = [
                Rule(priority: 1000, source: try IPPrefix(parsing: "192.168.1.1"), table: 200, proto: proto),
                Rule(priority: 1001, destination: try IPPrefix(parsing: "10.0.0.0/8"), table: 70000, proto: proto),
                Rule(priority: 1002, fwmark: 0x100, fwmask: 0xff00, table: 201, proto: proto),
                Rule(priority: 1003, inputInterface: "a", table: 202, proto: proto),
                Rule(priority: 1004, outputInterface: "a", action: .blackhole, proto: proto),
                Rule(priority: 1005, table: RouteTable.main, proto: proto, suppressPrefixLength: 0),
                Rule(priority: 1006, source: try IPPrefix(parsing: "10.1.0.0/16"), action: .unreachable, proto: proto),
                Rule(priority: 1007, fwmark: 0x1, action: .prohibit, proto: proto),
                Rule(family: .inet6, priority: 1008, source: try IPPrefix(parsing: "fd00::/64"), table: 203, proto: proto),
            ]
            for rule in rules { try s.addRule(rule) }
            let oracle = try ipJSON(pair.left, "rule", "show")
            func rule(_ pref: Int) -> [String: Any]? { oracle.first { $0["priority"] as? Int == pref } }
            #expect(rule(1000)?["src"] as? String == "192.168.1.1")
            #expect(rule(1000)?["table"] as? String == "200")
            #expect(rule(1000)?["protocol"] as? String == "213")
            #expect(rule(1001)?["dst"] as? String == "10.0.0.0")
            #expect(rule(1001)?["dstlen"] as? Int == 8)
            #expect(rule(1001)?["table"] as? String == "70000")
            #expect(rule(1002)?["fwmark"] as? String == "0x100")
            #expect(rule(1002)?["fwmask"] as? String == "0xff00")
            #expect(rule(1003)?["iif"] as? String == "a")
            #expect(rule(1004)?["oif"] as? String == "a")
            #expect(rule(1004)?["action"] as? String == "blackhole")
            #expect(rule(1005)?["suppress_prefixlen"] as? Int == 0)
            #expect(rule(1006)?["action"] as? String == "unreachable")
            #expect(rule(1007)?["action"] as? String == "prohibit")
            let v6 = try ipJSON(pair.left, "-6", "rule", "show").first { $0["priority"] as? Int == 1008 }
            #expect(v6?["src"] as? String == "fd00::")

            // Our dump returns each rule exactly as we gave it.
            let listed = try s.rules()
            for wanted in rules { #expect(listed.contains(wanted), "\(wanted) missing from \(listed)") }
            #expect(listed.count == oracle.count + (try ipJSON(pair.left, "-6", "rule", "show").count))

            // EXCL: an identical rule is EEXIST, never a duplicate.
            let error = try #require(netlinkError { try s.addRule(rules[0]) })
            #expect(error.errno == .fileExists)
            #expect(error.description == "add rule pref 1000 from 192.168.1.1 lookup 200 proto 213: File exists")
            #expect(try ipJSON(pair.left, "rule", "show").count == oracle.count)

            for rule in rules { try s.deleteRule(rule) }
            #expect(try ipJSON(pair.left, "rule", "show").count == 3)
            #expect(netlinkError { try s.deleteRule(rules[0]) }?.errno == .noSuchFileOrDirectory)
        }
    }

    @Test func badRulesAreRejectedBeforeSending() throws {
        try withNamespaces(1) { ns in
            let s = try NetlinkSocket(namespace: ns[0])
            let bad = [
                Rule(source: try IPPrefix(parsing: "10.0.0.1"), table: 200),                     // no priority
                Rule(priority: 10, source: try IPPrefix(parsing: "10.0.0.1"), table: 0),         // table 0
                Rule(priority: 10, source: try IPPrefix(parsing: "fd00::1"), table: 200),        // family
                Rule(priority: 10, fwmark: 0x3, fwmask: 0x1, table: 200),                        // mark outside mask
                Rule(priority: 10, inputInterface: "an-interface-name-too-long", table: 200),
            ]
            for rule in bad {
                let error = try #require(netlinkError { try s.addRule(rule) })
                guard case .invalidRequest = error else { Issue.record("\(rule): \(error)"); continue }
            }
            #expect(try ipJSON(ns[0], "rule", "show").count == 3)
        }
    }

    @Test func tablesAbove255UseTheAttribute() throws {
        try withNamespaces(1) { ns in
            let s = try NetlinkSocket(namespace: ns[0])
            try s.addRule(Rule(priority: 5, table: 4_000_000_000))
            #expect(try ipJSON(ns[0], "rule", "show").first { $0["priority"] as? Int == 5 }?["table"] as? String == "4000000000")
            #expect(try s.rules(family: .inet).contains { $0.priority == 5 && $0.table == 4_000_000_000 })
        }
    }
}

@Suite(.enabled(if: isRoot, "needs root"))
struct LookupTests {
    /// The seed's story in miniature: a service address on lo, a client network behind a router on "a", a default
    /// route elsewhere. The kernel's decision must follow the policy rules and marks, as `ip route get` says.
    @Test func lookupAgreesWithIPRouteGet() throws {
        try withPair { pair in
            let s = pair.leftSocket
            try s.addAddress(try IPPrefix(parsing: "192.168.1.1/32"), to: "lo")
            try s.createVeth("eth0", in: pair.left, peer: "gw", in: pair.right)
            try s.setLink("eth0", up: true)
            try pair.rightSocket.setLink("gw", up: true)
            try s.addAddress(try IPPrefix(parsing: "10.8.0.11/24"), to: "eth0")
            try s.addRoute(Route(destination: try IPPrefix(parsing: "default"), gateway: IPAddress("10.8.0.1"), device: "eth0"))
            try s.addRoute(Route(destination: try IPPrefix(parsing: "default"), table: 200, gateway: IPAddress("10.9.0.2"),
                                 device: "a"))

            let client = try #require(IPAddress("10.111.223.23"))
            var decision = try s.lookup(RouteQuery(destination: client, source: IPAddress("192.168.1.1")))
            #expect(decision.device == "eth0")
            #expect(decision.gateway == IPAddress("10.8.0.1"))
            #expect(decision.table == RouteTable.main)

            try s.addRule(Rule(priority: 1000, source: try IPPrefix(parsing: "192.168.1.1"), table: 200))
            decision = try s.lookup(RouteQuery(destination: client, source: IPAddress("192.168.1.1")))
            #expect(decision.device == "a")
            #expect(decision.gateway == IPAddress("10.9.0.2"))
            #expect(decision.table == 200)
            let oracle = try ipJSON(pair.left, "route", "get", "10.111.223.23", "from", "192.168.1.1").first
            #expect(oracle?["dev"] as? String == decision.device)
            #expect(oracle?["gateway"] as? String == decision.gateway?.description)

            // By mark.
            try s.addRule(Rule(priority: 1001, fwmark: 0x10, fwmask: 0xf0, table: 200))
            decision = try s.lookup(RouteQuery(destination: client, mark: 0x10))
            #expect(decision.device == "a")
            decision = try s.lookup(RouteQuery(destination: client, mark: 0x20))
            #expect(decision.device == "eth0")

            // Input route: a packet from the client arriving on "a" is delivered locally.
            try pair.left.writeSysctl("net.ipv4.conf.all.rp_filter", "0")
            try pair.left.writeSysctl("net.ipv4.conf.a.rp_filter", "0")
            let service = try #require(IPAddress("192.168.1.1"))
            decision = try s.lookup(RouteQuery(destination: service, source: client, inputInterface: "a"))
            #expect(decision.type == .local)
            #expect(decision.inputInterface == "a")
            let input = try ipJSON(pair.left, "route", "get", "192.168.1.1", "from", "10.111.223.23", "iif", "a").first
            #expect(input?["type"] as? String == "local")
        }
    }

    @Test func lookupErrorsCarryTheKernelsWords() throws {
        try withNamespaces(1) { ns in
            let s = try NetlinkSocket(namespace: ns[0])
            let target = try #require(IPAddress("10.1.1.1"))
            let error = try #require(netlinkError { _ = try s.lookup(RouteQuery(destination: target)) })
            #expect(error.errno == .networkUnreachable)
            #expect(error.operation == "get route 10.1.1.1")
        }
    }
}
