import Netlink
import YAMLFile

/// Reads policy files: Kubernetes-shaped YAML (apiVersion, kind, metadata, spec), every problem as FILE:LINE.
public enum PolicyFile {
    /// A policy that needs no node (no `network:`, `auto`, `spec.nodes`); else the error says to resolve it.
    public static func load(path: String) throws(FileError) -> Policy {
        try parse(try YAMLReader.read(path), file: path)
    }

    public static func parse(_ text: String, file: String) throws(FileError) -> Policy {
        let document = try parseDocument(text, file: file)
        if let entry = document.interfaces.first(where: \.needsNode) {
            throw FileError(file: file, line: Int(entry.origin.split(separator: ":").last ?? ""),
                            message: "\(entry.label) needs a node to resolve (network: or auto)")
        }
        guard document.nodes.isEmpty else {
            throw FileError(file: file, line: nil, message: "spec.nodes needs a node to resolve")
        }
        return PolicyResolver.fixed(document)
    }

    public static func loadDocument(path: String) throws(FileError) -> PolicyDocument {
        try parseDocument(try YAMLReader.read(path), file: path)
    }

    public static func parseDocument(_ text: String, file: String) throws(FileError) -> PolicyDocument {
        let reader = YAMLReader(file: file)
        let root = try reader.compose(text)
        let top = try reader.entries(root, "the policy", allowed: ["apiVersion", "kind", "metadata", "spec"])
        guard let apiNode = reader.value(top, "apiVersion"), try reader.string(apiNode, "apiVersion") == Policy.apiVersion else {
            throw reader.fail(reader.value(top, "apiVersion") ?? root, "apiVersion must be \(Policy.apiVersion)")
        }
        guard let kindNode = reader.value(top, "kind"), try reader.string(kindNode, "kind") == Policy.kind else {
            throw reader.fail(reader.value(top, "kind") ?? root, "kind must be \(Policy.kind)")
        }
        var name = "policy"
        if let metadata = reader.value(top, "metadata") {
            let fields = try reader.entries(metadata, "metadata", allowed: ["name", "labels", "annotations"])
            if let n = reader.value(fields, "name") { name = try reader.string(n, "metadata.name") }
        }
        guard let specNode = reader.value(top, "spec") else { throw reader.fail(root, "no spec") }
        let spec = try reader.entries(specNode, "spec", allowed: ["strategy", "interfaces", "exempt", "ownership", "ingress", "nodes"])

        var strategy: Strategy?
        if let node = reader.value(spec, "strategy") {
            let text = try reader.string(node, "strategy")
            guard let parsed = Strategy(rawValue: text) else {
                throw reader.fail(node, "strategy \"\(text)\" is not one of static, source, mark, ingress")
            }
            strategy = parsed
        }
        let interfacesNode = reader.value(spec, "interfaces"), nodesNode = reader.value(spec, "nodes")
        guard interfacesNode != nil || nodesNode != nil else { throw reader.fail(specNode, "spec has no interfaces") }
        let interfaces = try interfacesNode.map { node throws(FileError) in try entries(node, "spec.interfaces", reader) } ?? []
        let exempt = try reader.value(spec, "exempt").map { node throws(FileError) in try prefixes(node, "spec.exempt", reader) } ?? []
        var groups: [PolicyDocument.NodeGroup] = []
        if let nodesNode {
            for (i, item) in try reader.list(nodesNode, "spec.nodes").enumerated() {
                let what = "spec.nodes item \(i + 1)"
                let fields = try reader.entries(item, what, allowed: ["names", "interfaces", "exempt"])
                guard let namesNode = reader.value(fields, "names"), let listNode = reader.value(fields, "interfaces") else {
                    throw reader.fail(item, "\(what) needs names and interfaces")
                }
                var names: [String] = []
                for glob in try reader.list(namesNode, "\(what) names") {
                    let text = try reader.string(glob, "\(what) names")
                    guard !text.isEmpty, text.utf8.count <= 253 else { throw reader.fail(glob, "\(what): a name glob is 1 to 253 characters") }
                    names.append(text)
                }
                guard !names.isEmpty else { throw reader.fail(namesNode, "\(what) lists no names") }
                groups.append(.init(names: names, interfaces: try entries(listNode, "\(what) interfaces", reader),
                                    exempt: try reader.value(fields, "exempt").map { node throws(FileError) in try prefixes(node, "\(what) exempt", reader) },
                                    origin: "\(file):\(item.mark?.line ?? 0)", index: i + 1))
            }
        }
        return PolicyDocument(name: name, strategy: strategy, interfaces: interfaces, exempt: exempt,
                              ownership: try PolicyOwnershipReader.ownership(spec, reader),
                              ingressTracking: try PolicyOwnershipReader.tracking(spec, reader), nodes: groups)
    }

    private static func prefixes(_ node: Node, _ what: String, _ reader: YAMLReader) throws(FileError) -> [IPPrefix] {
        var result: [IPPrefix] = []
        for item in try reader.list(node, what) {
            let prefix = try reader.prefix(item, "\(what) prefix")
            guard prefix.isCanonical else { throw reader.fail(item, "\(prefix.cidr) has host bits set") }
            result.append(prefix)
        }
        return result
    }

    /// A list of interface entries; names given twice are refused here, interfaces found twice on a node later.
    private static func entries(_ listNode: Node, _ what: String, _ reader: YAMLReader) throws(FileError) -> [PolicyDocument.Entry] {
        var result: [PolicyDocument.Entry] = []
        var names = Set<String>(), networks = Set<IPPrefix>()
        for node in try reader.list(listNode, what) {
            let entry = try PolicyEntryReader.entry(node, reader)
            if let name = entry.name, !names.insert(name).inserted {
                throw reader.fail(node, "interface \(name) is listed twice")
            }
            if entry.name == nil, let network = entry.network, !networks.insert(network).inserted {
                throw reader.fail(node, "network \(network.cidr) is listed twice")
            }
            result.append(entry)
        }
        return result
    }
}
