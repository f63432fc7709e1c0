import ArgumentParser
import Lab
import Namespace
import Netlink
import Probe
import Synchronization
#if canImport(Glibc)
import Glibc
import TextFormat
#endif

struct ProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "Connect each client to each service (or, with --passive, watch real traffic) and tell, with packet evidence, where the SYN came in and the SYN-ACK went out.",
        discussion: """
            Verdicts: symmetric (connected; the SYN-ACK left by the SYN's interface), asymmetric (it left by another), \
            unanswered (SYN seen, nothing back), refused (RST back), unreached (the SYN never reached the service's host).
            --passive makes no connection: it watches connections to the service addresses (the global addresses on lo, \
            and a lab host's services) for --duration seconds and judges each one it sees.
            Exit status: 0 when every flow connected symmetrically, 1 otherwise, 2 on usage or lab errors.
            """)

    @Option(name: .long, help: "Lab name (default seed; with --passive, default: the current namespace).")
    var lab: String?

    @Option(name: .long, help: "With --passive --lab: the host to watch (default node).")
    var host = "node"

    @Option(name: .long, help: "With --passive: watch this named network namespace (ip netns).")
    var netns: String?

    @Option(name: .customLong("from"), help: "Source host of an ad-hoc flow (pair each with --to).")
    var sources: [String] = []

    @Option(name: .customLong("to"), help: "ADDRESS:PORT of an ad-hoc flow.")
    var destinations: [String] = []

    @Flag(name: .long, help: "Probe only the --from/--to flows, not the lab's default ones as well.")
    var only = false

    @Option(name: .long, help: "Seconds to wait for each flow (they run concurrently).")
    var timeout: Double = 2

    @Flag(name: .long, help: "Make no connection: watch the connections others make to the service addresses.")
    var passive = false

    @Option(name: .long, help: "With --passive: seconds to watch (Ctrl-C stops earlier and reports).")
    var duration: Double = 10

    @Option(name: .customLong("interface"), help: "With --passive: only connections whose SYN comes in on this interface (repeatable).")
    var interfaces: [String] = []

    @Flag(name: .long, help: "JSON for scripts.")
    var json = false

    @Option(name: .long, help: "Write every captured packet to this pcapng file (interface names and directions kept).")
    var pcap: String?

    @Flag(name: .long, help: "Show the packets of every flow, not only of failing ones.")
    var trace = false

    func validate() throws {
        guard sources.count == destinations.count else {
            throw ValidationError("each --from needs a --to (got \(sources.count) --from and \(destinations.count) --to)")
        }
        guard timeout > 0 && timeout <= 60 else { throw ValidationError("--timeout must be in (0, 60] seconds") }
        if only && sources.isEmpty { throw ValidationError("--only needs --from/--to flows") }
        if lab != nil && netns != nil { throw ValidationError("give --lab or --netns, not both") }
        if passive {
            guard sources.isEmpty && !only else { throw ValidationError("--passive makes no connections: no --from/--to/--only") }
            guard duration > 0 && duration <= 86400 else { throw ValidationError("--duration must be in (0, 86400] seconds") }
            for name in interfaces { if let problem = Link.validate(name: name) { throw ValidationError(problem) } }
        } else {
            if netns != nil { throw ValidationError("--netns is for --passive (an active probe connects from lab hosts: --lab)") }
            if !interfaces.isEmpty { throw ValidationError("--interface is for --passive") }
        }
    }

    func run() throws {
        if passive { return try runPassive() }
        let lab = self.lab ?? "seed"
        try LabSupport.checkName(lab)
        let (_, topology) = try LabSupport.topology(of: lab)
        var pairs = only ? [] : topology.defaultFlows.map { ($0.source, $0.address, $0.port) }
        for (source, destination) in zip(sources, destinations) {
            guard topology.host(source) != nil else {
                throw fail("lab \(lab) has no host \"\(source)\" (hosts: \(topology.hosts.map(\.name).joined(separator: ", ")))", code: 2)
            }
            guard let (address, port) = IPAddress.parseEndpoint(destination) else {
                throw fail("--to \"\(destination)\" is not ADDRESS:PORT", code: 2)
            }
            if !pairs.contains(where: { $0 == (source, address, port) }) { pairs.append((source, address, port)) }
        }
        guard !pairs.isEmpty else { throw fail("lab \(lab) has no clients with routes to services; give --from/--to", code: 2) }
        let flows = try ProbeFlows.resolve(lab: lab, topology: topology, pairs)

        let results: [FlowResult]
        let prober = Prober(timeout: timeout)
        do { results = try prober.run(flows) } catch {
            throw fail(error.description, code: 2)
        }
        try present(results, dropped: prober.counters.dropped, output: ProbeOutput(results, dropped: prober.counters.dropped))
    }

    /// Prints the results (and writes the pcapng file); exit 1 unless every flow connected symmetrically.
    func present(_ results: [FlowResult], dropped: UInt32, output: ProbeOutput) throws {
        if dropped > 0 {
            printError("returnpath: warning: the capture dropped \(dropped) packets; evidence may be incomplete\n")
        }
        if let pcap {
            var byHost: [String: [TCPPacket]] = [:]
            for r in results { byHost[r.serviceHost ?? "?", default: []] += r.packets }
            let captures = byHost.keys.sorted().map { Pcapng.Capture(host: $0, packets: byHost[$0] ?? []) }
            do { try Pcapng.write(captures, to: pcap) } catch { throw fail(error.description, code: 1) }
        }
        if json {
            do { print(try output.json()) } catch { throw fail(error.description, code: 1) }
        } else {
            print(Self.table(results, trace: trace))
        }
        if !results.allSatisfy(\.ok) { throw ExitCode(1) }
    }

    // MARK: passive

    func runPassive() throws {
        let namespace: NetworkNamespace, name: String
        var services: [IPAddress] = []
        if let lab {
            try LabSupport.checkName(lab)
            let (_, topology) = try LabSupport.topology(of: lab)
            guard let entry = topology.host(host) else {
                throw fail("lab \(lab) has no host \"\(host)\" (hosts: \(topology.hosts.map(\.name).joined(separator: ", ")))", code: 2)
            }
            namespace = try LabSupport.existingNamespace(Topology.namespaceName(lab: lab, host: host), lab: lab)
            name = host
            services = entry.services.map(\.address) + entry.dnat.map(\.address)
        } else if let netns {
            namespace = try LabSupport.existingNamespace(netns, lab: nil)
            name = netns
        } else {
            namespace = .current
            name = "this node"
        }
        do {
            let socket = try NetlinkSocket(namespace: namespace)
            let loopback = try socket.addresses(interface: "lo").filter { $0.scope == .universe && !$0.prefix.address.isLoopback }
            for address in loopback.map(\.prefix.address) where !services.contains(address) { services.append(address) }
        } catch {
            throw fail("read the addresses of lo in \(namespace): \(error)", code: 1)
        }
        guard !services.isEmpty else {
            throw fail("no service addresses to watch: \(namespace) has no global address on lo", code: 2)
        }
        let links: [Link]
        do { links = try NetlinkSocket(namespace: namespace).links() } catch {
            throw fail("list interfaces of \(namespace): \(error)", code: 1)
        }
        for interface in interfaces where !links.contains(where: { $0.name == interface }) {
            throw fail("\(namespace) has no interface \(interface)", code: 2)
        }
        PassiveStop.install()
        let watcher = PassiveProbe(host: Flow.Endpoint(name: name, namespace: namespace), services: services,
                                   interfaces: interfaces, duration: duration)
        let report: PassiveProbe.Report
        do {
            report = try watcher.run(listening: {
                let on = interfaces.isEmpty ? "" : " arriving on \(interfaces.joined(separator: ", "))"
                printError("returnpath: listening on \(name) (\(namespace)) for connections to \(services.map(\.description).joined(separator: ", "))\(on), \(duration) s\n")
            }, shouldStop: { PassiveStop.requested })
        } catch {
            throw fail(error.description, code: 1)
        }
        var output = ProbeOutput(report.flows, dropped: report.dropped)
        output.passive = true
        output.host = name
        output.services = services.map(\.description)
        output.seconds = (report.seconds * 1000).rounded() / 1000
        if report.flows.isEmpty && !json {
            print("no connections to \(services.map(\.description).joined(separator: ", ")) seen in \(format("%.1f", report.seconds)) s")
            return
        }
        try present(report.flows, dropped: report.dropped, output: output)
    }

    static func table(_ results: [FlowResult], trace: Bool) -> String {
        let headers = ["FLOW", "RESULT", "SYN IN", "SYN-ACK OUT", "VERDICT"]
        let rows = results.map { r in
            ["\(r.source) → \(r.service)", r.result, r.ingress ?? "-", r.egress ?? "-", r.verdict.rawValue]
        }
        let widths = headers.indices.map { i in ([headers[i]] + rows.map { $0[i] }).map(\.count).max() ?? 0 }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in i == cells.count - 1 ? cell : cell.padded(to: widths[i] + 2) }
                .joined()
        }
        var lines = [line(headers)] + rows.map(line)
        for r in results where trace || !r.ok {
            lines.append("")
            lines.append("\(r.source) → \(r.service): \(r.verdict.rawValue)" + (r.explanation.map { " — \($0)" } ?? ""))
            if r.packets.isEmpty { lines.append("  (no packets seen on \(r.serviceHost ?? "any host"))") }
            for packet in r.packets { lines.append("  " + packet.tcpdumpLine) }
        }
        return lines.joined(separator: "\n")
    }
}

/// A lab's flows as Probe takes them: each client host's namespace, the namespace that owns the destination, the
/// DNAT that host does. The one place lab flows become probe flows (probe and demo use it).
enum ProbeFlows {
    static func resolve(lab: String, topology: Topology, _ flows: [Topology.Flow]) throws -> [Flow] {
        try resolve(lab: lab, topology: topology, flows.map { ($0.source, $0.address, $0.port) })
    }

    static func resolve(lab: String, topology: Topology, _ pairs: [(String, IPAddress, UInt16)]) throws -> [Flow] {
        var namespaces: [String: NetworkNamespace] = [:]
        func namespace(of host: String) throws -> NetworkNamespace {
            if let known = namespaces[host] { return known }
            let made = try LabSupport.existingNamespace(Topology.namespaceName(lab: lab, host: host), lab: lab)
            namespaces[host] = made
            return made
        }
        return try pairs.map { source, address, port in
            let owner = topology.owner(of: address)?.name
            let destination = try owner.map { Flow.Endpoint(name: $0, namespace: try namespace(of: $0)) }
            // The owner DNATs the address and port: the backend's side is evidence too.
            let translation = topology.dnat(to: address, port: port).flatMap { entry -> Flow.Translation? in
                guard entry.host.name == owner else { return nil }
                return Flow.Translation(backend: entry.dnat.backend, backendPort: entry.dnat.backendPort,
                                        masquerade: entry.dnat.masquerade,
                                        backendHost: topology.owner(of: entry.dnat.backend)?.name)
            }
            return Flow(source: source, client: try namespace(of: source), address: address, port: port,
                        destination: destination, translation: translation)
        }
    }
}

/// Ctrl-C (or SIGTERM) during a passive probe: stop watching and report what was seen.
enum PassiveStop {
    private static let flag = Atomic<Bool>(false)
    static var requested: Bool { flag.load(ordering: .relaxed) }

    static func install() {
        for signal in [SIGINT, SIGTERM] {
            Glibc.signal(signal) { _ in PassiveStop.flag.store(true, ordering: .relaxed) }
        }
    }
}
