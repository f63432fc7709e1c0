import ArgumentParser
import Foundation
import Lab
import Netlink
import Probe

struct ProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "Connect each client to each service and tell, with packet evidence, where the SYN came in and the SYN-ACK went out.",
        discussion: """
            Verdicts: symmetric (connected; the SYN-ACK left by the SYN's interface), asymmetric (it left by another), \
            unanswered (SYN seen, nothing back), refused (RST back), unreached (the SYN never reached the service's host).
            Exit status: 0 when every flow connected symmetrically, 1 otherwise, 2 on usage or lab errors.
            """)

    @Option(name: .long, help: "Lab name.")
    var lab = "seed"

    @Option(name: .customLong("from"), help: "Source host of an ad-hoc flow (pair each with --to).")
    var sources: [String] = []

    @Option(name: .customLong("to"), help: "ADDRESS:PORT of an ad-hoc flow.")
    var destinations: [String] = []

    @Flag(name: .long, help: "Probe only the --from/--to flows, not the lab's default ones as well.")
    var only = false

    @Option(name: .long, help: "Seconds to wait for each flow (they run concurrently).")
    var timeout: Double = 2

    @Flag(name: .long, help: "JSON for scripts.")
    var json = false

    @Option(name: .long, help: "Write every captured packet to this pcap file (LINUX_SLL2).")
    var pcap: String?

    @Flag(name: .long, help: "Show the packets of every flow, not only of failing ones.")
    var trace = false

    func validate() throws {
        guard sources.count == destinations.count else {
            throw ValidationError("each --from needs a --to (got \(sources.count) --from and \(destinations.count) --to)")
        }
        guard timeout > 0 && timeout <= 60 else { throw ValidationError("--timeout must be in (0, 60] seconds") }
        if only && sources.isEmpty { throw ValidationError("--only needs --from/--to flows") }
    }

    func run() throws {
        try LabSupport.checkName(lab)
        let (_, topology) = try LabSupport.topology(of: lab)
        var flows = only ? [] : topology.defaultFlows.map { Flow(source: $0.source, address: $0.address, port: $0.port) }
        for (source, destination) in zip(sources, destinations) {
            guard topology.host(source) != nil else {
                throw fail("lab \(lab) has no host \"\(source)\" (hosts: \(topology.hosts.map(\.name).joined(separator: ", ")))", code: 2)
            }
            guard let (address, port) = IPAddress.parseEndpoint(destination) else {
                throw fail("--to \"\(destination)\" is not ADDRESS:PORT", code: 2)
            }
            let flow = Flow(source: source, address: address, port: port)
            if !flows.contains(flow) { flows.append(flow) }
        }
        guard !flows.isEmpty else { throw fail("lab \(lab) has no clients with routes to services; give --from/--to", code: 2) }

        let results: [FlowResult]
        let prober = Prober(lab: lab, topology: topology, timeout: timeout)
        do { results = try prober.run(flows) } catch {
            throw fail(error.description, code: 2)
        }
        if prober.counters.dropped > 0 {
            FileHandle.standardError.write(Data("returnpath: warning: the capture dropped \(prober.counters.dropped) packets; evidence may be incomplete\n".utf8))
        }
        if let pcap {
            do { try PcapFile.write(results.flatMap(\.packets), to: pcap) } catch { throw fail(error.description, code: 1) }
        }
        print(json ? Self.json(results) : Self.table(results, trace: trace))
        if !results.allSatisfy(\.ok) { throw ExitCode(1) }
    }

    static func table(_ results: [FlowResult], trace: Bool) -> String {
        let headers = ["FLOW", "RESULT", "SYN IN", "SYN-ACK OUT", "VERDICT"]
        let rows = results.map { r in
            ["\(r.flow.source) → \(r.flow.service)", r.result, r.ingress ?? "-", r.egress ?? "-", r.verdict.rawValue]
        }
        let widths = headers.indices.map { i in ([headers[i]] + rows.map { $0[i] }).map(\.count).max() ?? 0 }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in i == cells.count - 1 ? cell : cell.padding(toLength: widths[i] + 2, withPad: " ", startingAt: 0) }
                .joined()
        }
        var lines = [line(headers)] + rows.map(line)
        for r in results where trace || !r.ok {
            lines.append("")
            lines.append("\(r.flow.source) → \(r.flow.service): \(r.verdict.rawValue)" + (r.explanation.map { " — \($0)" } ?? ""))
            if r.packets.isEmpty { lines.append("  (no packets seen on \(r.serviceHost ?? "any host"))") }
            for packet in r.packets { lines.append("  " + packet.tcpdumpLine) }
        }
        return lines.joined(separator: "\n")
    }

    static func json(_ results: [FlowResult]) -> String {
        let flows: [[String: Any]] = results.map { r in
            [
                "source": r.flow.source,
                "service": r.flow.service,
                "connected": r.connected,
                "reply": r.reply.map { $0 as Any } ?? NSNull(),
                "ingress": r.ingress.map { $0 as Any } ?? NSNull(),
                "egress": r.egress.map { $0 as Any } ?? NSNull(),
                "verdict": r.verdict.rawValue,
                "result": r.result,
                "service_host": r.serviceHost.map { $0 as Any } ?? NSNull(),
                "client": r.clientAddress.map { "\($0)" as Any } ?? NSNull(),
                "client_port": r.clientPort.map { Int($0) as Any } ?? NSNull(),
                "explanation": r.explanation.map { $0 as Any } ?? NSNull(),
                "backend": r.backend.map { $0 as Any } ?? NSNull(),
                "backend_host": r.backendHost.map { $0 as Any } ?? NSNull(),
                "packets": r.packets.map { p -> [String: Any] in
                    ["time": p.time, "interface": p.interface, "direction": p.direction.rawValue,
                     "source": "\(p.source)", "source_port": Int(p.sourcePort), "destination": "\(p.destination)",
                     "destination_port": Int(p.destinationPort), "flags": p.flagText, "seq": Int(p.sequence),
                     "ack": Int(p.acknowledgment), "length": p.length, "line": p.tcpdumpLine]
                },
            ]
        }
        let data = (try? JSONSerialization.data(withJSONObject: ["flows": flows], options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
