import ArgumentParser
import FoundationEssentials
import Namespace
import ReturnRouting
#if canImport(Glibc)
import Glibc
#endif

/// `--node NAME`: the node a policy is resolved for (spec.nodes).
struct NodeOption: ParsableArguments {
    @Option(name: .long, help: "The node's name for spec.nodes (default: $NODE_NAME, with --lab the host's name, else the hostname).")
    var node: String?

    func validate() throws {
        if let node, node.isEmpty || node.utf8.count > 253 || node.utf8.contains(0) {
            throw ValidationError("--node takes a name of 1 to 253 characters")
        }
    }
}

/// Reading a policy file and resolving it for the target node: what apply, doctor and policy resolve share.
enum PolicyLoading {
    static func document(_ file: String) throws -> PolicyDocument {
        do { return try PolicyFile.loadDocument(path: file) } catch { throw fail(error.description, code: 2) }
    }

    /// The node's name and where it came from.
    static func nodeName(_ option: NodeOption, _ target: TargetOptions) -> (name: String, source: String) {
        NodeFacts.nodeName(given: option.node, environment: ProcessInfo.processInfo.environment,
                           fallback: target.lab == nil ? nil : target.host, hostname: hostname)
    }

    static func hostname() -> String? {
        var buffer = [CChar](repeating: 0, count: 256)
        guard case .success = syscall({ gethostname(&buffer, buffer.count - 1) }) else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func resolution(_ document: PolicyDocument, node: NodeOption, target: TargetOptions, router: ReturnRouter) throws -> Resolution {
        do {
            let facts = try router.nodeFacts(for: document, name: nodeName(node, target))
            return PolicyResolver.resolve(document, facts: facts)
        } catch {
            throw fail(error.description, code: error.exitCode)
        }
    }

    /// The policy for the node, or exit 2 naming every entry that does not resolve (nothing changed).
    static func policy(_ file: String, node: NodeOption, target: TargetOptions, router: ReturnRouter) throws -> Policy {
        try policy(try document(file), node: node, target: target, router: router)
    }

    static func policy(_ document: PolicyDocument, node: NodeOption, target: TargetOptions, router: ReturnRouter) throws -> Policy {
        let resolution = try resolution(document, node: node, target: target, router: router)
        guard resolution.isResolved else {
            throw fail(resolution.problems.joined(separator: "\nreturnpath: "), code: 2)
        }
        return resolution.policy
    }
}
