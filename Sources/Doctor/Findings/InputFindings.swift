/// What doctor could not know: `record-unreadable` (the record exists but does not decode) and `services-unknown`
/// (no services at all, or only the addresses on lo with their interfaces unknown).
extension Doctor {
    func inputFindings(_ announcements: [Announcement]) -> [Finding] {
        var findings: [Finding] = []
        if let problem = state.recordProblem {
            findings.append(Finding(id: FindingID.recordUnreadable, severity: .error,
                                    message: "the record of the last apply cannot be read: \(problem)",
                                    objects: [], fix: nil, hint: "fix or move the file; it holds the original sysctl values remove restores"))
        }
        if announcements.isEmpty {
            findings.append(Finding(id: FindingID.servicesUnknown, severity: .warning,
                                    message: "no services to check: no policy, no record of an apply, and no global address on lo",
                                    hint: "give -f POLICY.yaml (or --lab NAME)"))
        } else if announcements.contains(where: { $0.interface == nil }) {
            findings.append(Finding(id: FindingID.servicesUnknown, severity: .info,
                                    message: "the services are the global addresses on lo; the interfaces they are announced on and their gateways are unknown, so replies cannot be judged — only shown",
                                    hint: "give -f POLICY.yaml, or watch real traffic: returnpath probe --passive \(request.returnpathTarget.joined(separator: " "))"))
        }
        return findings
    }
}
