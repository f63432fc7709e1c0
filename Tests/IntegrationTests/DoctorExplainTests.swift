import Doctor
import Foundation
import Namespace
import Testing

/// `returnpath doctor explain --json` on a lab's host.
func explain(_ lab: String, host: String = "node", _ arguments: [String]) throws -> (status: Int32, object: [String: Any], raw: CLIResult) {
    let result = try returnpath(["doctor", "explain", "--lab", lab, "--host", host, "--json"] + arguments)
    let object = (try? JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]) ?? [:]
    return (result.status, object, result)
}

/// What `ip route get` says, reduced to what doctor's result has: local, out DEVICE via GATEWAY, or the error.
struct OracleAnswer: Equatable, CustomStringConvertible {
    var local = false
    var device: String?
    var gateway: String?
    var error: String?

    var description: String {
        if let error { return "error \(error)" }
        return local ? "local" : "dev \(device ?? "?") via \(gateway ?? "-")"
    }
}

/// `ip -n NS route get DST from SRC [iif IF] mark M [ipproto P sport S dport D]`: iproute2 as the oracle.
func ipRouteGet(_ namespace: NetworkNamespace, _ words: [String]) throws -> OracleAnswer {
    let result = try execute("/usr/bin/env", ["ip", "-n", namespace.name ?? "", "route", "get"] + words)
    if result.status != 0 {
        let message = result.errors.replacingOccurrences(of: "RTNETLINK answers: ", with: "").trimmingCharacters(in: .whitespacesAndNewlines)
        return OracleAnswer(error: message)
    }
    let first = result.output.split(separator: "\n").first.map(String.init) ?? ""
    let words = first.split(separator: " ").map(String.init)
    func after(_ word: String) -> String? { words.firstIndex(of: word).flatMap { $0 + 1 < words.count ? words[$0 + 1] : nil } }
    if words.first == "local" { return OracleAnswer(local: true) }
    return OracleAnswer(device: after("dev"), gateway: after("via"))
}

/// doctor's answer in the oracle's terms.
func doctorAnswer(_ object: [String: Any]) -> OracleAnswer {
    let result = object["result"] as? [String: Any] ?? [:]
    switch result["outcome"] as? String {
    case "local": return OracleAnswer(local: true)
    case "sent": return OracleAnswer(device: result["device"] as? String, gateway: result["gateway"] as? String)
    case "refused": return OracleAnswer(error: result["error"] as? String)
    default: return OracleAnswer(error: "dropped")
    }
}

/// Explains the packet, asks iproute2 with the mark doctor computed, and expects the same answer, and doctor's own
/// kernel check to agree.
func expectExplainAgrees(_ lab: String, host: String = "node", _ namespace: NetworkNamespace, from: String, to: String,
                         iif: String? = nil, requestIif: String? = nil, mark: String? = nil, proto: String? = "tcp",
                         sport: UInt16? = nil, dport: UInt16? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws {
    var arguments = ["--from", from, "--to", to]
    if let iif { arguments += ["--iif", iif] }
    if let requestIif { arguments += ["--request-iif", requestIif] }
    if let mark { arguments += ["--mark", mark] }
    if let proto { arguments += ["--proto", proto] }
    if let sport { arguments += ["--sport", String(sport)] }
    if let dport { arguments += ["--dport", String(dport)] }
    let (status, object, raw) = try explain(lab, host: host, arguments)
    let question = arguments.joined(separator: " ")
    #expect(status == 0, "\(question): \(raw.output)\(raw.errors)", sourceLocation: sourceLocation)
    #expect(object["agrees"] as? Bool == true, "\(question): \(raw.output)", sourceLocation: sourceLocation)
    var words = [to, "from", from]
    if let iif { words += ["iif", iif] }
    words += ["mark", object["mark"] as? String ?? "0"]
    if let proto { words += ["ipproto", proto] }
    if let sport { words += ["sport", String(sport)] }
    if let dport { words += ["dport", String(dport)] }
    let oracle = try ipRouteGet(namespace, words)
    let ours = doctorAnswer(object)
    #expect(ours == oracle, "\(question): doctor \(ours), ip route get \(words.joined(separator: " ")) \(oracle)", sourceLocation: sourceLocation)
}

@Suite(.enabled(if: isRoot, "needs root"), .serialized)
struct DoctorExplainTests {
    static let seedFlows = [("10.111.223.23", "192.168.1.1", "eth1"), ("10.111.224.23", "192.168.2.1", "eth2")]

    /// Every flow of the seed, its request and its reply, before any fix and under each strategy, with rp_filter off
    /// and strict: doctor's answer is the kernel's, and doctor's verdicts are the probe's.
    @Test func explainAgreesWithTheKernelOnEverySeedFlow() throws {
        for rpFilter in ["0", "1"] {
            try withLab { lab in
                let node = try ns(lab, "node")
                try node.writeSysctl("net.ipv4.conf.all.rp_filter", rpFilter)
                for strategy in ["none", "static", "source", "mark", "ingress"] {
                    if strategy != "none" {
                        #expect(try returnpath("apply", "--lab", lab, "--strategy", strategy).status == 0)
                    }
                    for (index, (client, service, interface)) in Self.seedFlows.enumerated() {
                        let port = UInt16(41000 + index)
                        try expectExplainAgrees(lab, node, from: client, to: service, iif: interface, sport: port, dport: 3000)
                        try expectExplainAgrees(lab, node, from: service, to: client, requestIif: interface, sport: 3000, dport: port)
                        try expectExplainAgrees(lab, node, from: service, to: client, sport: 3000, dport: port)
                    }
                    // doctor's verdict per service is what real connections show.
                    let (_, flows, _) = try probe(lab)
                    let rows = checks(try doctor(lab).object)
                    for (client, service, interface) in Self.seedFlows {
                        let flow = flows.values.first { $0["service"] as? String == "\(service):3000" }
                        let row = rows["\(service)@\(interface)"]
                        let probeSymmetric = flow?["verdict"] as? String == "symmetric" && flow?["connected"] as? Bool == true
                        #expect((row?["verdict"] as? String == "ok") == probeSymmetric,
                                "rp_filter \(rpFilter) \(strategy) \(client) → \(service): doctor \(row ?? [:]) probe \(flow ?? [:])")
                    }
                }
            }
        }
    }

    /// A generated lab (a star of 20 clients around a host) whose host has 20 rules of every kind — from/to, iif,
    /// oif, fwmark with and without mask, ipproto, ports, not, unreachable, prohibit, blackhole, goto, nop, uid range,
    /// tos, suppress_prefixlength, throw routes — and strict, loose and no rp_filter on its interfaces.
    @Test func explainAgreesWithTheKernelOnAGeneratedLabWithTwentyRules() throws {
        let file = try writeTemporary(starTopology(clients: 20, name: "rules20"))
        defer { try? FileManager.default.removeItem(atPath: file) }
        try withLab(file: file) { lab in
            let core = try ns(lab, "core")
            func net(_ i: Int) -> String { "10.100.0.\(i * 4)/30" }
            func client(_ i: Int) -> String { "10.100.0.\(i * 4 + 2)" }
            for i in 1...20 {
                try ip(core, "route", "add", "default", "via", client(i), "dev", "e\(i)", "table", String(300 + i))
            }
            try ip(core, "route", "add", "throw", net(4), "table", "303")
            try ip(core, "route", "add", "unreachable", net(5), "table", "306")
            let rules: [[String]] = [
                ["pref", "100", "from", "192.168.0.1", "to", net(1), "lookup", "301"],
                ["pref", "101", "iif", "e2", "lookup", "302"],
                ["pref", "102", "fwmark", "0x10/0xf0", "lookup", "303"],
                ["pref", "103", "fwmark", "0x20", "lookup", "304"],
                ["pref", "104", "ipproto", "tcp", "dport", "80", "iif", "e5", "lookup", "305"],
                ["pref", "105", "ipproto", "udp", "lookup", "306"],
                ["pref", "107", "to", net(8), "lookup", "308", "suppress_prefixlength", "0"],
                ["pref", "108", "to", net(9), "unreachable"],
                ["pref", "109", "to", net(10), "prohibit"],
                ["pref", "110", "to", net(11), "blackhole"],
                ["pref", "111", "sport", "1000-2000", "lookup", "312"],
                ["pref", "112", "to", net(13), "goto", "115"],
                ["pref", "113", "to", net(13), "lookup", "320"],
                ["pref", "114", "nop"],
                ["pref", "115", "to", net(13), "lookup", "313"],
                ["pref", "116", "uidrange", "1000-2000", "lookup", "316"],
                ["pref", "117", "tos", "0x10", "lookup", "317"],
                ["pref", "118", "oif", "e18", "lookup", "318"],
                ["pref", "119", "iif", "e19", "fwmark", "0x0/0xff", "lookup", "319"],
                // Last: `not` inverts every selector together, so it catches nearly everything that gets this far.
                ["pref", "130", "not", "from", "192.168.0.0/16", "iif", "e7", "lookup", "307"],
            ]
            #expect(rules.count == 20)
            for rule in rules { try ip(core, ["rule", "add"] + rule) }
            try core.writeSysctl("net.ipv4.conf.e7.rp_filter", "1")
            try core.writeSysctl("net.ipv4.conf.e2.rp_filter", "1")
            try core.writeSysctl("net.ipv4.conf.e3.rp_filter", "2")
            try core.writeSysctl("net.ipv4.conf.e19.rp_filter", "1")
            try core.writeSysctl("net.ipv4.conf.e19.src_valid_mark", "1")
            let marks = ["0x0", "0x10", "0x20", "0x1f", "0x100"]
            for i in 1...20 {
                let mark = marks[i % marks.count]
                let sport = UInt16(i == 12 ? 1500 : 40000 + i)
                // The request, and the same with another protocol and no mark.
                try expectExplainAgrees(lab, host: "core", core, from: client(i), to: "192.168.0.1", iif: "e\(i)", mark: mark,
                                        sport: sport, dport: 80)
                try expectExplainAgrees(lab, host: "core", core, from: client(i), to: "192.168.0.1", iif: "e\(i)", proto: "udp",
                                        sport: sport, dport: 53)
                // The reply, as a reply and as a packet the host sends with a mark.
                try expectExplainAgrees(lab, host: "core", core, from: "192.168.0.1", to: client(i), requestIif: "e\(i)",
                                        sport: 80, dport: sport)
                try expectExplainAgrees(lab, host: "core", core, from: "192.168.0.1", to: client(i), mark: mark, sport: 80, dport: sport)
                // Forwarded to the next client (the core forwards), with its reverse-path check.
                let next = i % 20 + 1
                try expectExplainAgrees(lab, host: "core", core, from: client(i), to: client(next), iif: "e\(i)", mark: mark,
                                        sport: sport, dport: 80)
                // A spoofed source: the reverse-path check decides.
                try expectExplainAgrees(lab, host: "core", core, from: client(next), to: "192.168.0.1", iif: "e\(i)", sport: sport, dport: 80)
            }
        }
    }

    /// Marks set by others: an iptables-nft MARK target matching the source and the first route's device (a route
    /// chain: the kernel routes again), an nftables set-membership rule in a filter chain (no re-route), and the
    /// fwmark rule that follows the mark.
    @Test func explainFollowsTheMarksOfIptablesAndNftables() throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            try ip(node, ["route", "add", "default", "via", "10.111.221.21", "dev", "eth1", "table", "300"])
            try ip(node, ["rule", "add", "pref", "900", "fwmark", "0x100/0xff00", "lookup", "300"])
            try run(["ip", "netns", "exec", node.name!, "iptables", "-t", "mangle", "-A", "OUTPUT", "-s", "192.168.1.1",
                     "-o", "eth0", "-j", "MARK", "--set-xmark", "0x100/0xff00"])
            let (status, object, raw) = try explain(lab, ["--from", "192.168.1.1", "--to", "10.111.223.23", "--proto", "tcp",
                                                          "--sport", "3000", "--dport", "40000"])
            #expect(status == 0, "\(raw.output)")
            #expect(object["mark"] as? String == "0x100")
            let nft = object["nftables"] as? [String: Any] ?? [:]
            #expect(nft["rerouted"] as? Bool == true)
            let steps = nft["steps"] as? [[String: Any]] ?? []
            #expect(steps.contains { ($0["reason"] as? String)?.contains("-j MARK --set-xmark 0x100/0xff00: mark 0x0 → 0x100") == true }, "\(steps)")
            #expect((object["result"] as? [String: Any])?["device"] as? String == "eth1")
            try expectExplainAgrees(lab, node, from: "192.168.1.1", to: "10.111.223.23", sport: 3000, dport: 40000)
            // svc2 leaves by eth0 too, but its source does not match: no mark, main.
            try expectExplainAgrees(lab, node, from: "192.168.2.1", to: "10.111.224.23", sport: 3000, dport: 40000)

            // The same mark from a filter chain: the kernel does not route again, and doctor says so.
            try run(["ip", "netns", "exec", node.name!, "iptables", "-t", "mangle", "-F", "OUTPUT"])
            try run(["ip", "netns", "exec", node.name!, "nft",
                     "add table ip other; add set ip other svcs { type ipv4_addr; elements = { 192.168.1.1 } }; add chain ip other out { type filter hook output priority 0; }; add rule ip other out ip saddr @svcs meta mark set 0x100"])
            let filtered = try explain(lab, ["--from", "192.168.1.1", "--to", "10.111.223.23"])
            #expect(filtered.object["mark"] as? String == "0x0", "\(filtered.raw.output)")
            #expect((filtered.object["result"] as? [String: Any])?["device"] as? String == "eth0")
            #expect(filtered.object["agrees"] as? Bool == true)
            let text = try returnpath("doctor", "explain", "--lab", lab, "--from", "192.168.1.1", "--to", "10.111.223.23")
            #expect(text.output.contains("changed in a filter chain: the kernel does NOT route again for it"), "\(text.output)")
            let (_, report, _) = try doctor(lab)
            #expect(findings(report, FindingID.markInFilterChain).count == 1)
        }
    }

    /// The text form names every rule, the table, the result and the kernel's answer.
    @Test func theTextShowsEveryStep() throws {
        try withLab { lab in
            #expect(try returnpath("apply", "--lab", lab, "--strategy", "mark").status == 0)
            let text = try returnpath("doctor", "explain", "--lab", lab, "--from", "192.168.1.1", "--to", "10.111.223.23",
                                      "--request-iif", "eth1", "--proto", "tcp", "--sport", "3000", "--dport", "40000")
            #expect(text.status == 0, "\(text.errors)")
            for line in ["inet returnpath output (route chain, priority -150)",
                         "matched: ip saddr 192.168.1.1 is @svc_1; mark 0x0 → 0x2000000",
                         "changed in a route chain: the kernel routes the packet again with it",
                         "20100  from all fwmark 0x2000000/0xe000000 lookup 52001 proto 212",
                         "→ table 52001: default via 10.111.221.21 dev eth1",
                         "result: out eth1 via 10.111.221.21 (rule 20100 → table 52001",
                         "kernel: ip route get 10.111.223.23 from 192.168.1.1 mark 0x2000000 ipproto tcp sport 3000 dport 40000",
                         "(agrees)"] {
                #expect(text.output.contains(line), "missing \"\(line)\" in\n\(text.output)")
            }
            let request = try returnpath("doctor", "explain", "--lab", lab, "--from", "10.111.223.23", "--to", "192.168.2.1", "--iif", "eth1")
            #expect(request.output.contains("skipped: iifname eth1 is not eth2"), "\(request.output)")
        }
    }
}

/// `ip -n NS ARGS…` with the arguments as an array.
func ip(_ ns: NetworkNamespace, _ arguments: [String]) throws {
    try run(["ip", "-n", ns.name ?? ""] + arguments)
}
