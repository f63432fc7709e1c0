import ArgumentParser
import Doctor
import Netlink

/// `returnpath doctor explain`: one packet's way through the node, step by step, and the kernel's own answer.
struct DoctorExplain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explain",
        abstract: "Explain one packet: nftables marks, every routing rule (matched or skipped, selector by selector), the tables, the egress, the reverse-path check — and the kernel's answer.",
        discussion: """
            Without --iif the packet is sent by the node; with --iif it arrives on IF (a request, or a packet to \
            forward) and the reverse-path check rp_filter makes for it is shown. --request-iif IF makes it the reply \
            of a connection whose request came in on IF (sent by the node, or — with --iif — a pod's reply to forward), \
            so conntrack's mark is known. The same question goes to the kernel \
            (RTM_GETROUTE, as `ip route get … from … iif … mark …`); a disagreement is printed loudly and exits 1.
            Exit: 0 explained, 1 the kernel disagrees or the node could not be read, 2 bad input.
            """)

    @Option(name: .customLong("from"), help: "Source address.")
    var source: String

    @Option(name: .customLong("to"), help: "Destination address.")
    var destination: String

    @Option(name: .long, help: "The packet arrives on this interface.")
    var iif: String?

    @Option(name: .long, help: "The packet's mark before nftables (decimal or 0x…).")
    var mark: String?

    @Option(name: .long, help: "IP protocol: tcp, udp, icmp or a number.")
    var proto: String?

    @Option(name: .long, help: "Source port (with --proto tcp/udp).")
    var sport: UInt16?

    @Option(name: .long, help: "Destination port (with --proto tcp/udp).")
    var dport: UInt16?

    @Option(name: .customLong("request-iif"), help: "The packet is a reply of a connection whose request came in on this interface (conntrack's mark and direction follow).")
    var requestInterface: String?

    @OptionGroup var target: DoctorTarget

    @Flag(name: .long, help: "JSON for scripts.")
    var json = false

    func validate() throws {
        guard IPAddress(source) != nil else { throw ValidationError("--from \"\(source)\" is not an IP address") }
        guard IPAddress(destination) != nil else { throw ValidationError("--to \"\(destination)\" is not an IP address") }
        if let mark, Self.number(mark) == nil { throw ValidationError("--mark \"\(mark)\" is not a 32-bit number") }
        if let proto, Self.protocolNumber(proto) == nil { throw ValidationError("--proto \"\(proto)\" is not tcp, udp, icmp, sctp or 0-255") }
        if (sport != nil || dport != nil) && !["tcp", "udp", "sctp", "6", "17", "132"].contains(proto ?? "") {
            throw ValidationError("--sport/--dport need --proto tcp, udp or sctp")
        }
        for name in [iif, requestInterface].compactMap({ $0 }) {
            if let problem = Link.validate(name: name) { throw ValidationError(problem) }
        }
    }

    static func number(_ text: String) -> UInt32? {
        text.lowercased().hasPrefix("0x") ? UInt32(text.dropFirst(2), radix: 16) : UInt32(text)
    }

    static func protocolNumber(_ text: String) -> UInt8? {
        switch text.lowercased() {
        case "tcp": return 6
        case "udp": return 17
        case "icmp": return 1
        case "sctp": return 132
        default: return UInt8(text)
        }
    }

    func run() throws {
        guard let from = IPAddress(source), let to = IPAddress(destination) else { throw ExitCode(2) }
        let resolved = try target.resolve()
        let query = ExplainQuery(source: from, destination: to, inputInterface: iif, mark: mark.flatMap(Self.number),
                                 ipProtocol: proto.flatMap(Self.protocolNumber), sourcePort: sport, destinationPort: dport,
                                 requestInterface: requestInterface)
        let explanation: Explanation
        do {
            let node = try NodeConnection(resolved.namespace)
            explanation = try Explainer(try node.read()).explain(query, kernel: node.kernel)
        } catch {
            throw fail(error.description, code: error.exitCode)
        }
        if json {
            do { print(try ExplainOutput(explanation).json()) } catch { throw fail(error.description, code: 1) }
        } else {
            print(ExplainText.render(explanation))
        }
        if !explanation.agrees { throw ExitCode(1) }
    }
}
