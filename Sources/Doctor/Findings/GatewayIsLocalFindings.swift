import Netlink

/// `gateway-is-local`: routes and policy gateways that are the node's own address (the POC's first typo).
extension Doctor {
    /// Routes whose gateway is the node's own address, and policy gateways that are.
    func gatewayFindings() -> [Finding] {
        var findings: [Finding] = []
        for route in state.routes where route.table != RouteTable.local {
            guard let gateway = route.gateway, state.isLocal(gateway) else { continue }
            let right = request.policy?.interfaces.first { $0.name == route.device }?.gateway(for: route.family).flatMap { state.isLocal($0) ? nil : $0 }
            var replacement = route
            replacement.gateway = right
            let fix = right.map { _ in ipCommand(["route", "replace"] + replacement.ipArguments.filter { $0 != "proto" && $0 != route.proto.description }, family: route.family) }
                ?? ipCommand(["route", "del"] + route.ipArguments, family: route.family)
            findings.append(Finding(id: FindingID.gatewayIsLocal, severity: .error,
                                    message: "the route \(route.description) has this node's own address \(gateway) as its gateway (the POC's typo): packets sent by it go nowhere — the gateway is the router at the other end of \(route.device ?? "the link")",
                                    objects: ["route \(route.description)", "address \(gateway) dev \(state.interfaceHolding(gateway) ?? "?")"],
                                    fix: fix, hint: right == nil ? "replace it with a route via the router on that link" : nil))
        }
        for entry in request.policy?.interfaces ?? [] {
          for gateway in entry.routers where state.isLocal(gateway) {
            let fileHint: String
            if case .file(let path) = request.source { fileHint = "correct the gateway of \(entry.name) in \(path)" } else { fileHint = "correct the policy's gateway of \(entry.name)" }
            findings.append(Finding(id: FindingID.gatewayIsLocal, severity: .error,
                                    message: "the policy's gateway \(gateway) of \(entry.name) is this node's own address (apply refuses it): it must be the router at the other end of \(entry.name)",
                                    objects: ["policy interface \(entry.name) \(gateway.family == .inet6 && entry.gateway != gateway ? "gateway6" : "gateway") \(gateway)"] + (entry.origin.map { ["at \($0)"] } ?? []),
                                    fix: nil, hint: fileHint))
          }
        }
        return findings
    }
}
