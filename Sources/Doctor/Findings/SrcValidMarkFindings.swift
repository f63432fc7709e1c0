import Netlink

/// `fwmark-without-src-valid-mark`: fwmark rules the reverse-path check ignores.
extension Doctor {
    /// fwmark rules while src_valid_mark=0 and rp_filter is strict on an interface requests come in on.
    func srcValidMarkFindings(_ announcements: [Announcement], checks: [ReplyCheck]) -> (findings: [Finding], interfaces: Set<String>) {
        // rp_filter and src_valid_mark are IPv4's: IPv6 fwmark rules are not checked by them.
        let fwmarkRules = state.rules(family: .inet).filter { $0.rule.fwmark != nil && $0.rule.action == .lookup }
        guard !fwmarkRules.isEmpty else { return ([], []) }
        var seen: Set<String> = []
        var result: [Finding] = []
        let interfaces = Set(announcements.compactMap(\.interface)).sorted()
        for interface in interfaces {
            guard state.setting("rp_filter", on: interface) == 1, state.setting("src_valid_mark", on: interface) == 0 else { continue }
            // Only when requests on this interface carry a mark (prerouting marks them) or are ours to mark.
            let marked = checks.contains { $0.interface == interface && $0.requestMark != 0 }
            let oursMarks = (strategy == .mark || strategy == .ingress) && !ourRules.filter { $0.rule.fwmark != nil && $0.rule.family == .inet }.isEmpty
            guard marked || oursMarks else { continue }
            seen.insert(interface)
            let values = state.settingValues("src_valid_mark", on: interface)
            let rp = state.settingValues("rp_filter", on: interface)
            result.append(Finding(id: FindingID.fwmarkWithoutSrcValidMark, severity: .error,
                                  message: "fwmark rules (\(fwmarkRules.map { String($0.rule.priority ?? 0) }.joined(separator: ", "))) steer marked packets, but \(interface) has src_valid_mark=0 and a strict rp_filter: the reverse-path check of a request ignores its mark, looks the client up in main, finds another interface and drops the request",
                                  objects: ["sysctl net.ipv4.conf.\(interface).src_valid_mark=\(values.own) (all=\(values.all))",
                                            "sysctl net.ipv4.conf.\(interface).rp_filter=\(rp.own) (all=\(rp.all))"]
                                      + fwmarkRules.map { "rule \($0)" },
                                  fix: sysctlCommand("net.ipv4.conf.\(interface).src_valid_mark", "1")))
        }
        return (result, seen)
    }
}
