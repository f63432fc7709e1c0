import CNftables
import Foundation
import Namespace
import Netlink
#if canImport(Glibc)
import Glibc
#endif

/// An nft command that failed: what was being done, and nft's (or the kernel's) own words.
public struct NftCommandError: Error, CustomStringConvertible, Sendable, Equatable {
    public var operation: String
    public var message: String

    public init(operation: String, message: String) {
        self.operation = operation
        self.message = message
    }

    public var description: String { "\(operation): \(message.isEmpty ? "nft failed" : message)" }
    /// "No such file or directory": the table (or chain) is not there.
    public var isNoSuchObject: Bool { message.contains("No such file or directory") }
}

/// libnftables inside one network namespace. The context is created, used and freed on a thread that entered the
/// namespace, so its netlink socket — and any socket libnftables opens again later — belongs to that namespace and
/// never to the machine's own. Scripts never name interfaces by index (`iif`): that lookup would not be the
/// namespace's.
///
/// (ReturnRouting keeps its own wrapper for apply; this one is the lab's, so that Lab needs nothing above it.)
public struct NftablesContext: ~Copyable {
    private let pointer: OpaquePointer

    private init(pointer: OpaquePointer) { self.pointer = pointer }

    /// Runs `body` with a fresh libnftables context inside `namespace` (on the namespace's thread), then frees it.
    @discardableResult
    public static func with<T>(in namespace: NetworkNamespace,
                               _ body: (borrowing NftablesContext) throws(NftCommandError) -> T) throws(NftCommandError) -> T {
        // libnftables exits the process when it cannot open its netlink socket: check first, and say why.
        do {
            let probe = try namespace.socket(domain: AF_NETLINK, type: Int32(SOCK_RAW.rawValue), protocol: NetlinkSocket.netfilter)
            close(probe)
        } catch {
            throw NftCommandError(operation: "nftables in \(namespace)", message: "this kernel has no nfnetlink (nf_tables): \(error)")
        }
        let outcome: Result<T, NftCommandError>
        do {
            outcome = try namespace.perform { () -> Result<T, NftCommandError> in
                guard let made = nft_ctx_new(UInt32(NFT_CTX_DEFAULT)) else {
                    return .failure(NftCommandError(operation: "nftables in \(namespace)", message: "nft_ctx_new failed"))
                }
                nft_ctx_buffer_output(made)
                nft_ctx_buffer_error(made)
                let context = NftablesContext(pointer: made)
                defer { nft_ctx_free(made) }
                do throws(NftCommandError) { return .success(try body(context)) } catch { return .failure(error) }
            }
        } catch {
            throw NftCommandError(operation: "nftables in \(namespace)", message: error.description)
        }
        return try outcome.get()
    }

    /// Runs an nft script as one transaction and returns its output (JSON when `json`). `operation` names it in
    /// errors.
    @discardableResult
    public func run(_ script: String, json: Bool = false, operation: String) throws(NftCommandError) -> String {
        nft_ctx_output_set_flags(pointer, json ? UInt32(NFT_CTX_OUTPUT_JSON) : 0)
        let rc = nft_run_cmd_from_buffer(pointer, script)
        let output = nft_ctx_get_output_buffer(pointer).map { String(cString: $0) } ?? ""
        let errors = nft_ctx_get_error_buffer(pointer).map { String(cString: $0) } ?? ""
        guard rc == 0 else {
            throw NftCommandError(operation: operation, message: errors.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return output
    }
}
