import CNftables
import Foundation
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
            probe = try namespace.socket(domain: AF_NETLINK, type: Int32(SOCK_RAW.rawValue), protocol: 12 /* NETLINK_NETFILTER */)
        } catch {
            throw .unsupported("this kernel has no nfnetlink (nf_tables) in \(namespace): \(error)")
        }
        close(probe)
        let made: OpaquePointer?
        do {
            made = try namespace.perform { nft_ctx_new(UInt32(NFT_CTX_DEFAULT)) }
        } catch {
            throw .kernel("nftables in \(namespace): \(error)")
        }
        guard let made else { throw .kernel("nft_ctx_new failed in \(namespace)") }
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
        guard rc == 0 else { throw NftError(script: script, message: errors.trimmingCharacters(in: .whitespacesAndNewlines)) }
        return output
    }
}

struct NftError: Error, CustomStringConvertible {
    var script: String
    var message: String
    var description: String { message.isEmpty ? "nft failed" : message }
    var isNoSuchTable: Bool { message.contains("No such file or directory") }
}

/// What is in the `inet returnpath` table now.
struct NftState {
    var comment: String?
    var sets: [String: [IPPrefixText]]
    var objectCount: Int
    /// Elements of hash sets, read over nfnetlink (the fast path).
    var addresses: [String: Swift.Set<IPAddress>] = [:]

    typealias IPPrefixText = String

    /// Parses `nft -j list table inet returnpath`.
    static func parse(_ json: String) -> NftState {
        var state = NftState(comment: nil, sets: [:], objectCount: 0)
        guard let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
              let items = object["nftables"] as? [[String: Any]] else { return state }
        for item in items {
            if let table = item["table"] as? [String: Any] { state.comment = table["comment"] as? String }
            if let set = item["set"] as? [String: Any], let name = set["name"] as? String {
                state.sets[name] = (set["elem"] as? [Any] ?? []).compactMap(Self.element)
                state.objectCount += 1
            }
            if item["chain"] != nil || item["rule"] != nil { state.objectCount += 1 }
        }
        return state
    }

    /// The table's comment in `nft list table` text: `comment "…"` on the line after the table's.
    static func comment(inText text: String) -> String? {
        for line in text.split(separator: "\n").prefix(3) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("comment \""), trimmed.hasSuffix("\"") {
                return String(trimmed.dropFirst(9).dropLast())
            }
        }
        return nil
    }

    /// "192.168.1.1" or {"prefix": {"addr": "10.0.0.0", "len": 8}} → text as IPPrefix prints it.
    static func element(_ value: Any) -> String? {
        if let text = value as? String { return text }
        if let object = value as? [String: Any], let prefix = object["prefix"] as? [String: Any],
           let address = prefix["addr"] as? String, let length = prefix["len"] as? Int {
            return "\(address)/\(length)"
        }
        if let object = value as? [String: Any], let elem = object["elem"] as? [String: Any], let inner = elem["val"] {
            return element(inner)
        }
        return nil
    }
}
