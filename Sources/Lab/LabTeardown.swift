import FoundationEssentials
import Namespace
import Netlink

/// `lab down`: removes a lab by its ownership markers, never by name alone.
extension LabManager {
    public struct DownReport: Sendable {
        public var existed: Bool
        public var removedNamespaces: [String]
        public var leftAlone: [String]
        public var stoppedServices: Bool
    }

    /// Removes the lab's service process and namespaces (their veths and bridges go with them) and its state.
    /// Works from the state file alone, or, without one, from the markers in namespaces named rp-NAME-…
    /// `beforeDeleting` sees each of the lab's namespaces just before it goes (to drop records kept about it).
    public func down(name: String, beforeDeleting: (NetworkNamespace) -> Void = { _ in }) throws(LabError) -> DownReport {
        try store.locked(name) { () throws(LabError) -> DownReport in
            // A state file that does not decode still leaves the markers: down works from those.
            let state = try? store.load(name)
            var candidates = state?.namespaces ?? []
            for ns in NetworkNamespace.list() where ns.hasPrefix("rp-\(name)-") && !candidates.contains(ns) {
                candidates.append(ns)
            }
            let hadServices = !servicePIDs(lab: name).isEmpty || state?.servicePID.map { isServeProcess($0, lab: name) } == true
            stopServices(lab: name, state: state)
            var report = DownReport(existed: state != nil, removedNamespaces: [], leftAlone: [], stoppedServices: hadServices)
            for candidate in candidates {
                guard let ns = try? NetworkNamespace(named: candidate) else { continue }
                let planned = state?.namespaces.contains(candidate) ?? false
                if !ns.exists {
                    // A file left by an interrupted create (not a mount): ours only if planned.
                    if planned, FileManager.default.fileExists(atPath: ns.path ?? "") { try? ns.delete() }
                    continue
                }
                let ownership: Ownership
                do throws(NetlinkError) { ownership = try owner(of: ns, lab: name, planned: planned) } catch {
                    throw LabError(lab: name, step: "look for the marker of namespace \(candidate)", host: nil,
                                   reason: error.description)
                }
                switch ownership {
                case .ours: break
                case .gone: continue
                case .foreign:
                    report.leftAlone.append(candidate)
                    continue
                }
                beforeDeleting(ns)
                do throws(NamespaceError) { try ns.delete() } catch {
                    throw LabError(lab: name, step: "delete namespace \(candidate)", host: nil, reason: error.description)
                }
                report.removedNamespaces.append(candidate)
            }
            report.existed = report.existed || !report.removedNamespaces.isEmpty || hadServices
            store.remove(name)
            return report
        }
    }

    enum Ownership { case ours, foreign, gone }

    /// A namespace belongs to lab `lab` when its lo carries the lab's marker, or when the state planned it and it
    /// is still empty (up was killed between creating it and marking it). `.gone` when it vanished meanwhile. Any
    /// other error reading its links (no permission, say) is an error, never "not ours".
    func owner(of ns: NetworkNamespace, lab: String, planned: Bool) throws(NetlinkError) -> Ownership {
        let links: [Link]
        do {
            links = try NetlinkSocket(namespace: ns).links()
        } catch .namespace(.notFound) {
            return .gone
        }
        if links.first(where: { $0.name == "lo" })?.alias == LabManager.marker(lab) { return .ours }
        return planned && links.count == 1 && links.first?.alias == nil ? .ours : .foreign
    }
}
