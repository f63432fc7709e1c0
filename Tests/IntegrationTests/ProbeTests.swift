import Foundation
import Lab
import Namespace
import Netlink
import Testing

/// `returnpath probe --json`, parsed: flows by "source>service".
func probe(_ lab: String, _ extra: [String] = []) throws -> (status: Int32, flows: [String: [String: Any]], raw: CLIResult) {
    let result = try returnpath(["probe", "--lab", lab, "--json", "--timeout", "1.5"] + extra)
    let object = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]
    var flows: [String: [String: Any]] = [:]
    for flow in object?["flows"] as? [[String: Any]] ?? [] {
        flows["\(flow["source"] ?? "")>\(flow["service"] ?? "")"] = flow
    }
    return (result.status, flows, result)
}

/// The POC's source-based routing fix, typed by hand as a user would (optionally with its typo: svc2 → device1).
func sourceRouting(_ lab: String, typo: Bool = false) throws {
    let node = try ns(lab, "node")
    try ip(node, "route", "add", "default", "via", "10.111.221.21", "dev", "eth1", "table", "200")
    try ip(node, "rule", "add", "pref", "1000", "from", "192.168.1.1", "lookup", "200")
    try ip(node, "route", "add", "default", "via", "10.111.222.21", "dev", "eth2", "table", "201")
    try ip(node, "rule", "add", "pref", "1001", "from", "192.168.2.1", "lookup", typo ? "200" : "201")
}

@Suite(.enabled(if: isRoot, "needs root"), .serialized)
struct ProbeTests {
    @Test func beforeAnyFixBothFlowsAreAsymmetricAndFail() throws {
        try withLab { lab in
            let (status, flows, _) = try probe(lab)
            #expect(status == 1)
            #expect(flows.count == 2)
            for (key, ingress) in [("client1>192.168.1.1:3000", "eth1"), ("client2>192.168.2.1:3000", "eth2")] {
                let flow = try #require(flows[key], "\(key) missing")
                #expect(flow["verdict"] as? String == "asymmetric")
                #expect(flow["ingress"] as? String == ingress)
                #expect(flow["egress"] as? String == "eth0")
                #expect(flow["connected"] as? Bool == false)
                #expect(flow["reply"] is NSNull)
                let packets = flow["packets"] as? [[String: Any]] ?? []
                #expect(packets.contains { $0["flags"] as? String == "S" && $0["interface"] as? String == ingress
                                           && $0["direction"] as? String == "In" })
                #expect(packets.contains { $0["flags"] as? String == "S." && $0["interface"] as? String == "eth0"
                                           && $0["direction"] as? String == "Out" })
                #expect((flow["explanation"] as? String)?.contains("default route via 10.111.220.1") == true)
            }
            // The table form shows the evidence of failing flows in tcpdump's words.
            let text = try returnpath("probe", "--lab", lab, "--timeout", "1")
            #expect(text.status == 1)
            #expect(text.output.contains("eth1  In  IP 10.111.223.23."))
            #expect(text.output.contains("eth0  Out IP 192.168.1.1.3000 > 10.111.223.23."))
        }
    }

    @Test func sourceRoutingByHandMakesBothSymmetric() throws {
        try withLab { lab in
            try sourceRouting(lab)
            let (status, flows, raw) = try probe(lab)
            #expect(status == 0, "\(raw.output)")
            #expect(flows["client1>192.168.1.1:3000"]?["verdict"] as? String == "symmetric")
            #expect(flows["client1>192.168.1.1:3000"]?["reply"] as? String == "svc1")
            #expect(flows["client1>192.168.1.1:3000"]?["egress"] as? String == "eth1")
            #expect(flows["client2>192.168.2.1:3000"]?["verdict"] as? String == "symmetric")
            #expect(flows["client2>192.168.2.1:3000"]?["reply"] as? String == "svc2")
            #expect(flows["client2>192.168.2.1:3000"]?["egress"] as? String == "eth2")
        }
    }

    @Test func thePOCsTypoIsAsymmetricEvenThoughItConnects() throws {
        try withLab { lab in
            try sourceRouting(lab, typo: true)
            let (status, flows, _) = try probe(lab)
            #expect(status == 1)
            let flow = try #require(flows["client2>192.168.2.1:3000"])
            #expect(flow["verdict"] as? String == "asymmetric")
            #expect(flow["connected"] as? Bool == true)
            #expect(flow["reply"] as? String == "svc2")
            #expect(flow["ingress"] as? String == "eth2")
            #expect(flow["egress"] as? String == "eth1")
            #expect(flows["client1>192.168.1.1:3000"]?["verdict"] as? String == "symmetric")
        }
    }

    @Test func refusedUnreachedAndAdHocFlows() throws {
        try withLab { lab in
            let (status, flows, _) = try probe(lab, ["--only", "--from", "router", "--to", "192.168.1.1:3001",
                                                     "--from", "client1", "--to", "192.168.9.9:3000",
                                                     "--from", "router", "--to", "192.168.2.1:3000"])
            #expect(status == 1)
            #expect(flows.count == 3)
            #expect(flows["router>192.168.1.1:3001"]?["verdict"] as? String == "refused")
            #expect(flows["router>192.168.1.1:3001"]?["egress"] as? String == "eth1")
            #expect(flows["client1>192.168.9.9:3000"]?["verdict"] as? String == "unreached")
            #expect((flows["client1>192.168.9.9:3000"]?["packets"] as? [Any])?.isEmpty == true)
            // The router reaches svc2 through eth2, and the node answers through eth2: its connected route.
            #expect(flows["router>192.168.2.1:3000"]?["verdict"] as? String == "symmetric")
            #expect(flows["router>192.168.2.1:3000"]?["reply"] as? String == "svc2")
        }
    }

    @Test func packetsAgreeWithTcpdumpAndThePcapFileReads() throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            let textFile = FileManager.default.temporaryDirectory.appendingPathComponent("rp-tcpdump-\(getpid()).txt").path
            let pcapFile = FileManager.default.temporaryDirectory.appendingPathComponent("rp-probe-\(getpid()).pcapng").path
            defer {
                try? FileManager.default.removeItem(atPath: textFile + ".pcap")
                try? FileManager.default.removeItem(atPath: pcapFile)
            }
            // tcpdump in the node's namespace, on the same traffic, in immediate mode (else packets of the last second
            // wait in the kernel's ring and are lost when tcpdump is stopped). Spawned by our own spawn, which resets the signal
            // mask: a child of a Swift concurrency thread would otherwise inherit blocked SIGTERM.
            let capture = textFile + ".pcap"
            var errors: [Int32] = [-1, -1]
            try #require(pipe(&errors) == 0)
            let tcpdump = try node.spawn(["tcpdump", "-i", "any", "-nn", "-U", "--immediate-mode", "-w", capture, "tcp port 3000"],
                                         descriptors: [ChildDescriptor(nil, as: 0), ChildDescriptor(nil, as: 1),
                                                       ChildDescriptor(errors[1], as: 2)])
            close(errors[1])
            var stopped = false
            defer {
                if !stopped { kill(tcpdump, SIGKILL); _ = waitForExit(tcpdump) }
                close(errors[0])
            }
            // tcpdump says "listening on any, …" once its capture is open: from then on it sees every packet.
            var said = ""
            var byte: UInt8 = 0
            while !said.contains("listening on"), read(errors[0], &byte, 1) == 1 { said.append(Character(UnicodeScalar(byte))) }
            try #require(said.contains("listening on"), "tcpdump: \(said)")
            let (_, flows, _) = try probe(lab, ["--pcap", pcapFile, "--timeout", "1.5"])
            usleep(300_000)
            kill(tcpdump, SIGTERM)
            _ = waitForExit(tcpdump)
            stopped = true

            func tuples(_ text: String) -> [String] {
                text.split(separator: "\n").compactMap { line -> String? in
                    let words = line.split(separator: " ", omittingEmptySubsequences: true)
                    guard words.count > 7, let flags = line.range(of: "Flags [") else { return nil }
                    let flag = line[flags.upperBound...].prefix { $0 != "]" }
                    return "\(words[1]) \(words[2]) \(words[4]) \(words[6].dropLast()) \(flag)"
                }.sorted()
            }
            // Read inside the node's namespace: tcpdump names SLL2 interface indices from the namespace it runs in.
            let theirs = tuples(try run(["ip", "netns", "exec", node.name!, "tcpdump", "-r", capture, "-nn"]))
            let ours = flows.values.flatMap { $0["packets"] as? [[String: Any]] ?? [] }.compactMap { $0["line"] as? String }
            #expect(!ours.isEmpty)
            #expect(tuples(ours.joined(separator: "\n")) == theirs)

            // Our pcapng file: tcpdump reads it inside the namespace, with the same packets, directions and LINUX_SLL2…
            let read = try run(["ip", "netns", "exec", node.name!, "tcpdump", "-r", pcapFile, "-nn"])
            let lines = read.split(separator: "\n")
            #expect(lines.count == ours.count)
            #expect(tuples(read) == tuples(ours.joined(separator: "\n")))
            // …and tshark, anywhere, names every packet's interface and direction from the file alone.
            let fields = try run(["tshark", "-r", pcapFile, "-T", "fields", "-e", "frame.interface_name",
                                  "-e", "frame.packet_flags_direction", "-e", "ip.src", "-e", "ip.dst", "-e", "tcp.srcport"])
            let theirLines = fields.split(separator: "\n").map { line -> String in
                let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
                let direction = f.count > 1 ? (f[1].hasSuffix("1") ? "In" : f[1].hasSuffix("2") ? "Out" : "?") : "?"
                return f.count > 4 ? "\(f[0]) \(direction) \(f[2]).\(f[4])" : line.description
            }.sorted()
            let ourLines = flows.values.flatMap { $0["packets"] as? [[String: Any]] ?? [] }.map { p in
                "\(p["interface"] ?? "") \(p["direction"] ?? "") \(p["source"] ?? "").\(p["source_port"] ?? "")"
            }.sorted()
            #expect(theirLines == ourLines)
            #expect(Set(theirLines.map { $0.split(separator: " ")[0] }) == ["eth0", "eth1", "eth2"])
        }
    }

    /// The verdict is known when the SYN-ACK leaves by the wrong interface: the probe does not wait for the timeout.
    @Test func asymmetricFlowsAreDecidedWithoutWaitingForTheTimeout() throws {
        try withLab { lab in
            let start = Date()
            let (status, flows, _) = try probe(lab, ["--timeout", "10"])
            let elapsed = Date().timeIntervalSince(start)
            #expect(status == 1)
            #expect(elapsed < 2, "took \(elapsed) s")
            for flow in flows.values {
                #expect(flow["verdict"] as? String == "asymmetric")
                #expect(flow["result"] as? String == "no SYN-ACK")
                #expect((flow["decided_after"] as? Double ?? 1) < 0.5)
            }
        }
    }

    /// 100 clients of a generated lab (a star around one service host), all at once.
    @Test func aHundredFlowsOfAGeneratedLab() throws {
        let file = try writeTemporary(starTopology(clients: 100))
        defer { try? FileManager.default.removeItem(atPath: file) }
        try withLab(file: file) { lab in
            let start = Date()
            let (status, flows, raw) = try probe(lab, ["--timeout", "10"])
            let elapsed = Date().timeIntervalSince(start)
            #expect(status == 0, "\(raw.errors)")
            #expect(flows.count == 100)
            #expect(flows.values.allSatisfy { $0["verdict"] as? String == "symmetric" && $0["reply"] as? String == "core" })
            #expect(elapsed < 4, "took \(elapsed) s")
        }
    }

    /// A passive probe makes no connection: it sees what clients do on their own, with the same verdicts.
    @Test func passiveProbeSeesTheClientsOwnConnections() throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            let pcapFile = FileManager.default.temporaryDirectory.appendingPathComponent("rp-passive-\(getpid()).pcapng").path
            defer { try? FileManager.default.removeItem(atPath: pcapFile) }
            // The hand-made fix for svc2 only: client2's connections are symmetric, client1's are not.
            try ip(node, "route", "add", "default", "via", "10.111.222.21", "dev", "eth2", "table", "201")
            try ip(node, "rule", "add", "pref", "1001", "from", "192.168.2.1", "lookup", "201")
            let watcher = try BackgroundCommand(returnpathBinary, ["probe", "--passive", "--lab", lab, "--duration", "4",
                                                                   "--json", "--pcap", pcapFile])
            try #require(try watcher.waitForError(containing: "listening on"), "\(watcher.errors)")
            let first = try returnpath("lab", "exec", "--name", lab, "client1", "--", "nc", "-w", "1", "192.168.1.1", "3000")
            let second = try returnpath("lab", "exec", "--name", lab, "client2", "--", "nc", "-w", "1", "192.168.2.1", "3000")
            #expect(first.output.isEmpty)
            #expect(second.output == "svc2\n")
            let result = watcher.wait()
            #expect(result.status == 1, "\(result.errors)")
            let object = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]
            #expect(object?["passive"] as? Bool == true)
            let seen = object?["flows"] as? [[String: Any]] ?? []
            let one = try #require(seen.first { $0["service"] as? String == "192.168.1.1:3000" }, "\(result.output)")
            #expect(one["source"] as? String == "10.111.223.23")
            #expect(one["ingress"] as? String == "eth1")
            #expect(one["egress"] as? String == "eth0")
            #expect(one["verdict"] as? String == "asymmetric")
            #expect(one["connected"] as? Bool == false)
            let two = try #require(seen.first { $0["service"] as? String == "192.168.2.1:3000" }, "\(result.output)")
            #expect(two["ingress"] as? String == "eth2")
            #expect(two["egress"] as? String == "eth2")
            #expect(two["verdict"] as? String == "symmetric")
            #expect(two["connected"] as? Bool == true)
            // The pcapng names the interfaces.
            let names = try run(["tshark", "-r", pcapFile, "-T", "fields", "-e", "frame.interface_name"])
            #expect(Set(names.split(separator: "\n").map(String.init)) == ["eth0", "eth1", "eth2"])
        }
    }

    @Test func passiveUsageErrorsExitTwo() throws {
        #expect(try returnpath("probe", "--passive", "--from", "client1", "--to", "192.168.1.1:3000").status == 2)
        #expect(try returnpath("probe", "--passive", "--netns", "rp-nosuch-namespace", "--duration", "1").status == 2)
        #expect(try returnpath("probe", "--netns", "rp-nosuch-namespace").status == 2)
        try withLab { (lab: String) throws in
            #expect(try returnpath("probe", "--passive", "--lab", lab, "--interface", "eth9", "--duration", "1").status == 2)
        }
    }

    @Test func usageAndLabErrorsExitTwo() throws {
        #expect(try returnpath("probe", "--lab", "nosuchlab").status == 2)
        try withLab { (lab: String) throws in
            #expect(try returnpath("probe", "--lab", lab, "--from", "nobody", "--to", "192.168.1.1:3000").status == 2)
            #expect(try returnpath("probe", "--lab", lab, "--from", "router").status == 2)
            #expect(try returnpath("probe", "--lab", lab, "--from", "router", "--to", "192.168.1.1").status == 2)
        }
    }
}
