import Netlink
import ReturnRouting

/// Fix commands, addressed to the target as the request says: `ip -n NS …`, `ip netns exec NS sysctl -w …`,
/// `returnpath apply --lab NAME …`.
extension Doctor {
    func ipCommand(_ words: [String], family: AddressFamily = .inet) -> String {
        (request.ip + (family == .inet6 ? ["-6"] : []) + words).joined(separator: " ")
    }
    func sysctlCommand(_ key: String, _ value: String) -> String { (request.sysctl + ["\(key)=\(value)"]).joined(separator: " ") }

    /// `returnpath apply` for this target: its policy file, and the strategy in force when there is one.
    func applyCommand(strategy chosen: Strategy? = nil) -> String {
        var words = ["returnpath", "apply"] + request.returnpathTarget
        switch request.source {
        case .file(let path): words += ["-f", path]
        case .lab: break
        case .record, .addresses: words += ["-f", "POLICY.yaml"]
        }
        if let s = chosen ?? strategy { words += ["--strategy", s.rawValue] }
        return words.joined(separator: " ")
    }

    var applyNeedsPolicy: Bool {
        switch request.source {
        case .record, .addresses: return true
        default: return false
        }
    }

    func ruleArguments(_ rule: DetailedRule) -> [String] { rule.ipArguments.filter { $0 != "[detached]" } }
}
