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
            let pcapFile = FileManager.default.temporaryDirectory.appendingPathComponent("rp-probe-\(getpid()).pcap").path
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

            // Our pcap file: tcpdump reads it, with the same packets, directions and LINUX_SLL2.
            let read = try run(["ip", "netns", "exec", node.name!, "tcpdump", "-r", pcapFile, "-nn"])
            let lines = read.split(separator: "\n")
            #expect(lines.count == ours.count)
            #expect(tuples(read) == tuples(ours.joined(separator: "\n")))
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
