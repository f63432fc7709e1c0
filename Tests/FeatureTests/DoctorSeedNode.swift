@testable import Doctor
import Foundation
@testable import Netlink
import ReturnRouting
import Testing

/// A recorded node for doctor's unit tests: the seed's node (docs/seed.yaml) as `ip` shows its IPv4 side in a fresh
/// lab (broadcast routes and the IPv6 link-local addresses left out) —
/// eth0 10.111.220.11/24 with the default route via 10.111.220.1, eth1 10.111.221.11/24 and eth2 10.111.222.11/24
/// towards the router (10.111.221.21, 10.111.222.21), svc1 192.168.1.1 and svc2 192.168.2.1 on lo, the kernel's three
/// rules, rp_filter off — built from literals. Each test breaks or fixes it with the rules, routes, addresses and
/// nftables it adds, and runs doctor against `RecordedRouteLookup` (no kernel).
struct SeedNode {
    var links: [Link] = []
    var addresses: [InterfaceAddress] = []
    var rules: [DetailedRule] = []
    var routes: [Route] = []
    var sysctls: [String: String] = [:]
    var nftables = NftRuleset()
    var record: AppliedRecord?
    var policy: Policy

    static let namespace = "rp-seed-node"

    init() throws {
        for (index, name) in ["lo", "eth0", "eth1", "eth2"].enumerated() {
            links.append(Link(index: Int32(index + 1), name: name, flags: 0, mtu: name == "lo" ? 65536 : 1500))
        }
        addresses = [
            InterfaceAddress(interface: "lo", prefix: try prefix("127.0.0.1/8"), scope: .host),
            InterfaceAddress(interface: "lo", prefix: try prefix("192.168.1.1/32")),
            InterfaceAddress(interface: "lo", prefix: try prefix("192.168.2.1/32")),
            InterfaceAddress(interface: "eth0", prefix: try prefix("10.111.220.11/24")),
            InterfaceAddress(interface: "eth1", prefix: try prefix("10.111.221.11/24")),
            InterfaceAddress(interface: "eth2", prefix: try prefix("10.111.222.11/24")),
        ]
        rules = [Self.rule(0, table: RouteTable.local), Self.rule(32766, table: RouteTable.main), Self.rule(32767, table: RouteTable.default)]
        for (device, network) in [("eth0", "10.111.220.0/24"), ("eth1", "10.111.221.0/24"), ("eth2", "10.111.222.0/24")] {
            routes.append(Route(destination: try prefix(network), proto: .kernel, scope: .link, device: device))
        }
        routes.append(Route(destination: .defaultRoute(.inet), proto: .static, gateway: try address("10.111.220.1"), device: "eth0"))
        for entry in addresses {
            routes.append(Route(destination: IPPrefix(host: entry.prefix.address), table: RouteTable.local, type: .local,
                                proto: .kernel, scope: .host, device: entry.interface))
        }
        for name in ["all", "default", "lo", "eth0", "eth1", "eth2"] {
            for setting in NodeState.interfaceSettings { sysctls[NodeState.interfaceKey(name, setting)] = "0" }
        }
        sysctls["net.ipv4.ip_forward"] = "0"
        sysctls["net.ipv4.tcp_fwmark_accept"] = "0"
        // The policy `apply --lab seed` derives: each service on its interface, the router as gateway.
        policy = Policy(name: "seed", interfaces: [
            Policy.Interface(name: "eth1", gateway: try address("10.111.221.21"), services: [try prefix("192.168.1.1/32")],
                             clients: [try prefix("10.111.223.0/24")]),
            Policy.Interface(name: "eth2", gateway: try address("10.111.222.21"), services: [try prefix("192.168.2.1/32")],
                             clients: [try prefix("10.111.224.0/24")]),
        ])
    }

    var state: NodeState {
        NodeState(namespace: .current, links: links, addresses: addresses, rules: rules.sorted { ($0.rule.priority ?? 0) < ($1.rule.priority ?? 0) },
                  routes: routes, sysctls: sysctls, nftables: nftables, record: record)
    }

    var request: DoctorRequest {
        DoctorRequest(policy: policy, source: .lab("seed"), ip: ["ip", "-n", Self.namespace],
                      sysctl: ["ip", "netns", "exec", Self.namespace, "sysctl", "-w"], returnpathTarget: ["--lab", "seed"],
                      isHostNamespace: false)
    }

    /// doctor on this node, every kernel question answered from the recorded state (or `answers`).
    func report(answers: [RouteQuery: Result<KernelRoute, NetlinkError>] = [:]) throws -> DoctorReport {
        let state = self.state
        return try Doctor(state: state, request: request).run(kernel: RecordedRouteLookup(state, answers: answers))
    }

    mutating func addRule(_ priority: UInt32, from source: String? = nil, fwmark: UInt32? = nil, fwmask: UInt32? = nil,
                          table: UInt32, family: AddressFamily = .inet) throws {
        var entry = Self.rule(priority, table: table)
        entry.rule.family = family
        entry.rule.source = try source.map { try prefix($0) }
        entry.rule.fwmark = fwmark
        entry.rule.fwmask = fwmask
        rules.append(entry)
    }

    mutating func addDefault(via gateway: String, device: String, table: UInt32) throws {
        routes.append(Route(destination: .defaultRoute(.inet), table: table, gateway: try address(gateway), device: device))
    }

    /// An nftables ruleset as `nft -j list ruleset` prints it; `items` are the JSON objects after the metainfo.
    mutating func setNftables(_ items: [String]) throws {
        nftables = try NftRuleset.parse(json: "{\"nftables\": [{\"metainfo\": {\"json_schema_version\": 1}}, " + items.joined(separator: ", ") + "]}")
    }

    private static func rule(_ priority: UInt32, table: UInt32) -> DetailedRule {
        DetailedRule(rule: Rule(priority: priority, table: table))
    }
}

func prefix(_ text: String) throws -> IPPrefix { try IPPrefix(parsing: text) }

func address(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> IPAddress {
    try #require(IPAddress(text), sourceLocation: sourceLocation)
}

extension DoctorReport {
    func findings(_ id: String) -> [Finding] { findings.filter { $0.id == id } }

    func row(_ service: String, _ interface: String) -> ReplyCheck? {
        checks.first { $0.label == service && $0.interface == interface }
    }
}

/// nft JSON items: a table, a base or regular chain, a rule, a set.
enum NftJSON {
    static func table(_ family: String, _ name: String) -> String {
        "{\"table\": {\"family\": \"\(family)\", \"name\": \"\(name)\", \"handle\": 1}}"
    }

    static func chain(_ family: String, _ table: String, _ name: String, type: String? = nil, hook: String? = nil,
                      priority: Int = 0) -> String {
        let base = type.map { ", \"type\": \"\($0)\", \"hook\": \"\(hook ?? "output")\", \"prio\": \(priority), \"policy\": \"accept\"" } ?? ""
        return "{\"chain\": {\"family\": \"\(family)\", \"table\": \"\(table)\", \"name\": \"\(name)\", \"handle\": 1\(base)}}"
    }

    static func rule(_ family: String, _ table: String, _ chain: String, handle: Int, _ expressions: [String]) -> String {
        "{\"rule\": {\"family\": \"\(family)\", \"table\": \"\(table)\", \"chain\": \"\(chain)\", \"handle\": \(handle), \"expr\": [\(expressions.joined(separator: ", "))]}}"
    }

    static func set(_ family: String, _ table: String, _ name: String, type: String = "ipv4_addr", elements: [String]) -> String {
        "{\"set\": {\"family\": \"\(family)\", \"table\": \"\(table)\", \"name\": \"\(name)\", \"type\": \"\(type)\", \"handle\": 1, \"elem\": [\(elements.map { "\"\($0)\"" }.joined(separator: ", "))]}}"
    }

    /// `ip saddr VALUE` (an address, or "@set").
    static func sourceIs(_ value: String) -> String {
        "{\"match\": {\"op\": \"==\", \"left\": {\"payload\": {\"protocol\": \"ip\", \"field\": \"saddr\"}}, \"right\": \"\(value)\"}}"
    }

    /// `meta mark set VALUE`, or `meta mark set meta mark | VALUE` when `or`.
    static func setMark(_ value: UInt32, or: Bool = false) -> String {
        let v = or ? "{\"|\": [{\"meta\": {\"key\": \"mark\"}}, \(value)]}" : "\(value)"
        return "{\"mangle\": {\"key\": {\"meta\": {\"key\": \"mark\"}}, \"value\": \(v)}}"
    }
}
