import TextFormat

/// Pictures of a topology: ASCII for a terminal, Graphviz dot, Mermaid.
public enum TopologyGraph {
    public enum Format: String, CaseIterable, Sendable {
        case ascii, dot, mermaid
    }

    public static func render(_ topology: Topology, format: Format) -> String {
        switch format {
        case .ascii: return ascii(topology)
        case .dot: return dot(topology)
        case .mermaid: return mermaid(topology)
        }
    }

    /// One box per host, an interface a line (name, addresses, network), services marked; then the networks
    /// with their members.
    static func ascii(_ topology: Topology) -> String {
        var lines: [String] = []
        for host in topology.hosts {
            var rows: [String] = []
            let nameWidth = host.interfaces.map(\.name.count).max() ?? 2
            for interface in host.interfaces {
                let addresses = interface.addresses.map(\.cidr).joined(separator: ", ")
                var row = interface.name.padded(to: nameWidth) + "  " + addresses
                if let network = interface.network { row += "  ── \(network)" }
                rows.append(row)
            }
            for service in host.services { rows.append("service \(service.endpoint) → \"\(service.reply)\"") }
            for entry in host.dnat { rows.append("dnat \(entry)") }
            for route in host.routes {
                let via = route.gateways.isEmpty ? route.gateway.map { " via \($0)" } : " via " + route.gateways.map(\.description).joined(separator: ", ")
                rows.append("route \(route.destination)" + (via ?? "")
                            + (route.device.map { " dev \($0)" } ?? ""))
            }
            let title = " \(host.name)\(host.role == .client ? " (client)" : "") "
            let width = max(rows.map(\.count).max() ?? 0, title.count + 2) + 2
            lines.append("┌─" + title + String(repeating: "─", count: width - title.count - 1) + "┐")
            for row in rows { lines.append("│ " + row.padded(to: width - 1) + "│") }
            lines.append("└" + String(repeating: "─", count: width) + "┘")
        }
        lines.append("")
        lines.append("networks:")
        let nameWidth = topology.networks.map(\.name.count).max() ?? 0
        for network in topology.networks {
            let members = topology.members(of: network.name).map { "\($0.host.name):\($0.interface.name)" }
            lines.append("  " + network.name.padded(to: nameWidth) + "  "
                         + network.subnets.map(\.cidr).joined(separator: " ").padded(to: 18)
                         + members.joined(separator: members.count == 2 ? " ⟷ " : ", "))
        }
        return lines.joined(separator: "\n")
    }

    static func dot(_ topology: Topology) -> String {
        var lines = ["graph \"\(topology.name)\" {", "  node [shape=box];"]
        for host in topology.hosts {
            var label = host.name
            for service in host.services { label += "\\n\(service.endpoint) \(service.reply)" }
            for entry in host.dnat { label += "\\ndnat \(entry.service) to \(entry.backendEndpoint)" }
            lines.append("  \"\(host.name)\" [label=\"\(label)\"\(host.role == .client ? ", style=rounded" : "")];")
        }
        for network in topology.networks {
            lines.append("  \"net:\(network.name)\" [shape=ellipse, label=\"\(network.name)\\n\(network.subnets.map(\.cidr).joined(separator: " "))\"];")
            for member in topology.members(of: network.name) {
                let address = member.interface.addresses.first.map { " \($0.address)" } ?? ""
                lines.append("  \"\(member.host.name)\" -- \"net:\(network.name)\" [label=\"\(member.interface.name)\(address)\"];")
            }
        }
        lines.append("}")
        return lines.joined(separator: "\n")
    }

    static func mermaid(_ topology: Topology) -> String {
        func id(_ s: String) -> String { s.replacing("-", with: "_") }
        var lines = ["graph LR"]
        for host in topology.hosts {
            let services = host.services.map { "<br/>\($0.endpoint) \($0.reply)" }.joined()
                + host.dnat.map { "<br/>dnat \($0.service) to \($0.backendEndpoint)" }.joined()
            lines.append("  \(id(host.name))[\"\(host.name)\(services)\"]")
        }
        for network in topology.networks {
            lines.append("  net_\(id(network.name))((\"\(network.name)<br/>\(network.subnets.map(\.cidr).joined(separator: " "))\"))")
            for member in topology.members(of: network.name) {
                let address = member.interface.addresses.first.map { " \($0.address)" } ?? ""
                lines.append("  \(id(member.host.name)) ---|\"\(member.interface.name)\(address)\"| net_\(id(network.name))")
            }
        }
        return lines.joined(separator: "\n")
    }
}
