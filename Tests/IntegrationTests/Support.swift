import Foundation
import Namespace
import Netlink
import Synchronization
import Testing

/// The package's root directory (for docs/ and the built binary).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// Integration tests need root (CAP_SYS_ADMIN for namespaces, CAP_NET_ADMIN for everything else). Without it
/// their suites skip themselves (`.enabled(if: isRoot, "needs root")`); scripts/test fails on any skipped test.
let isRoot = getuid() == 0

/// scripts/test runs the tests as root and says so: then not being root is a failure, not a reason to skip.
@Test func theRootSuitesRunWhenTheRunIsMeantToBeRoot() {
    if ProcessInfo.processInfo.environment["RETURNPATH_TESTS_AS_ROOT"] == "1" {
        #expect(isRoot, "RETURNPATH_TESTS_AS_ROOT=1 but uid \(getuid()): every root-only suite would be skipped")
    }
}

private let counter = Atomic<Int>(0)

/// A unique namespace name for this test process: rp-t<pid>-<n>.
func uniqueNamespaceName() -> String {
    "rp-t\(getpid())-\(counter.add(1, ordering: .relaxed).newValue)"
}

/// Creates `count` throwaway namespaces, runs `body`, and deletes them whatever happens.
func withNamespaces<T>(_ count: Int, _ body: ([NetworkNamespace]) throws -> T) throws -> T {
    var made: [NetworkNamespace] = []
    defer { for ns in made { try? ns.delete() } }
    for _ in 0..<count { made.append(try NetworkNamespace.create(uniqueNamespaceName())) }
    return try body(made)
}

/// Two namespaces joined by a veth pair (a in the first, b in the second), both ends up, with addresses.
struct Pair {
    let left: NetworkNamespace
    let right: NetworkNamespace
    let leftSocket: NetlinkSocket
    let rightSocket: NetlinkSocket
}

func withPair<T>(leftAddress: String = "10.9.0.1/24", rightAddress: String = "10.9.0.2/24",
                 _ body: (Pair) throws -> T) throws -> T {
    try withNamespaces(2) { ns in
        let left = try NetlinkSocket(namespace: ns[0]), right = try NetlinkSocket(namespace: ns[1])
        try left.createVeth("a", in: ns[0], peer: "b", in: ns[1])
        try left.setLink("a", up: true)
        try right.setLink("b", up: true)
        try left.setLink("lo", up: true)
        try right.setLink("lo", up: true)
        try left.addAddress(try IPPrefix(parsing: leftAddress), to: "a")
        try right.addAddress(try IPPrefix(parsing: rightAddress), to: "b")
        return try body(Pair(left: ns[0], right: ns[1], leftSocket: left, rightSocket: right))
    }
}

struct CommandFailed: Error, CustomStringConvertible {
    let description: String
}

struct CLIResult {
    var status: Int32
    var output: String
    var errors: String
}

/// Runs a program (argument vector, no shell), reading its output and errors at once so neither pipe can stall it.
func execute(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> CLIResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = environment }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let errors = PipeReader(err)
    let data = out.fileHandleForReading.readDataToEndOfFile()
    let errorData = errors.wait()
    process.waitUntilExit()
    return CLIResult(status: process.terminationStatus, output: String(decoding: data, as: UTF8.self),
                     errors: String(decoding: errorData, as: UTF8.self))
}

/// Reads a pipe to its end on a thread of its own.
private final class PipeReader: @unchecked Sendable {
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)
    init(_ pipe: Pipe) {
        Thread { [self] in
            data = pipe.fileHandleForReading.readDataToEndOfFile()
            done.signal()
        }.start()
    }
    func wait() -> Data {
        done.wait()
        return data
    }
}

/// Runs a program found in PATH and returns its standard output; a non-zero exit is an error unless allowed.
@discardableResult
func run(_ arguments: [String], allowFailure: Bool = false) throws -> String {
    let result = try execute("/usr/bin/env", arguments)
    if result.status != 0 && !allowFailure {
        throw CommandFailed(description: "\(arguments.joined(separator: " ")) exited \(result.status): \(result.errors)")
    }
    return result.output
}

/// `ip -n NS -j ARGS…`, parsed: iproute2 is the oracle.
func ipJSON(_ ns: NetworkNamespace, _ arguments: String...) throws -> [[String: Any]] {
    let text = try run(["ip", "-n", ns.name ?? "", "-j"] + arguments)
    guard !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { return [] }
    let value = try JSONSerialization.jsonObject(with: Data(text.utf8))
    return value as? [[String: Any]] ?? []
}

/// `ip -n NS ARGS…` (for setting up state by hand, as a user would).
func ip(_ ns: NetworkNamespace, _ arguments: String...) throws {
    try run(["ip", "-n", ns.name ?? ""] + arguments)
}

/// The error `body` throws, or nil when it succeeds.
func netlinkError(_ body: () throws -> Void) -> NetlinkError? {
    do {
        try body()
        return nil
    } catch let error as NetlinkError {
        return error
    } catch {
        Issue.record("expected a NetlinkError, got \(error)")
        return nil
    }
}
