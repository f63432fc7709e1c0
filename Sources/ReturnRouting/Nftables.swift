import CNftables
import Namespace
import Netlink
#if canImport(Glibc)
import Glibc
#endif

/// libnftables in one network namespace. The context (and its netlink socket) is created on the namespace
/// thread; commands then run from the caller's thread. Rules use `iifname`, never `iif`, so libnftables never
/// needs an interface lookup (which would use the caller's namespace).
final class Nftables {
    private let context: OpaquePointer

    init(namespace: NetworkNamespace) throws(ApplyError) {
        // libnftables exits the process when it cannot open its netlink socket: check first, and say why.
        let probe: Int32
        do {
            probe = try namespace.socket(domain: AF_NETLINK, type: Int32(SOCK_RAW.rawValue), protocol: NetlinkSocket.netfilter)
        } catch {
            throw .unsupported("this kernel has no nfnetlink (nf_tables) in \(namespace): \(error)")
        }
        close(probe)
        let made: OpaquePointer?
        do { made = try namespace.perform { nft_ctx_new(UInt32(NFT_CTX_DEFAULT)) } } catch { throw .namespace(error) }
        guard let made else { throw .unsupported("nft_ctx_new failed in \(namespace)") }
        context = made
        nft_ctx_buffer_output(context)
        nft_ctx_buffer_error(context)
    }

    deinit { nft_ctx_free(context) }

    /// Runs an nft script as one transaction; returns its output (JSON when `json`).
    @discardableResult
    func run(_ script: String, json: Bool = false) throws(NftError) -> String {
        nft_ctx_output_set_flags(context, json ? UInt32(NFT_CTX_OUTPUT_JSON) : 0)
        let rc = nft_run_cmd_from_buffer(context, script)
        let output = nft_ctx_get_output_buffer(context).map { String(cString: $0) } ?? ""
        let errors = nft_ctx_get_error_buffer(context).map { String(cString: $0) } ?? ""
        guard rc == 0 else {
            throw NftError(script: script, message: String(errors.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed()))
        }
        return output
    }
}
