import CNftables
import Namespace
import Netlink
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// libnftables refused or failed: what was being done, and nft's (or the kernel's) own words.
public enum NftablesError: Error, CustomStringConvertible, Sendable {
    /// The kernel has no nfnetlink (nf_tables) in the namespace: there is no ruleset to read or change.
    case unavailable(namespace: String, errno: Errno)
    /// A command failed; `message` is libnftables' error output.
    case failed(operation: String, message: String)
    /// The namespace could not be entered.
    case namespace(NamespaceError)

    public var description: String {
        switch self {
        case .unavailable(let namespace, let errno): return "this kernel has no nfnetlink (nf_tables) in \(namespace): \(errno)"
        case .failed(let operation, let message): return "\(operation): \(message.isEmpty ? "nft failed" : message)"
        case .namespace(let error): return error.description
        }
    }

    /// What was being done.
    public var operation: String {
        switch self {
        case .unavailable(let namespace, _): return "nftables in \(namespace)"
        case .failed(let operation, _): return operation
        case .namespace: return "enter the namespace for nftables"
        }
    }

    /// nft's or the kernel's own words.
    public var message: String {
        switch self {
        case .unavailable(_, let errno): return "this kernel has no nfnetlink (nf_tables): \(errno)"
        case .failed(_, let message): return message.isEmpty ? "nft failed" : message
        case .namespace(let error): return error.description
        }
    }

    /// "No such file or directory": the table (or chain) is not there.
    public var isNoSuchObject: Bool {
        if case .failed(_, let message) = self { return message.contains("No such file or directory") }
        return false
    }
}

/// libnftables inside one network namespace: the only place the project calls it. The context is made, used and
/// freed on threads that entered the namespace (`NetworkNamespace.perform`), so its netlink socket — and any socket
/// libnftables opens again later, e.g. after ENOBUFS — belongs to that namespace, never to the caller's. Scripts
/// never name interfaces by index (`iif`): that lookup would not be the namespace's.
///
/// Not Sendable: one command's thread uses it, commands run one at a time.
public final class Nftables {
    public let namespace: NetworkNamespace
    private let context: OpaquePointer

    /// A context in `namespace`. libnftables exits the process when it cannot open its netlink socket: a kernel
    /// without nfnetlink is found first (a throwaway nfnetlink socket, unless `nfnetlinkKnown`: the caller opened
    /// one there already) and is `.unavailable`.
    public init(namespace: NetworkNamespace, nfnetlinkKnown: Bool = false) throws(NftablesError) {
        self.namespace = namespace
        if !nfnetlinkKnown { try Self.checkNfnetlink(in: namespace) }
        let made: OpaquePointer?
        do {
            made = try namespace.perform { () -> OpaquePointer? in
                guard let context = nft_ctx_new(UInt32(NFT_CTX_DEFAULT)) else { return nil }
                nft_ctx_buffer_output(context)
                nft_ctx_buffer_error(context)
                return context
            }
        } catch {
            throw .namespace(error)
        }
        guard let made else { throw .failed(operation: "nftables in \(namespace)", message: "nft_ctx_new failed") }
        context = made
    }

    private static func checkNfnetlink(in namespace: NetworkNamespace) throws(NftablesError) {
        do {
            let probe = try namespace.socket(domain: AF_NETLINK, type: Int32(SOCK_RAW.rawValue), protocol: NetlinkSocket.netfilter)
            close(probe)
        } catch {
            switch error {
            case .system(_, let errno), .permission(_, let errno): throw .unavailable(namespace: namespace.description, errno: errno)
            default: throw .namespace(error)
            }
        }
    }

    // Freeing closes the context's socket: that needs no thread in the namespace.
    deinit { nft_ctx_free(context) }

    /// Runs an nft script as one transaction (on a thread inside the namespace) and returns its output, JSON when
    /// `json`. `operation` names it in errors.
    @discardableResult
    public func run(_ script: String, json: Bool = false, operation: @autoclosure () -> String) throws(NftablesError) -> String {
        let context = self.context
        let outcome: (rc: Int32, output: String, errors: String)
        do {
            outcome = try namespace.perform {
                nft_ctx_output_set_flags(context, json ? UInt32(NFT_CTX_OUTPUT_JSON) : 0)
                let rc = nft_run_cmd_from_buffer(context, script)
                let output = nft_ctx_get_output_buffer(context).map { String(cString: $0) } ?? ""
                let errors = nft_ctx_get_error_buffer(context).map { String(cString: $0) } ?? ""
                return (rc, output, errors)
            }
        } catch {
            throw .namespace(error)
        }
        guard outcome.rc == 0 else {
            throw .failed(operation: operation(), message: Self.trimmed(outcome.errors))
        }
        return outcome.output
    }

    static func trimmed(_ text: String) -> String {
        String(text.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}
