import ArgumentParser
import FoundationEssentials
import Netlink
import ReturnRouting
import TextFormat

struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy",
        abstract: "Show what a policy file means on a node.",
        subcommands: [PolicyResolveCommand.self])
}

struct PolicyResolveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resolve",
        abstract: "Print the policy as this node would apply it, and where each value came from.",
        discussion: """
            Resolves spec.nodes (by the node's name), network: (the interface with an address in the prefix) and \
            gateway: auto (the node's own route with a gateway through the interface: main table first, a default \
            route first, the lowest metric first). Changes nothing. Exit: 0 resolved, 2 not (or a bad policy).
            """)

    @Option(name: .shortAndLong, help: "Policy file (YAML).")
    var file: String

    @OptionGroup var node: NodeOption

    @OptionGroup var target: TargetOptions

    @Flag(name: .long, help: "JSON for scripts.")
    var json = false

    func run() throws {
        let document = try PolicyLoading.document(file)
        let (namespace, _) = try target.resolve()
        let router: ReturnRouter
        do { router = try ReturnRouter(namespace: namespace) } catch { throw fail(error.description, code: error.exitCode) }
        let resolution = try PolicyLoading.resolution(document, node: node, target: target, router: router)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            do { print(String(decoding: try encoder.encode(ResolutionOutput(resolution)), as: UTF8.self)) } catch {
                throw fail("cannot encode the resolution: \(error)", code: 1)
            }
        } else {
            print(ResolutionOutput.text(resolution), terminator: "")
        }
        if !resolution.isResolved {
            for problem in resolution.problems { printError("returnpath: \(problem)\n") }
            throw ExitCode(2)
        }
    }
}

/// `policy resolve --json` (contract: these keys).
struct ResolutionOutput: Encodable {
    struct Value: Encodable { var value: String; var from: String }
    struct Entry: Encodable {
        var origin: String
        var entry: String
        var resolved: Bool
        var interface: String?
        var gateways: [String]
        var onlink: Bool
        var services: [String]
        var clients: [String]
        var servicesFrom: String?
        var sources: [Value]
        var problem: String?
    }
    var node: String
    var nodeFrom: String
    var nodesItem: Int?
    var resolved: Bool
    var policy: String
    var strategy: String?
    var interfaces: [Entry]
    var exempt: [String]
    var exemptFrom: String
    var problems: [String]

    init(_ r: Resolution) {
        node = r.node
        nodeFrom = r.nodeSource
        nodesItem = r.group?.index
        resolved = r.isResolved
        policy = r.policy.name
        strategy = r.policy.strategy?.rawValue
        interfaces = r.entries.map { e in
            Entry(origin: e.origin, entry: e.label, resolved: e.problem == nil, interface: e.interface?.name,
                  gateways: e.interface?.routers.map(\.description) ?? [], onlink: e.interface?.onlink ?? false,
                  services: e.interface?.services.map(\.cidr) ?? [], clients: e.interface?.clients.map(\.cidr) ?? [],
                  servicesFrom: e.interface?.servicesFrom.map { "\($0.interface): \($0.prefixes.map(\.cidr).joined(separator: ", "))" },
                  sources: e.values.map { Value(value: $0.what, from: $0.from) }, problem: e.problem)
        }
        exempt = r.policy.exempt.map(\.cidr)
        exemptFrom = r.exemptFrom
        problems = r.problems
    }

    static func text(_ r: Resolution) -> String {
        var out = "policy \(r.policy.name) on node \(r.node) (name from \(r.nodeSource))"
        if let group = r.group { out += ": spec.nodes item \(group.index) (names: \(group.names.joined(separator: ", "))) at \(group.origin)" }
        out += "\n"
        for entry in r.entries {
            out += "\(entry.origin)  \(entry.interface.map { "interface \($0.name)" } ?? entry.label)"
            out += entry.problem.map { ": does not resolve: \($0)\n" } ?? "\n"
            // Services and clients come from the policy: listed once each, not one line per prefix.
            for value in entry.values where !value.what.hasPrefix("service ") && !value.what.hasPrefix("client ") {
                out += "    \(value.what): \(value.from)\n"
            }
            if let interface = entry.interface {
                if !interface.services.isEmpty { out += "    services: \(list(interface.services))\n" }
                if !interface.clients.isEmpty { out += "    clients: \(list(interface.clients))\n" }
                if let from = interface.servicesFrom {
                    out += "    services from \(from.interface): \(list(from.prefixes))\n"
                }
            }
        }
        out += "exempt (\(r.exemptFrom)): \(r.policy.exempt.isEmpty ? "none" : list(r.policy.exempt))\n"
        let resolved = r.entries.filter { $0.problem == nil }.count
        out += r.isResolved ? "resolved: \(resolved) interfaces\n" : "not resolved: \(r.problems.count) problems\n"
        return out
    }

    private static func list(_ prefixes: [IPPrefix]) -> String {
        let shown = prefixes.prefix(8).map(\.cidr).joined(separator: ", ")
        return prefixes.count > 8 ? "\(shown), … (\(prefixes.count) in all)" : shown
    }
}
